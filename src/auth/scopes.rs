//! SMART on FHIR scopes, v1 (`system/CarePlan.read`, `system/*.write`, `system/*.*`) and v2
//! (`system/CarePlan.rs`, `system/*.cruds`), as the permissions they grant.
//!
//! Only `system/` scopes grant anything: this is a backend-services gateway with no user or
//! patient launch context, so `user/` and `patient/` scopes are recognised and ignored, as are
//! `openid`, `launch` and the like. A v2 scope narrowed by search parameters
//! (`system/Observation.rs?category=…`) grants nothing either: the gateway cannot honour the
//! narrowing on every interaction, and granting the unnarrowed scope would grant too much.

use std::fmt;

/// One kind of FHIR interaction, as SMART v2 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    const fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }

    /// The SMART v2 letter and the v1 word that grant this permission.
    pub fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    fn v1(self) -> &'static str {
        match self {
            Permission::Read | Permission::Search => "read",
            _ => "write",
        }
    }
}

const ALL: u8 = 31;
const READ: u8 = 2 | 16;
const WRITE: u8 = 1 | 4 | 8;

/// A resource type, or every type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Types {
    All,
    One(String),
}

/// The permissions a set of scopes grants, per resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    grants: Vec<(Types, u8)>,
}

impl Scopes {
    /// Parse a space-separated scope string. Scopes that grant nothing here (other contexts,
    /// narrowed v2 scopes, unknown words) are skipped; `ignored` lists them for diagnostics.
    pub fn parse(s: &str) -> (Scopes, Vec<String>) {
        let mut grants = Vec::new();
        let mut ignored = Vec::new();
        for word in s.split_ascii_whitespace() {
            match parse_one(word) {
                Some(g) => grants.push(g),
                None => ignored.push(word.to_string()),
            }
        }
        (Scopes { grants }, ignored)
    }

    /// Every permission on every type (the development client, admins configured so).
    pub fn all() -> Scopes {
        Scopes {
            grants: vec![(Types::All, ALL)],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.grants.iter().all(|(_, p)| *p == 0)
    }

    /// Whether these scopes grant `permission` on resources of type `rtype`.
    pub fn allows(&self, rtype: &str, permission: Permission) -> bool {
        let bit = permission.bit();
        self.grants.iter().any(|(t, p)| {
            p & bit != 0
                && match t {
                    Types::All => true,
                    Types::One(one) => one == rtype,
                }
        })
    }

    /// Whether these scopes grant `permission` on every type (`system/*.…`): needed where a
    /// request spans types, such as system-wide history.
    pub fn allows_every_type(&self, permission: Permission) -> bool {
        let bit = permission.bit();
        self.grants
            .iter()
            .any(|(t, p)| p & bit != 0 && *t == Types::All)
    }

    /// What both grant: a token's scopes limited by the most its client may be given.
    pub fn intersect(&self, ceiling: &Scopes) -> Scopes {
        let mut grants = Vec::new();
        for (ta, pa) in &self.grants {
            for (tb, pb) in &ceiling.grants {
                let t = match (ta, tb) {
                    (Types::All, t) | (t, Types::All) => t.clone(),
                    (Types::One(a), Types::One(b)) if a == b => ta.clone(),
                    _ => continue,
                };
                let p = pa & pb;
                if p != 0 {
                    grants.push((t, p));
                }
            }
        }
        Scopes { grants }
    }

    /// The scope a client would need, for messages: `system/CarePlan.r (v1: system/CarePlan.read)`.
    pub fn needed(rtype: &str, permission: Permission) -> String {
        format!(
            "system/{rtype}.{} (SMART v1: system/{rtype}.{})",
            permission.letter(),
            permission.v1()
        )
    }
}

impl fmt::Display for Scopes {
    /// The granted scopes in SMART v2 form, e.g. `system/CarePlan.rs system/*.c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (t, p) in &self.grants {
            if *p == 0 {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let t = match t {
                Types::All => "*",
                Types::One(one) => one,
            };
            write!(f, "system/{t}.")?;
            for perm in [
                Permission::Create,
                Permission::Read,
                Permission::Update,
                Permission::Delete,
                Permission::Search,
            ] {
                if p & perm.bit() != 0 {
                    write!(f, "{}", perm.letter())?;
                }
            }
        }
        Ok(())
    }
}

fn parse_one(word: &str) -> Option<(Types, u8)> {
    let rest = word.strip_prefix("system/")?;
    if rest.contains('?') {
        return None;
    }
    let (t, perms) = rest.split_once('.')?;
    let types = match t {
        "*" => Types::All,
        t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Types::One(t.to_string())
        }
        _ => return None,
    };
    let bits = match perms {
        "*" => ALL,
        "read" => READ,
        "write" => WRITE,
        v2 => v2_bits(v2)?,
    };
    Some((types, bits))
}

/// `cruds` and its ordered subsets; each letter once, in that order.
fn v2_bits(s: &str) -> Option<u8> {
    if s.is_empty() {
        return None;
    }
    let order = [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ];
    let mut bits = 0;
    let mut next = 0;
    for c in s.chars() {
        let i = order[next..].iter().position(|p| p.letter() == c)? + next;
        bits |= order[i].bit();
        next = i + 1;
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::Permission::*;
    use super::*;

    #[test]
    fn v1_read_write_and_star() {
        let (s, ignored) = Scopes::parse("system/CarePlan.read system/Goal.write openid");
        assert_eq!(ignored, vec!["openid"]);
        assert!(s.allows("CarePlan", Read) && s.allows("CarePlan", Search));
        assert!(!s.allows("CarePlan", Create) && !s.allows("CarePlan", Delete));
        assert!(s.allows("Goal", Create) && s.allows("Goal", Update) && s.allows("Goal", Delete));
        assert!(!s.allows("Goal", Read) && !s.allows("Patient", Read));
        let (all, _) = Scopes::parse("system/*.*");
        for p in [Create, Read, Update, Delete, Search] {
            assert!(all.allows("AuditEvent", p));
        }
    }

    #[test]
    fn v2_letters_in_order_only() {
        let (s, ignored) =
            Scopes::parse("system/*.rs system/Encounter.cud system/X.sr system/Y.rr");
        assert_eq!(ignored, vec!["system/X.sr", "system/Y.rr"]);
        assert!(s.allows("Patient", Read) && s.allows("Patient", Search));
        assert!(!s.allows("Patient", Create));
        assert!(s.allows("Encounter", Delete) && !s.allows("Goal", Update));
    }

    #[test]
    fn other_contexts_and_narrowed_scopes_grant_nothing() {
        let (s, ignored) = Scopes::parse(
            "patient/*.read user/CarePlan.cruds system/Observation.rs?category=vital-signs launch",
        );
        assert!(s.is_empty());
        assert_eq!(ignored.len(), 4);
        assert!(!s.allows("Observation", Read));
    }

    #[test]
    fn intersection_limits_a_token_to_its_clients_ceiling() {
        let (token, _) = Scopes::parse("system/*.cruds");
        let (ceiling, _) = Scopes::parse("system/CarePlan.rs system/Goal.read");
        let granted = token.intersect(&ceiling);
        assert!(granted.allows("CarePlan", Search) && granted.allows("Goal", Read));
        assert!(!granted.allows("CarePlan", Create) && !granted.allows("Patient", Read));
        let (narrow, _) = Scopes::parse("system/Goal.c");
        assert!(narrow.intersect(&ceiling).is_empty());
        assert_eq!(granted.to_string(), "system/CarePlan.rs system/Goal.rs");
    }
}
