//! Rules of datatypes beyond their elements: `Coding.system` is an absolute URI, a `Period`
//! starts before it ends, an `Attachment`'s size matches its data.

use super::*;
use crate::fhir::Member;

impl<'d, 'v> Run<'d, 'v> {
    /// `Coding.system` names a code system by an absolute URI: not a local reference, not a
    /// value set, and not a supplement.
    pub(super) fn coding_system(&mut self, coding: &Map<String, Value>) {
        let Some(Value::String(system)) = coding.member("system") else {
            return;
        };
        let absolute = crate::validation::primitive::has_scheme(system);
        let mark = self.path.len();
        self.path.push_str(".system");
        if !absolute {
            self.error(
                "value",
                format!(
                    "Coding.system {:?} must be an absolute URI naming a code system, not a local \
                     reference",
                    truncate(system)
                ),
            );
        } else if self.v.terminology.has_value_set(system)
            && !self.v.terminology.has_code_system(system)
        {
            self.error(
                "value",
                format!("Coding.system {system} is a value set, not a code system"),
            );
        } else if let Some(base) = self.v.terminology.supplement_of(system) {
            self.error(
                "value",
                format!(
                    "Coding.system {system} is a supplement of {base}: a supplement only adds \
                     designations and properties, so write the code with {base} as its system"
                ),
            );
        }
        self.path.truncate(mark);
    }

    /// per-1: a Period does not end before it starts. Compared at the precision both have (a
    /// date against a dateTime by the day); equal there is undecided, which fails the rule as
    /// it does in the reference validator.
    pub(super) fn period(&mut self, p: &Map<String, Value>) {
        let (Some(Value::String(start)), Some(Value::String(end))) =
            (p.member("start"), p.member("end"))
        else {
            return;
        };
        match crate::validation::order::compare_dates(start, end) {
            Some(std::cmp::Ordering::Greater) => self.error(
                "invariant",
                format!("the period ends ({end}) before it starts ({start}): end must not be earlier than start [per-1]"),
            ),
            // As the reference validator: start <= end must hold, and between a date and a
            // dateTime of the same day it is undecided (FHIRPath gives no answer), so it fails.
            None if crate::validation::order::is_date(start) && crate::validation::order::is_date(end) => self.error(
                "invariant",
                format!("the period's start ({start}) and end ({end}) have different precisions and the same value as far as both go, so start cannot be shown to be no later than end; give both at the same precision [per-1]"),
            ),
            _ => {}
        }
    }

    /// An Identifier whose system is `urn:ietf:rfc:3986` says its value is a URI: an absolute
    /// one (a scheme first), so a bare OID is written `urn:oid:1.2.3` (as HL7's validator checks).
    pub(super) fn identifier_uri(&mut self, id: &Map<String, Value>) {
        let (Some(Value::String(system)), Some(Value::String(value))) =
            (id.member("system"), id.member("value"))
        else {
            return;
        };
        if system != "urn:ietf:rfc:3986" || super::rules::is_absolute(value) {
            return;
        }
        let oid = !value.is_empty() && value.chars().all(|c| c.is_ascii_digit() || c == '.');
        self.error_at(
            ".value",
            "value",
            if oid {
                format!(
                    "the system urn:ietf:rfc:3986 makes the value a URI, and {value:?} is a bare \
                     OID: write urn:oid:{value}"
                )
            } else {
                format!(
                    "the system urn:ietf:rfc:3986 makes the value a URI, and {:?} is not an \
                     absolute one (it needs a scheme, such as urn:, http:)",
                    truncate(value)
                )
            },
        );
    }

    /// `Attachment.size` is the number of bytes `data` decodes to.
    pub(super) fn attachment_size(&mut self, att: &Map<String, Value>) {
        let (Some(size), Some(Value::String(data))) = (att.member("size"), att.member("data"))
        else {
            return;
        };
        let (Some(stated), Some(actual)) = (
            crate::validation::order::number(size),
            crate::validation::questionnaire::decoded_len(data),
        ) else {
            return;
        };
        if stated != actual as f64 {
            self.error_at(
                ".size",
                "value",
                format!("size says {size} bytes, but data decodes to {actual} bytes"),
            );
        }
    }
}
