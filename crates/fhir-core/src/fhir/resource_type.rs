//! [`ResourceType`]: a resource type this server serves, checked once where a name enters.

use std::fmt;

use super::SUPPORTED_TYPES;

/// A resource type in [`SUPPORTED_TYPES`]. The only way to make one is [`ResourceType::parse`]
/// (or deserializing, which parses), so a function that takes a `ResourceType` never sees a
/// misspelt or unsupported name: the check happens once, where the name enters (a URL segment,
/// a Bundle entry, a job read back). It is a `Copy` index into the table, and reads as the name
/// (`Deref<Target = str>`) for the code that only needs the text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(u8);

const _: () = assert!(SUPPORTED_TYPES.len() <= u8::MAX as usize);

impl ResourceType {
    /// The type named `name`, if this server serves it (exact, case-sensitive match).
    pub fn parse(name: &str) -> Option<ResourceType> {
        SUPPORTED_TYPES
            .binary_search(&name)
            .ok()
            .map(|i| ResourceType(i as u8))
    }

    /// The type named `name`, for names written in the code: evaluated at compile time in a
    /// `const`, where a name the server does not serve stops the build.
    pub const fn named(name: &str) -> ResourceType {
        let mut i = 0;
        while i < SUPPORTED_TYPES.len() {
            if const_eq(SUPPORTED_TYPES[i].as_bytes(), name.as_bytes()) {
                return ResourceType(i as u8);
            }
            i += 1;
        }
        panic!("not a resource type this server serves")
    }

    /// Every type the server serves, in name order.
    pub fn all() -> impl ExactSizeIterator<Item = ResourceType> + Clone {
        (0..SUPPORTED_TYPES.len()).map(|i| ResourceType(i as u8))
    }

    pub fn as_str(self) -> &'static str {
        SUPPORTED_TYPES[usize::from(self.0)]
    }
}

/// The types the gateway's own code names.
impl ResourceType {
    pub const AUDIT_EVENT: ResourceType = ResourceType::named("AuditEvent");
    pub const BUNDLE: ResourceType = ResourceType::named("Bundle");
    pub const CARE_PLAN: ResourceType = ResourceType::named("CarePlan");
    pub const CARE_TEAM: ResourceType = ResourceType::named("CareTeam");
    pub const COMMUNICATION: ResourceType = ResourceType::named("Communication");
    pub const COMPOSITION: ResourceType = ResourceType::named("Composition");
    pub const CONDITION: ResourceType = ResourceType::named("Condition");
    pub const ENCOUNTER: ResourceType = ResourceType::named("Encounter");
    pub const EPISODE_OF_CARE: ResourceType = ResourceType::named("EpisodeOfCare");
    pub const GOAL: ResourceType = ResourceType::named("Goal");
    pub const GROUP: ResourceType = ResourceType::named("Group");
    pub const MESSAGE_HEADER: ResourceType = ResourceType::named("MessageHeader");
    pub const ORGANIZATION: ResourceType = ResourceType::named("Organization");
    pub const PATIENT: ResourceType = ResourceType::named("Patient");
    pub const PRACTITIONER: ResourceType = ResourceType::named("Practitioner");
    pub const PROVENANCE: ResourceType = ResourceType::named("Provenance");
    pub const QUESTIONNAIRE: ResourceType = ResourceType::named("Questionnaire");
    pub const QUESTIONNAIRE_RESPONSE: ResourceType = ResourceType::named("QuestionnaireResponse");
    pub const TASK: ResourceType = ResourceType::named("Task");
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl std::ops::Deref for ResourceType {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ResourceType {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ResourceType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ResourceType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ResourceType {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<ResourceType> for str {
    fn eq(&self, other: &ResourceType) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ResourceType> for String {
    fn eq(&self, other: &ResourceType) -> bool {
        self == other.as_str()
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ResourceType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ResourceType::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{name:?} is not a resource type this server serves"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_name_round_trips_and_nothing_else_parses() {
        assert_eq!(ResourceType::all().len(), SUPPORTED_TYPES.len());
        for (t, name) in ResourceType::all().zip(SUPPORTED_TYPES) {
            assert_eq!(t.as_str(), *name);
            assert_eq!(ResourceType::parse(name), Some(t));
            assert_eq!(t.to_string(), *name);
        }
        for bad in [
            "",
            "careplan",
            "Careplan",
            "CarePlan ",
            "Medication",
            "Patient/1",
        ] {
            assert_eq!(ResourceType::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn named_constants_are_their_names() {
        assert_eq!(ResourceType::CARE_PLAN, "CarePlan");
        assert_eq!(
            ResourceType::QUESTIONNAIRE_RESPONSE,
            "QuestionnaireResponse"
        );
        assert_eq!(
            ResourceType::named("Task"),
            ResourceType::parse("Task").unwrap()
        );
    }

    #[test]
    fn serde_checks_the_name() {
        let t: ResourceType = serde_json::from_str("\"Goal\"").unwrap();
        assert_eq!(t, "Goal");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"Goal\"");
        let err = serde_json::from_str::<ResourceType>("\"Gaol\"").unwrap_err();
        assert!(err.to_string().contains("not a resource type"), "{err}");
    }
}
