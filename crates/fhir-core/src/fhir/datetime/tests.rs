//! The one date/time type against the five readings it replaced (kept here, as they were, as
//! oracles): on every text any of them accepted, it gives the same verdict and the same value.

use proptest::prelude::*;

use super::*;

/// The validator's readings of the primitive types (`validation/primitive.rs`).
mod validator {
    fn num(s: &str, len: usize) -> Result<u32, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("expected {len} digits, found {s:?}"));
        }
        s.parse().map_err(|_| format!("{s:?} is not a number"))
    }

    fn days_in(year: u32, month: u32) -> u32 {
        match month {
            4 | 6 | 9 | 11 => 30,
            2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
            2 => 28,
            _ => 31,
        }
    }

    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, with a real calendar date.
    pub fn date(s: &str) -> Result<(), String> {
        let mut parts = s.split('-');
        let year = num(parts.next().unwrap_or_default(), 4)?;
        if year == 0 {
            return Err("year 0000 does not exist".into());
        }
        if let Some(m) = parts.next() {
            let month = num(m, 2)?;
            if !(1..=12).contains(&month) {
                return Err(format!("month {month} does not exist"));
            }
            if let Some(d) = parts.next() {
                let day = num(d, 2)?;
                if day == 0 || day > days_in(year, month) {
                    return Err(format!("day {day} does not exist in {year}-{month:02}"));
                }
            }
        }
        if parts.next().is_some() {
            return Err("expected YYYY, YYYY-MM or YYYY-MM-DD".into());
        }
        Ok(())
    }

    /// `hh:mm:ss(.fff…)`.
    pub fn time(s: &str) -> Result<(), String> {
        let (hms, frac) = match s.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (s, None),
        };
        let mut parts = hms.split(':');
        let h = num(parts.next().unwrap_or_default(), 2)?;
        let m = num(parts.next().unwrap_or_default(), 2)?;
        let sec = num(parts.next().unwrap_or_default(), 2)?;
        if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
            return Err("expected hh:mm:ss with hours 00–23, minutes and seconds 00–59".into());
        }
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err("fractional seconds must be digits".into());
            }
        }
        Ok(())
    }

    /// A dateTime (partial dates allowed; a time needs a zone) or an instant (full, with zone).
    pub fn date_time(s: &str, instant: bool) -> Result<(), String> {
        let Some((d, t)) = s.split_once('T') else {
            if instant {
                return Err("an instant needs a full date, time and time zone".into());
            }
            return date(s);
        };
        if d.len() != 10 {
            return Err("a time needs a full date (YYYY-MM-DD) before the T".into());
        }
        date(d)?;
        let (clock, zone) = if let Some(c) = t.strip_suffix('Z') {
            (c, "Z")
        } else if let Some(i) = t.rfind(['+', '-']) {
            (&t[..i], &t[i..])
        } else {
            return Err("a time must carry a time zone (Z or ±hh:mm)".into());
        };
        time(clock)?;
        if zone != "Z" {
            let z = &zone[1..];
            let (zh, zm) = z.split_once(':').ok_or("time zone must be ±hh:mm")?;
            let (zh, zm) = (num(zh, 2)?, num(zm, 2)?);
            if zh > 14 || zm > 59 {
                return Err(format!("time zone {zone} is out of range"));
            }
        }
        Ok(())
    }
}

/// The search's reading of date values (`fhir/search_params.rs`).
mod search {
    use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

