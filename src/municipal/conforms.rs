//! The JSON Schema's checks (`profiles/municipal/care-record-v1.schema.json`) done on the typed
//! record, so a posted record can be parsed once, straight into [`CareRecord`], without a
//! `serde_json::Value` for the schema validator to walk.
//!
//! This is a sufficient condition, not a second schema: [`conforms`] answers `true` only for a
//! record the schema certainly accepts, and where the two could read a value differently it
//! answers `false` and the caller falls back to the schema validator, whose answer (and
//! messages) are authoritative. The parse does its share: `deny_unknown_fields` stands for
//! `additionalProperties: false`, non-`Option` fields for `required`, the Rust types for `type`
//! (an optional member given as `null` fails the parse, see [`super::record`]), enums for the
//! `enum`s that have a type of their own (`course.status`), and serde refuses a duplicated
//! member. What is left is checked here: `const`, `enum`, `pattern`,
//! `minLength`/`maxLength`, `minItems` and the integer ranges.
//!
//! Conservative where regular-expression flavours or length units could differ:
//! - `text` (`\S`, 1–4000 characters) passes only with a letter, a digit or an ASCII character
//!   other than ASCII whitespace in it (no flavour calls those whitespace), and at most 4000
//!   bytes (never more characters or UTF-16 units than bytes);
//! - `code` passes only in ASCII, whose whitespace every flavour agrees on.
//!
//! `tests/municipal.rs` holds it to the schema: every fixture and generated records, valid and
//! with a value broken, must never pass here where the schema finds a problem.

use super::record::FORMAT_V1;
use super::record::{CareRecord, Course, GoalReview, Period, Stay};

/// Whether the schema certainly accepts a record that parsed as [`CareRecord`].
pub fn conforms(rec: &CareRecord) -> bool {
    let c = &rec.citizen;
    rec.format == FORMAT_V1
        && is_id(&rec.record_id)
        && (1..=i32::MAX as u32).contains(&rec.record_version)
        && digits(&rec.municipality.code, 4, 4)
        && is_text(&rec.municipality.name)
        && is_sor(&rec.municipality.sor)
        && c.given_names
            .as_ref()
            .is_none_or(|g| !g.is_empty() && g.iter().all(|n| is_text(n)))
        && opt(&c.family_name, is_text)
        && opt(&c.birth_date, is_date)
        && course(&rec.course)
        && rec.conditions.iter().all(|x| {
            is_id(&x.id) && is_code(&x.code) && opt(&x.severity, is_code) && opt(&x.note, is_text)
        })
        && rec.goals.iter().all(|g| {
            is_id(&g.id)
                && opt(&g.citizen_words, is_text)
                && is_text(&g.description)
                && g.measure
                    .as_ref()
                    .is_none_or(|m| is_text(&m.description) && is_text(&m.unit))
                && opt(&g.due, is_date)
                && DISCIPLINES.contains(&g.responsible_discipline.as_str())
                && ACHIEVEMENTS.contains(&g.achievement.as_str())
                && g.addresses.iter().all(|a| is_id(a))
        })
        && rec.interventions.iter().all(|i| {
            is_id(&i.id)
                && is_code(&i.code)
                && DISCIPLINES.contains(&i.discipline.as_str())
                && i.frequency.as_ref().is_none_or(|f| {
                    (1..=1000).contains(&f.count) && one_of(&f.per, &["day", "week", "month"])
                })
                && i.goals.iter().all(|g| is_id(g))
                && opt(&i.note, is_text)
        })
        && rec.care_team.iter().all(|m| {
            is_id(&m.id) && is_text(&m.name) && DISCIPLINES.contains(&m.discipline.as_str())
        })
        && rec.meetings.iter().all(|m| {
            is_id(&m.id)
                && is_date_time(&m.start)
                && opt(&m.end, is_date_time)
                && m.participants.iter().all(|p| is_id(p))
                && m.decisions.iter().all(|d| is_text(d))
                && m.goal_reviews.iter().all(review)
        })
}

const DISCIPLINES: &[&str] = &[
    "physiotherapist",
    "occupational-therapist",
    "nurse",
    "social-and-health-care-assistant",
    "social-and-health-care-helper",
    "dietitian",
    "physician",
    "care-manager",
    "speech-therapist",
    "psychologist",
    "social-worker",
    "other",
];

const ACHIEVEMENTS: &[&str] = &[
    "in-progress",
    "improving",
    "worsening",
    "no-change",
    "achieved",
    "sustaining",
    "not-achieved",
    "no-progress",
    "not-attainable",
];

fn course(c: &Course) -> bool {
    one_of(
        &c.kind,
        &[
            "rehabilitation-temporary-place",
            "rehabilitation-home",
            "rehabilitation-after-hospital",
            "temporary-stay",
            "home-care",
        ],
    ) && one_of(
        &c.legal_basis,
        &[
            "sel-83",
            "sel-83a",
            "sel-84-1",
            "sel-84-2",
            "sel-86-1",
            "sel-86-2",
            "sel-107",
            "aeldreloven",
            "sul-138",
            "sul-140",
        ],
    ) && one_of(
        &c.phase,
        &[
            "assessment",
            "goal-setting",
            "intervention",
            "follow-up",
            "completed",
        ],
    ) && period(&c.period)
        && c.stay.as_ref().is_none_or(stay)
}

fn period(p: &Period) -> bool {
    is_date_time(&p.start) && opt(&p.end, is_date_time)
}

