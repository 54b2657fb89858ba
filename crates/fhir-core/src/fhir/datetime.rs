//! The one FHIR date and time type: a date, dateTime, instant or time as written, with its
//! precision (a year, a month, a day, down to the fraction of a second) and its offset from UTC
//! when one is given.
//!
//! One lexer reads every form any part of the gateway accepts:
//! `YYYY[-MM[-DD]][T[hh[:mm[:ss[.f+]]]][Z|(+|-)hh:mm]]`, or `hh[:mm[:ss[.f+]]]` for a time, with
//! real calendar dates, hours 00–23, minutes 00–59, seconds 00–60 (FHIR's regex allows a leap
//! second) and offsets up to ±14:00. Each user then states what its own grammar adds:
//! - the validator, the FHIR primitive types ([`Temporal::parse_fhir`]): no year 0; a time in a
//!   dateTime needs seconds and an offset; an instant needs both;
//! - search values and `_since`-style ranges ([`Temporal::parse_search`], [`Temporal::range_ms`]):
//!   a time needs at least minutes; without an offset it is UTC;
//! - FHIRPath literals and conversions (`fhirpath::temporal`): partial times, no offset needed,
//!   no leap second;
//! - the municipal formats ([`Temporal::to_chrono`], [`Temporal::to_naive_date`]).
//!
//! The FHIRPath comparison and calendar arithmetic of this type live in `fhirpath::temporal`.
//! Civil-date conversions are done by hand (proleptic Gregorian, year 0 included).

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year = 0,
    Month = 1,
    Day = 2,
    Hour = 3,
    Minute = 4,
    Second = 5,
    Millis = 6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemporalKind {
    Date,
    DateTime,
    Time,
}

/// A FHIR primitive type that holds a date or a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FhirType {
    Date,
    DateTime,
    Instant,
    Time,
}

#[derive(Clone, Copy, Debug)]
pub struct Temporal {
    pub kind: TemporalKind,
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0–60: 60 is a leap second, which only the FHIR primitive types accept.
    pub second: u8,
    /// The fraction of the second, in nanoseconds (digits past the ninth are dropped).
    pub nanos: u32,
    pub precision: Precision,
    /// Offset from UTC in minutes, when the source named one.
    pub tz: Option<i32>,
    /// How many fraction digits were written (at most 9 kept; for printing back).
    pub frac_digits: u8,
    /// Whether the text had a `T` after its date (`2024-05-01T` is a dateTime with no time).
    pub t_sep: bool,
}

/// Exactly `len` ASCII digits at the start of `s`, as a number.
fn num(s: &[u8], len: usize) -> Option<u32> {
    let digits = s.get(..len)?;
    digits.iter().try_fold(0u32, |v, c| {
        c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
    })
}

pub fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
        _ => 30,
    }
}

/// Days since 1970-01-01 for a civil date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const MS_PER_DAY: i64 = 86_400_000;

/// A full date and time with seconds and an offset (`2026-12-01T00:00:00Z`: what FHIR's instant
/// and RFC 3339 both write), as chrono's type; `None` for anything less or malformed.
pub fn full_date_time(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    Temporal::lex(s, TemporalKind::DateTime).ok()?.to_chrono()
}

/// A calendar date `YYYY-MM-DD`, as chrono's type; `None` for anything else.
pub fn full_date(s: &str) -> Option<chrono::NaiveDate> {
    Temporal::lex(s, TemporalKind::Date).ok()?.to_naive_date()
}

impl Temporal {
    pub(crate) fn empty(kind: TemporalKind) -> Self {
        Temporal {
            kind,
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            nanos: 0,
            precision: Precision::Year,
            tz: None,
            frac_digits: 0,
            t_sep: false,
        }
    }

    /// The fraction of the second in whole milliseconds.
    pub fn millis(&self) -> u32 {
        self.nanos / 1_000_000
    }

    /// Read `s` as a date (`TemporalKind::Date`: no `T`), a date with an optional time
    /// (`DateTime`) or a time (`Time`: no offset), by the lexer's grammar (see the module
    /// documentation). The error says what is wrong, for people.
    pub fn lex(s: &str, kind: TemporalKind) -> Result<Temporal, String> {
        let b = s.as_bytes();
        let mut t = Self::empty(kind);
        if kind == TemporalKind::Time {
            let rest = Self::lex_time(&mut t, b)?;
            return match rest {
                [] => Ok(t),
                _ => Err("a time has no time zone or other text after hh:mm:ss".into()),
            };
        }
        let rest = Self::lex_date(&mut t, b)?;
        let rest = match rest {
            [] => return Ok(t),
            [b'T', rest @ ..] if kind == TemporalKind::DateTime => rest,
            _ if kind == TemporalKind::Date => {
                return Err("expected YYYY, YYYY-MM or YYYY-MM-DD".into())
            }
            _ => return Err("expected a T between the date and the time".into()),
        };
        t.t_sep = true;
        if rest.is_empty() {
            return Ok(t);
        }
        if t.precision != Precision::Day {
            return Err("a time needs a full date (YYYY-MM-DD) before the T".into());
        }
        let rest = Self::lex_time(&mut t, rest)?;
        t.tz = Self::lex_zone(rest)?;
        Ok(t)
    }