    pub fn date_range(s: &str) -> Option<(i64, i64)> {
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let mut fields = date.split('-');
        let year = digits(fields.next()?, 4)? as i32;
        let month = optional_digits(fields.next(), 2)?;
        let day = optional_digits(fields.next(), 2)?;
        if fields.next().is_some() {
            return None;
        }
        let start = NaiveDate::from_ymd_opt(year, month.unwrap_or(1), day.unwrap_or(1))?;
        let midnight_ms = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
        let Some(time) = time else {
            let end = match (month, day) {
                (_, Some(_)) => start.succ_opt()?,
                (Some(_), None) => start.checked_add_months(chrono::Months::new(1))?,
                (None, None) => NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?,
            };
            return Some((midnight_ms(start), midnight_ms(end) - 1));
        };
        day?;
        let (clock, offset_ms) = split_zone(time)?;
        let (hms, fraction) = match clock.split_once('.') {
            Some((hms, f)) => (hms, Some(f)),
            None => (clock, None),
        };
        let mut hms = hms.split(':');
        let hour = digits(hms.next()?, 2)?;
        let minute = digits(hms.next()?, 2)?;
        let second = optional_digits(hms.next(), 2)?;
        if hms.next().is_some() || (second.is_none() && fraction.is_some()) {
            return None;
        }
        let time_of_day = NaiveTime::from_hms_opt(hour, minute, second.unwrap_or(0))?;
        let clock_ms = i64::from(time_of_day.num_seconds_from_midnight()) * 1000;
        let (fraction_ms, span) = match (second, fraction) {
            (None, _) => (0, 60_000),
            (Some(_), None) => (0, 1_000),
            (Some(_), Some(f)) => {
                if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let kept = &f[..f.len().min(3)];
                let scale = 10i64.pow(3 - kept.len() as u32);
                (kept.parse::<i64>().ok()? * scale, scale)
            }
        };
        let lo = midnight_ms(start) + clock_ms + fraction_ms - offset_ms;
        Some((lo, lo + span - 1))
    }

    /// Split `10:00:00+01:00` into the clock part and the zone offset in milliseconds (`Z` and no
    /// zone are UTC).
    fn split_zone(time: &str) -> Option<(&str, i64)> {
        if let Some(clock) = time.strip_suffix('Z') {
            return Some((clock, 0));
        }
        let Some(i) = time.rfind(['+', '-']) else {
            return Some((time, 0));
        };
        let (clock, zone) = time.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        let (h, m) = (digits(h, 2)?, digits(m, 2)?);
        if h > 14 || m > 59 {
            return None;
        }
        Some((clock, sign * i64::from(h * 60 + m) * 60_000))
    }

    /// `s` as a number if it is exactly `len` ASCII digits.
    fn digits(s: &str, len: usize) -> Option<u32> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    }

    /// `Some(None)` for an absent field, `Some(Some(n))` for `len` digits, `None` for anything else.
    fn optional_digits(s: Option<&str>, len: usize) -> Option<Option<u32>> {
        match s {
            None => Some(None),
            Some(s) => digits(s, len).map(Some),
        }
    }
}

/// FHIRPath's reading of literals and conversions (`fhirpath/temporal.rs`).
mod fhirpath {
    #![allow(dead_code)]
    // Moved unchanged into `fhir::datetime`; the oracle's own copy would be the same lines.
    use crate::fhir::datetime::{days_in_month, Precision, TemporalKind};

    #[derive(Clone, Copy, Debug)]
    pub struct Old {
        pub kind: TemporalKind,
        pub year: i32,
        pub month: u8,
        pub day: u8,
        pub hour: u8,
        pub minute: u8,
        pub second: u8,
        pub millis: u16,
        pub precision: Precision,
        /// Offset from UTC in minutes, when the source named one.
        pub tz: Option<i32>,
        /// How many fraction digits were written (for printing back).
        pub frac_digits: u8,
    }

    fn num_b(s: &[u8], len: usize) -> Option<u32> {
        if s.len() < len || !s[..len].iter().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut v = 0u32;
        for c in &s[..len] {
            v = v * 10 + (c - b'0') as u32;
        }
        Some(v)
    }

    impl Old {
        fn empty(kind: TemporalKind) -> Self {
            Old {
                kind,
                year: 0,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                millis: 0,
                precision: Precision::Year,
                tz: None,
                frac_digits: 0,
            }
        }

        /// `YYYY[-MM[-DD]]`
        pub fn parse_date(s: &str) -> Option<Self> {
            let (t, rest) = Self::parse_date_part(s.as_bytes(), TemporalKind::Date)?;
            if !rest.is_empty() {
                return None;
            }
            Some(t)
        }