fn stay(s: &Stay) -> bool {
    is_text(&s.unit.name)
        && is_sor(&s.unit.sor)
        && s.admitted_from.as_ref().is_none_or(|a| {
            one_of(
                &a.kind,
                &[
                    "hospital",
                    "psychiatry",
                    "gp",
                    "nursing-home",
                    "home",
                    "other",
                ],
            ) && opt(&a.name, is_text)
                && opt(&a.sor, is_sor)
        })
        && is_date_time(&s.admitted_at)
        && opt(&s.ready_for_discharge_at, is_date_time)
        && opt(&s.discharged_at, is_date_time)
        && s.discharge_destination.as_ref().is_none_or(|d| {
            one_of(
                d,
                &[
                    "home",
                    "nursing-home",
                    "hospital",
                    "other-municipal-service",
                    "deceased",
                    "other",
                ],
            )
        })
}

fn review(r: &GoalReview) -> bool {
    is_id(&r.goal) && ACHIEVEMENTS.contains(&r.achievement.as_str()) && opt(&r.note, is_text)
}

fn opt(v: &Option<String>, check: fn(&str) -> bool) -> bool {
    v.as_deref().is_none_or(check)
}

fn one_of(v: &str, allowed: &[&str]) -> bool {
    allowed.contains(&v)
}

/// `^[0-9]{min,max}$`.
fn digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `$defs/sor`: `^[0-9]{1,18}$`.
fn is_sor(s: &str) -> bool {
    digits(s, 1, 18)
}

/// `$defs/recordId` and `$defs/localId`: `^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$`.
fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
}

/// ASCII whitespace as every regular-expression flavour's `\s` has it.
fn ascii_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

/// `$defs/text` (conservatively, see the module documentation).
fn is_text(s: &str) -> bool {
    s.len() <= 4000
        && s.chars()
            .any(|c| c.is_alphanumeric() || (c.is_ascii() && !ascii_space(c as u8)))
}

/// `$defs/code`: `^[^\s]+(\s[^\s]+)*$`, at most 128 characters; ASCII only (conservatively).
fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.is_ascii()
        && !ascii_space(b[0])
        && !ascii_space(b[b.len() - 1])
        && !b.windows(2).any(|w| ascii_space(w[0]) && ascii_space(w[1]))
}

/// Two ASCII digits at `at`, as a number.
fn two(b: &[u8], at: usize) -> Option<u8> {
    let (h, l) = (*b.get(at)?, *b.get(at + 1)?);
    (h.is_ascii_digit() && l.is_ascii_digit()).then(|| (h - b'0') * 10 + (l - b'0'))
}

/// `YYYY-MM-DD` with month 01–12 and day 01–31 at the start of `b`.
fn date_part(b: &[u8]) -> bool {
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && two(b, 5).is_some_and(|m| (1..=12).contains(&m))
        && two(b, 8).is_some_and(|d| (1..=31).contains(&d))
}

/// `$defs/date`.
fn is_date(s: &str) -> bool {
    s.len() == 10 && date_part(s.as_bytes())
}

/// `$defs/dateTime`: a date, `T`, `HH:MM:SS` (hours 00–23, seconds up to 60), an optional
/// fraction of 1–9 digits, and `Z` or an offset from -14:00 to +14:00.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if !(date_part(b)
        && b.get(10) == Some(&b'T')
        && two(b, 11).is_some_and(|h| h <= 23)
        && b.get(13) == Some(&b':')
        && two(b, 14).is_some_and(|m| m <= 59)
        && b.get(16) == Some(&b':')
        && two(b, 17).is_some_and(|s| s <= 60))
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        b"Z" => true,
        [sign, ..] if (*sign == b'+' || *sign == b'-') && rest.len() == 6 && rest[3] == b':' => {
            match (two(rest, 1), two(rest, 4)) {
                (Some(h), Some(m)) => (h <= 13 && m <= 59) || (h == 14 && m == 0),
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_follow_the_schema_pattern() {
        for ok in [
            "2026-03-02T10:30:00+01:00",
            "2026-12-31T23:59:60Z",
            "2026-01-01T00:00:00.123456789-14:00",
            "2026-01-01T00:00:00+13:59",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "2026-03-02",
            "2026-03-02T10:30+01:00",
            "2026-13-02T10:30:00Z",
            "2026-03-00T10:30:00Z",
            "2026-03-02T24:00:00Z",
            "2026-03-02T10:60:00Z",
            "2026-03-02T10:30:61Z",
            "2026-03-02T10:30:00",
            "2026-03-02T10:30:00.Z",
            "2026-03-02T10:30:00.1234567890Z",
            "2026-03-02T10:30:00+14:01",
            "2026-03-02T10:30:00+1:00",
            "2026-03-02T10:30:00Z\n",
            "2026-03-02 10:30:00Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn texts_codes_and_ids() {
        assert!(is_text("Går 50 m"));
        assert!(is_text("?"));
        assert!(!is_text(""));
        assert!(!is_text(" \t\u{a0}\u{feff}\u{85}"));
        assert!(!is_text(&"a".repeat(4001)));
        assert!(is_code("J1.4 a"));
        assert!(is_code("J1\t2"));
        assert!(!is_code("J1.4  a"));
        assert!(!is_code(" J1"));
        assert!(!is_code("J1\n"));
        assert!(!is_code("J1\u{a0}2"));
        assert!(!is_code(""));
        assert!(is_id("NX-0510-2025-004712"));
        assert!(!is_id("-a"));
        assert!(!is_id(&"a".repeat(65)));
        assert!(is_date("2024-02-31"));
        assert!(!is_date("2024-2-3"));
    }
}