    /// `YYYY[-MM[-DD]]` at the start of `b`; the rest.
    fn lex_date<'b>(t: &mut Self, b: &'b [u8]) -> Result<&'b [u8], String> {
        let shown = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(12)]).into_owned();
        t.year = num(b, 4)
            .ok_or_else(|| format!("expected a four-digit year, found {:?}", shown(b)))?
            as i32;
        let mut rest = &b[4..];
        if let [b'-', after @ ..] = rest {
            let m = num(after, 2)
                .ok_or_else(|| format!("expected a two-digit month, found {:?}", shown(after)))?;
            if !(1..=12).contains(&m) {
                return Err(format!("month {m} does not exist"));
            }
            t.month = m as u8;
            t.precision = Precision::Month;
            rest = &after[2..];
            if let [b'-', after @ ..] = rest {
                let d = num(after, 2)
                    .ok_or_else(|| format!("expected a two-digit day, found {:?}", shown(after)))?;
                if d == 0 || d > u32::from(days_in_month(t.year, t.month)) {
                    return Err(format!(
                        "day {d} does not exist in {:04}-{:02}",
                        t.year, t.month
                    ));
                }
                t.day = d as u8;
                t.precision = Precision::Day;
                rest = &after[2..];
            }
        }
        Ok(rest)
    }

    /// `hh[:mm[:ss[.f+]]]` at the start of `b` into `t`; the rest.
    fn lex_time<'b>(t: &mut Self, b: &'b [u8]) -> Result<&'b [u8], String> {
        const RANGE: &str = "expected hh:mm:ss with hours 00–23, minutes and seconds 00–59";
        let h = num(b, 2).ok_or(RANGE)?;
        if h > 23 {
            return Err(RANGE.into());
        }
        t.hour = h as u8;
        t.precision = Precision::Hour;
        let mut rest = &b[2..];
        if let [b':', after @ ..] = rest {
            let m = num(after, 2).filter(|m| *m <= 59).ok_or(RANGE)?;
            t.minute = m as u8;
            t.precision = Precision::Minute;
            rest = &after[2..];
            if let [b':', after @ ..] = rest {
                let s = num(after, 2).filter(|s| *s <= 60).ok_or(RANGE)?;
                t.second = s as u8;
                t.precision = Precision::Second;
                rest = &after[2..];
                if let [b'.', after @ ..] = rest {
                    let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
                    if n == 0 {
                        return Err("fractional seconds must be digits".into());
                    }
                    let kept = &after[..n.min(9)];
                    let mut nanos = kept.iter().fold(0u32, |v, c| v * 10 + u32::from(c - b'0'));
                    for _ in kept.len()..9 {
                        nanos *= 10;
                    }
                    t.nanos = nanos;
                    t.frac_digits = kept.len() as u8;
                    t.precision = Precision::Millis;
                    rest = &after[n..];
                }
            }
        }
        Ok(rest)
    }

    /// Nothing (no offset), `Z`, or `±hh:mm` up to 14:00.
    fn lex_zone(b: &[u8]) -> Result<Option<i32>, String> {
        match b {
            [] => Ok(None),
            b"Z" => Ok(Some(0)),
            [sign @ (b'+' | b'-'), zone @ ..] => {
                let shown = String::from_utf8_lossy(b);
                let (h, m) = match zone {
                    [_, _, b':', _, _] => (num(zone, 2), num(&zone[3..], 2)),
                    _ => (None, None),
                };
                let (Some(h), Some(m)) = (h, m) else {
                    return Err(format!("time zone {shown:?} must be ±hh:mm"));
                };
                if h > 14 || m > 59 {
                    return Err(format!("time zone {shown} is out of range"));
                }
                let off = (h * 60 + m) as i32;
                Ok(Some(if *sign == b'-' { -off } else { off }))
            }
            _ => Err("a time must carry a time zone (Z or ±hh:mm)".into()),
        }
    }

    /// `s` as a value of FHIR primitive type `ty`, by R4's regular expressions for it: a real
    /// calendar date from year 0001; a dateTime's time with seconds and an offset; an instant
    /// with both; a time of `hh:mm:ss` with no offset.
    pub fn parse_fhir(s: &str, ty: FhirType) -> Result<Temporal, String> {
        let kind = match ty {
            FhirType::Date => TemporalKind::Date,
            FhirType::DateTime | FhirType::Instant => TemporalKind::DateTime,
            FhirType::Time => TemporalKind::Time,
        };
        let t = Self::lex(s, kind)?;
        if ty == FhirType::Time {
            return match t.precision >= Precision::Second {
                true => Ok(t),
                false => Err("expected hh:mm:ss".into()),
            };
        }
        if t.year == 0 {
            return Err("year 0000 does not exist".into());
        }
        if ty == FhirType::Instant && !t.t_sep {
            return Err("an instant needs a full date, time and time zone".into());
        }
        if t.t_sep {
            if t.precision < Precision::Second {
                return Err(match t.precision {
                    Precision::Day => "a time must carry a time zone (Z or ±hh:mm)".into(),
                    Precision::Year | Precision::Month => {
                        "a time needs a full date (YYYY-MM-DD) before the T".into()
                    }
                    _ => "expected hh:mm:ss with hours 00–23, minutes and seconds 00–59".into(),
                });
            }
            if t.tz.is_none() {
                return Err("a time must carry a time zone (Z or ±hh:mm)".into());
            }
        }
        Ok(t)
    }

    /// `s` as a search value (or any range given in a query): a date to the year, month or day,
    /// or a dateTime with at least hours and minutes, with or without an offset (UTC if none);
    /// no leap second.
    pub fn parse_search(s: &str) -> Option<Temporal> {
        let t = Self::lex(s, TemporalKind::DateTime).ok()?;
        let time_ok = !t.t_sep || t.precision >= Precision::Minute;
        (time_ok && t.second < 60).then_some(t)
    }

    /// The inclusive epoch-millisecond range the value covers: a year, month or day from
    /// midnight UTC; a minute, a second, or as much of a second as its fraction's digits give
    /// (more than three count as three); a time without an offset is taken as UTC.
    pub fn range_ms(&self) -> (i64, i64) {
        let day_ms = |y: i32, m: u8, d: u8| {
            days_from_civil(i64::from(y), i64::from(m), i64::from(d)) * MS_PER_DAY
        };
        let start = day_ms(self.year, self.month, self.day);
        let end = match self.precision {
            Precision::Year => day_ms(self.year + 1, 1, 1),
            Precision::Month if self.month == 12 => day_ms(self.year + 1, 1, 1),
            Precision::Month => day_ms(self.year, self.month + 1, 1),
            Precision::Day => start + MS_PER_DAY,
            _ => {
                let clock = (i64::from(self.hour) * 60 + i64::from(self.minute)) * 60_000
                    + i64::from(self.second) * 1000;
                let lo = start + clock + i64::from(self.millis())
                    - i64::from(self.tz.unwrap_or(0)) * 60_000;
                let span = match self.precision {
                    Precision::Hour => 3_600_000,
                    Precision::Minute => 60_000,
                    Precision::Second => 1000,
                    _ => 10i64.pow(3 - u32::from(self.frac_digits.min(3))),
                };
                return (lo, lo + span - 1);
            }
        };
        (start, end - 1)
    }

    /// A full date and time with an offset as chrono's type (a leap second as chrono writes
    /// one: second 59 and more than a second of nanoseconds); `None` if anything is missing.
    pub fn to_chrono(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        if self.kind != TemporalKind::DateTime || self.precision < Precision::Second {
            return None;
        }
        let offset = chrono::FixedOffset::east_opt(self.tz? * 60)?;
        let date = self.to_naive_date()?;
        let (second, nanos) = match self.second {
            60 => (59, self.nanos + 1_000_000_000),
            s => (u32::from(s), self.nanos),
        };
        let time = chrono::NaiveTime::from_hms_nano_opt(
            u32::from(self.hour),
            u32::from(self.minute),
            second,
            nanos,
        )?;
        date.and_time(time).and_local_timezone(offset).single()
    }

    /// The date of a value given to the day, as chrono's type.
    pub fn to_naive_date(&self) -> Option<chrono::NaiveDate> {
        if self.kind == TemporalKind::Time || self.precision < Precision::Day {
            return None;
        }
        chrono::NaiveDate::from_ymd_opt(self.year, u32::from(self.month), u32::from(self.day))
    }
}

#[cfg(test)]
mod tests;