        fn parse_date_part(b: &[u8], kind: TemporalKind) -> Option<(Self, &[u8])> {
            let mut t = Self::empty(kind);
            t.year = num_b(b, 4)? as i32;
            let mut rest = &b[4..];
            if rest.len() >= 3 && rest[0] == b'-' {
                let m = num_b(&rest[1..], 2)?;
                if !(1..=12).contains(&m) {
                    return None;
                }
                t.month = m as u8;
                t.precision = Precision::Month;
                rest = &rest[3..];
                if rest.len() >= 3 && rest[0] == b'-' {
                    let d = num_b(&rest[1..], 2)?;
                    if d < 1 || d > days_in_month(t.year, t.month) as u32 {
                        return None;
                    }
                    t.day = d as u8;
                    t.precision = Precision::Day;
                    rest = &rest[3..];
                }
            }
            Some((t, rest))
        }

        /// `hh[:mm[:ss[.fff]]]` into `t`; returns the remaining bytes.
        fn parse_time_part<'b>(t: &mut Self, b: &'b [u8]) -> Option<&'b [u8]> {
            let h = num_b(b, 2)?;
            if h > 23 {
                return None;
            }
            t.hour = h as u8;
            t.precision = Precision::Hour;
            let mut rest = &b[2..];
            if rest.len() >= 3 && rest[0] == b':' {
                let m = num_b(&rest[1..], 2)?;
                if m > 59 {
                    return None;
                }
                t.minute = m as u8;
                t.precision = Precision::Minute;
                rest = &rest[3..];
                if rest.len() >= 3 && rest[0] == b':' {
                    let s = num_b(&rest[1..], 2)?;
                    if s > 59 {
                        return None;
                    }
                    t.second = s as u8;
                    t.precision = Precision::Second;
                    rest = &rest[3..];
                    if rest.len() >= 2 && rest[0] == b'.' && rest[1].is_ascii_digit() {
                        let mut i = 1;
                        let mut ms = 0u32;
                        while i < rest.len() && rest[i].is_ascii_digit() {
                            if i <= 3 {
                                ms = ms * 10 + (rest[i] - b'0') as u32;
                            }
                            i += 1;
                        }
                        let digits = i - 1;
                        for _ in digits..3 {
                            ms *= 10;
                        }
                        t.millis = ms as u16;
                        t.frac_digits = digits.min(9) as u8;
                        t.precision = Precision::Millis;
                        rest = &rest[i..];
                    }
                }
            }
            Some(rest)
        }

        fn parse_tz(b: &[u8]) -> Option<Option<i32>> {
            if b.is_empty() {
                return Some(None);
            }
            if b == b"Z" {
                return Some(Some(0));
            }
            if b.len() == 6 && (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
                let h = num_b(&b[1..], 2)? as i32;
                let m = num_b(&b[4..], 2)? as i32;
                if h > 14 || m > 59 {
                    return None;
                }
                let off = h * 60 + m;
                return Some(Some(if b[0] == b'-' { -off } else { off }));
            }
            None
        }

        /// FHIR dateTime / instant text, or a FHIRPath date-time literal body:
        /// `YYYY[-MM[-DD]][T[hh[:mm[:ss[.f+]]]][Z|(+|-)hh:mm]]`.
        pub fn parse_datetime(s: &str) -> Option<Self> {
            let (mut t, rest) = Self::parse_date_part(s.as_bytes(), TemporalKind::DateTime)?;
            if rest.is_empty() {
                return Some(t);
            }
            if rest[0] != b'T' {
                return None;
            }
            let rest = &rest[1..];
            if rest.is_empty() {
                return Some(t);
            }
            if t.precision != Precision::Day {
                // a time needs a full date
                return None;
            }
            let rest = Self::parse_time_part(&mut t, rest)?;
            t.tz = Self::parse_tz(rest)?;
            Some(t)
        }

        /// `hh[:mm[:ss[.f+]]]` (no timezone).
        pub fn parse_time(s: &str) -> Option<Self> {
            let mut t = Self::empty(TemporalKind::Time);
            let rest = Self::parse_time_part(&mut t, s.as_bytes())?;
            if !rest.is_empty() {
                return None;
            }
            Some(t)
        }
    }
}

