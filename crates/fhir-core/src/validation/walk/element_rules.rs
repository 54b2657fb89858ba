//! What an element states about each of its values: fixed and pattern values, `minValue`/
//! `maxValue`, bindings, invariants, and the profiles a type must meet.

use super::*;

impl<'d, 'v> Run<'d, 'v> {
    /// The rules an element states about each of its values: fixed or pattern value, binding,
    /// invariants (a profile pass names the profile in its messages).
    pub(super) fn element_rules(
        &mut self,
        val: &'v Value,
        el: &Element,
        code: &str,
        prof: &Profile,
        pass: Pass,
    ) {
        self.fixed_pattern(val, el, prof, pass);
        if el.min_value.is_some() || el.max_value.is_some() {
            self.min_max(val, el, code, prof, pass);
        }
        self.binding(val, el, code, pass);
        let profile = (pass == Pass::Profile).then_some(prof);
        self.constraints(val, el, code, pass, profile);
    }

    /// A profile pass over `val` from the root of profile `p`: its root invariants, then its
    /// elements.
    /// One of several profiles of which conforming to any one is enough: validates against `p`
    /// aside, and keeps its findings in `best` when it conforms (then true: stop trying) or when
    /// they are fewer than the closest so far.
    pub(super) fn one_of_profiles(
        &mut self,
        val: &'v Value,
        obj: &'v Map<String, Value>,
        p: &'d Profile,
        type_code: &str,
        best: &mut Option<Vec<Issue>>,
    ) -> bool {
        let before = std::mem::take(&mut self.issues);
        self.profile_root(val, obj, p, type_code);
        let found = std::mem::replace(&mut self.issues, before);
        let conforms = !found.iter().any(|i| i.severity <= Severity::Error);
        if conforms || best.as_ref().is_none_or(|b| b.len() > found.len()) {
            *best = Some(found);
        }
        conforms
    }

    pub(super) fn profile_root(
        &mut self,
        val: &'v Value,
        obj: &'v Map<String, Value>,
        p: &'d Profile,
        type_code: &str,
    ) {
        let node = Node { prof: p, elem: 0 };
        self.constraints(val, node.el(), type_code, Pass::Profile, Some(p));
        self.object(obj, node, Pass::Profile);
    }

    /// `minValue[x]`/`maxValue[x]`: numbers, dates, times and Quantities (converted between
    /// the common UCUM units).
    pub(super) fn min_max(
        &mut self,
        val: &Value,
        el: &Element,
        code: &str,
        prof: &Profile,
        pass: Pass,
    ) {
        use std::cmp::Ordering;
        let by = if pass == Pass::Profile {
            format!(" (profile {})", prof.label())
        } else {
            String::new()
        };
        for (bound, want, word) in [
            (&el.min_value, Ordering::Less, "less than the minimum"),
            (&el.max_value, Ordering::Greater, "more than the maximum"),
        ] {
            let Some(bound) = bound else { continue };
            let kind = if code == "Quantity" || code.is_empty() {
                // a Duration or Age constrained through its Quantity base
                "Quantity"
            } else {
                code
            };
            match crate::validation::order::compare(kind, val, bound) {
                Some(o) if o == want => self.error(
                    "value",
                    format!(
                        "{} is {word} of {}{by}",
                        crate::validation::order::show(kind, val),
                        crate::validation::order::show(kind, bound)
                    ),
                ),
                Some(_) => {}
                None if val.is_object()
                    && val.get("value").is_some()
                    && !crate::validation::order::quantities_comparable(val, bound) =>
                {
                    self.error(
                        "value",
                        format!(
                            "{} cannot be compared with the {} {}{by}: the units do not convert",
                            crate::validation::order::show(kind, val),
                            if want == Ordering::Less {
                                "minimum"
                            } else {
                                "maximum"
                            },
                            crate::validation::order::show(kind, bound)
                        ),
                    )
                }
                None => {}
            }
        }
    }

    pub(super) fn fixed_pattern(&mut self, val: &Value, el: &Element, prof: &Profile, pass: Pass) {
        let by = || {
            if pass == Pass::Profile {
                format!(" by profile {}", prof.label())
            } else {
                String::new()
            }
        };
        if let Some(f) = &el.fixed {
            if !equal_ignoring_extras(val, f) {
                self.error(
                    "value",
                    format!(
                        "must be exactly {}{}, found {}",
                        compact(f),
                        by(),
                        compact(val)
                    ),
                );
            }
        }
        if let Some(p) = &el.pattern {
            if !matches_pattern(val, p) {
                self.error(
                    "value",
                    format!(
                        "must match the pattern {}{}, found {}",
                        compact(p),
                        by(),
                        compact(val)
                    ),
                );
            }
        }
    }

    pub(super) fn binding(&mut self, val: &Value, el: &Element, code: &str, pass: Pass) {
        let Some(b) = &el.binding else {
            return;
        };
        if b.strength != Strength::Example {
            crate::validation::bindings::check(self, val, b, code, pass);
        }
        if !b.additional.is_empty() {
            crate::validation::bindings::check_additional(self, val, b, code);
        }
    }

    pub(super) fn constraints(
        &mut self,
        val: &'v Value,
        el: &Element,
        type_code: &str,
        pass: Pass,
        profile: Option<&Profile>,
    ) {
        if el.constraints.is_empty() {
            return;
        }
        crate::validation::invariants::check(self, val, el, type_code, pass, profile);
    }
}

/// Fixed-value equality: exact, except that ids and extensions in the instance are allowed.
pub(super) fn equal_ignoring_extras(actual: &Value, fixed: &Value) -> bool {
    match (actual, fixed) {
        (Value::Object(a), Value::Object(f)) => {
            f.iter()
                .all(|(k, fv)| a.get(k).is_some_and(|av| equal_ignoring_extras(av, fv)))
                && a.keys()
                    .all(|k| f.contains_key(k) || k == "id" || k == "extension")
        }
        (Value::Array(a), Value::Array(f)) => {
            a.len() == f.len() && a.iter().zip(f).all(|(x, y)| equal_ignoring_extras(x, y))
        }
        (Value::Number(a), Value::Number(f)) => numbers_equal(a, f),
        _ => actual == fixed,
    }
}

/// Pattern matching: every part of the pattern is present in the instance (arrays: each pattern
/// item matches some instance item).
pub(crate) fn matches_pattern(actual: &Value, pattern: &Value) -> bool {
    match (actual, pattern) {
        (Value::Object(a), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| a.get(k).is_some_and(|av| matches_pattern(av, pv))),
        (Value::Array(a), Value::Array(p)) => p
            .iter()
            .all(|pv| a.iter().any(|av| matches_pattern(av, pv))),
        (Value::Array(a), p) => a.iter().any(|av| matches_pattern(av, p)),
        (Value::Number(a), Value::Number(p)) => numbers_equal(a, p),
        _ => actual == pattern,
    }
}

pub(super) fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    a.to_string() == b.to_string() || a.as_f64().zip(b.as_f64()).is_some_and(|(x, y)| x == y)
}

pub(super) fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!("{}…", truncate(&s))
    } else {
        s
    }
}