/// Texts near the grammar: every part present, missing, out of range or malformed, with stray
/// characters now and then.
fn near_dates() -> impl Strategy<Value = String> {
    let year = prop_oneof![
        Just("0000".to_string()),
        Just("0001".to_string()),
        Just("1900".to_string()),
        Just("2000".to_string()),
        Just("2023".to_string()),
        Just("2024".to_string()),
        Just("9999".to_string()),
        "[0-9]{4}",
        "[0-9]{2,5}",
    ];
    let two = |hi: u32| {
        // the edges (0, the largest valid value and the one above it) as often as the rest
        prop_oneof![
            6 => (0..=hi).prop_map(|n| format!("{n:02}")),
            2 => prop::sample::select(vec![0, 1, hi - 2, hi - 1, hi]).prop_map(|n| format!("{n:02}")),
            1 => "[0-9]{1,3}",
            1 => Just("x1".to_string()),
        ]
    };
    let month = prop::option::weighted(0.85, two(13).prop_map(|m| format!("-{m}")));
    let day = prop::option::weighted(0.85, two(32).prop_map(|d| format!("-{d}")));
    let fraction = prop::option::weighted(0.5, "[0-9]{0,12}".prop_map(|f| format!(".{f}")));
    let clock = prop::option::weighted(
        0.9,
        (
            two(25),
            prop::option::weighted(
                0.9,
                (
                    two(61).prop_map(|m| format!(":{m}")),
                    prop::option::weighted(0.85, (two(61).prop_map(|s| format!(":{s}")), fraction)),
                ),
            ),
        ),
    )
    .prop_map(|c| match c {
        None => String::new(),
        Some((h, None)) => h,
        Some((h, Some((m, None)))) => format!("{h}{m}"),
        Some((h, Some((m, Some((s, f)))))) => format!("{h}{m}{s}{}", f.unwrap_or_default()),
    });
    let zone = prop_oneof![
        3 => Just(""),
        3 => Just("Z"),
        3 => Just("+01:00"),
        2 => Just("-05:30"),
        1 => Just("-00:00"),
        1 => Just("+14:00"),
        1 => Just("z"),
        1 => Just("+14:01"),
        1 => Just("+15:00"),
        1 => Just("+05:60"),
        1 => Just("+1:00"),
        1 => Just("+01"),
        1 => Just("+0100"),
        1 => Just("-"),
        1 => Just("ZZ"),
    ];
    let time = prop::option::weighted(
        0.7,
        (
            prop_oneof![8 => Just("T"), 1 => Just("t"), 1 => Just(" ")],
            clock,
            zone,
        ),
    )
    .prop_map(|t| {
        t.map(|(sep, c, z)| format!("{sep}{c}{z}"))
            .unwrap_or_default()
    });
    let noise = prop_oneof![
        20 => Just(String::new()),
        1 => "[-:TZ.+0-9a é]{1,3}",
    ];
    (year, month, day, time, noise).prop_map(|(y, m, d, t, n)| {
        format!(
            "{y}{}{}{t}{n}",
            m.unwrap_or_default(),
            d.unwrap_or_default()
        )
    })
}

/// Times near the grammar of the `time` type and FHIRPath time literals.
fn near_times() -> impl Strategy<Value = String> {
    (near_dates(), "[0-9:.Z+-]{0,14}").prop_map(|(d, t)| {
        // the time part of a near date, or a short random text of time characters
        d.split_once(['T', 't', ' '])
            .map_or(t, |(_, time)| time.to_string())
    })
}

fn fields(t: &Temporal) -> (i32, u8, u8, u8, u8, u8, u32, Precision, Option<i32>, u8) {
    (
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.millis(),
        t.precision,
        t.tz,
        t.frac_digits,
    )
}

fn old_fields(t: &fhirpath::Old) -> (i32, u8, u8, u8, u8, u8, u32, Precision, Option<i32>, u8) {
    (
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        u32::from(t.millis),
        t.precision,
        t.tz,
        t.frac_digits,
    )
}

fn new_validator(s: &str, ty: FhirType) -> bool {
    Temporal::parse_fhir(s, ty).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn the_validator_accepts_what_it_accepted(s in near_dates()) {
        prop_assert_eq!(new_validator(&s, FhirType::Date), validator::date(&s).is_ok(), "date {:?}", s);
        prop_assert_eq!(
            new_validator(&s, FhirType::DateTime),
            validator::date_time(&s, false).is_ok(),
            "dateTime {:?}", s
        );
        prop_assert_eq!(
            new_validator(&s, FhirType::Instant),
            validator::date_time(&s, true).is_ok(),
            "instant {:?}", s
        );
    }

    #[test]
    fn the_validator_accepts_the_times_it_accepted(s in near_times()) {
        prop_assert_eq!(new_validator(&s, FhirType::Time), validator::time(&s).is_ok(), "time {:?}", s);
    }

    #[test]
    fn search_ranges_are_what_they_were(s in near_dates()) {
        let new = Temporal::parse_search(&s).map(|t| t.range_ms());
        prop_assert_eq!(new, search::date_range(&s), "{:?}", s);
    }

    #[test]
    fn fhirpath_reads_what_it_read(s in near_dates(), t in near_times()) {
        let date = Temporal::parse_fhirpath(&s, TemporalKind::Date).map(|t| fields(&t));
        prop_assert_eq!(date, fhirpath::Old::parse_date(&s).map(|t| old_fields(&t)), "date {:?}", s);
        let dt = Temporal::parse_fhirpath(&s, TemporalKind::DateTime).map(|t| fields(&t));
        prop_assert_eq!(dt, fhirpath::Old::parse_datetime(&s).map(|t| old_fields(&t)), "dateTime {:?}", s);
        let time = Temporal::parse_fhirpath(&t, TemporalKind::Time).map(|t| fields(&t));
        prop_assert_eq!(time, fhirpath::Old::parse_time(&t).map(|t| old_fields(&t)), "time {:?}", t);
    }

    /// What the municipal rules and `_since` used: chrono's RFC 3339 reading. On texts of a FHIR
    /// dateTime with seconds and an offset, the one type gives chrono's instant.
    #[test]
    fn full_date_times_are_chronos(s in near_dates()) {
        if let Ok(t) = Temporal::parse_fhir(&s, FhirType::Instant) {
            let chrono = chrono::DateTime::parse_from_rfc3339(&s).ok();
            prop_assert_eq!(t.to_chrono(), chrono, "{:?}", s);
        }
    }
}

#[test]
fn the_validator_says_what_is_wrong() {
    let err = |s: &str, ty| Temporal::parse_fhir(s, ty).unwrap_err();
    assert_eq!(
        err("2023-02-29", FhirType::Date),
        "day 29 does not exist in 2023-02"
    );
    assert_eq!(err("2024-13", FhirType::Date), "month 13 does not exist");
    assert_eq!(err("0000", FhirType::Date), "year 0000 does not exist");
    assert_eq!(
        err("2024-05-01T10:00:00", FhirType::DateTime),
        "a time must carry a time zone (Z or ±hh:mm)"
    );
    assert_eq!(
        err("2024-05-01", FhirType::Instant),
        "an instant needs a full date, time and time zone"
    );
    assert_eq!(
        err("2024-05-01T10:00:00+15:00", FhirType::DateTime),
        "time zone +15:00 is out of range"
    );
    // a leap second is FHIR's, not FHIRPath's
    assert!(Temporal::parse_fhir("2016-12-31T23:59:60Z", FhirType::Instant).is_ok());
    assert!(Temporal::parse_fhirpath("2016-12-31T23:59:60Z", TemporalKind::DateTime).is_none());
}

#[test]
fn ranges_cover_the_precision_given() {
    let range = |s: &str| Temporal::parse_search(s).map(|t| t.range_ms());
    assert_eq!(range("1970"), Some((0, 365 * 86_400_000 - 1)));
    assert_eq!(range("1970-01-01T00:01Z"), Some((60_000, 119_999)));
    assert_eq!(range("1970-01-01T01:00:00.5+01:00"), Some((500, 599)));
    assert_eq!(
        range("1970-01-01T10"),
        None,
        "an hour alone is not a search value"
    );
}
