//! FHIRPath's view of the FHIR date and time type ([`crate::fhir::datetime::Temporal`]): its
//! literal grammar (partial times, no offset needed, no leap second), precision-aware comparison
//! and calendar arithmetic.

use std::cmp::Ordering;
use std::fmt;

use super::decimal::Decimal;
pub(crate) use crate::fhir::datetime::{civil_from_days, days_from_civil};
pub use crate::fhir::datetime::{days_in_month, Precision, Temporal, TemporalKind};

impl Temporal {
    /// `YYYY[-MM[-DD]]`
    pub fn parse_date(s: &str) -> Option<Self> {
        Self::parse_fhirpath(s, TemporalKind::Date)
    }

    /// FHIR dateTime / instant text, or a FHIRPath date-time literal body:
    /// `YYYY[-MM[-DD]][T[hh[:mm[:ss[.f+]]]][Z|(+|-)hh:mm]]`.
    pub fn parse_datetime(s: &str) -> Option<Self> {
        Self::parse_fhirpath(s, TemporalKind::DateTime)
    }

    /// `hh[:mm[:ss[.f+]]]` (no timezone).
    pub fn parse_time(s: &str) -> Option<Self> {
        Self::parse_fhirpath(s, TemporalKind::Time)
    }

    /// The lexer's reading, less what FHIRPath's grammar lacks: a leap second.
    pub fn parse_fhirpath(s: &str, kind: TemporalKind) -> Option<Self> {
        Self::lex(s, kind).ok().filter(|t| t.second < 60)
    }

    pub fn as_datetime(&self) -> Temporal {
        let mut t = *self;
        if t.kind == TemporalKind::Date {
            t.kind = TemporalKind::DateTime;
        }
        t
    }

    /// Milliseconds since the epoch of the fields (ignoring precision), shifted to UTC.
    fn epoch_ms(&self) -> i64 {
        let days = days_from_civil(self.year as i64, self.month as i64, self.day as i64);
        let ms = ((days * 24 + self.hour as i64) * 60 + self.minute as i64) * 60_000
            + self.second as i64 * 1000
            + self.millis() as i64;
        ms - self.tz.unwrap_or(0) as i64 * 60_000
    }

    fn with_epoch_ms(&self, ms: i64, tz: Option<i32>) -> Temporal {
        let local = ms + tz.unwrap_or(0) as i64 * 60_000;
        let days = local.div_euclid(86_400_000);
        let rem = local.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let mut t = *self;
        t.year = y as i32;
        t.month = m as u8;
        t.day = d as u8;
        t.hour = (rem / 3_600_000) as u8;
        t.minute = ((rem / 60_000) % 60) as u8;
        t.second = ((rem / 1000) % 60) as u8;
        t.nanos = (rem % 1000) as u32 * 1_000_000;
        t.tz = tz;
        t
    }

    /// Fields normalised to UTC when a timezone is known and time fields matter.
    fn normalised(&self) -> Temporal {
        if self.kind != TemporalKind::Time && self.precision >= Precision::Hour && self.tz.is_some()
        {
            self.with_epoch_ms(self.epoch_ms(), Some(0))
        } else {
            *self
        }
    }

    fn field(&self, p: Precision) -> i64 {
        match p {
            Precision::Year => self.year as i64,
            Precision::Month => self.month as i64,
            Precision::Day => self.day as i64,
            Precision::Hour => self.hour as i64,
            Precision::Minute => self.minute as i64,
            // seconds and milliseconds count as one precision
            Precision::Second | Precision::Millis => {
                self.second as i64 * 1000 + self.millis() as i64
            }
        }
    }

    /// FHIRPath comparison: `None` when the answer depends on missing precision.
    pub fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let a = self.normalised();
        let b = other.normalised();
        let start = if a.kind == TemporalKind::Time {
            Precision::Hour
        } else {
            Precision::Year
        };
        let pa = if a.precision == Precision::Millis {
            Precision::Second
        } else {
            a.precision
        };
        let pb = if b.precision == Precision::Millis {
            Precision::Second
        } else {
            b.precision
        };
        let common = pa.min(pb);
        // with time fields in play, a known offset against an unknown one is undecidable
        if common >= Precision::Hour
            && a.kind != TemporalKind::Time
            && a.tz.is_some() != b.tz.is_some()
        {
            return None;
        }
        for p in [
            Precision::Year,
            Precision::Month,
            Precision::Day,
            Precision::Hour,
            Precision::Minute,
            Precision::Second,
        ] {
            if p < start {
                continue;
            }
            if p > common {
                break;
            }
            match a.field(p).cmp(&b.field(p)) {
                Ordering::Equal => {}
                o => return Some(o),
            }
        }
        if pa == pb {
            Some(Ordering::Equal)
        } else {
            None
        }
    }

    /// Adds `amount` of a calendar/UCUM time unit. `None` for units that are not time units.
    pub fn add(&self, amount: &Decimal, unit: &str) -> Option<Temporal> {
        let unit_p = match unit {
            "year" | "years" | "a" => Precision::Year,
            "month" | "months" | "mo" => Precision::Month,
            "week" | "weeks" | "wk" | "day" | "days" | "d" => Precision::Day,
            "hour" | "hours" | "h" => Precision::Hour,
            "minute" | "minutes" | "min" => Precision::Minute,
            "second" | "seconds" | "s" => Precision::Second,
            "millisecond" | "milliseconds" | "ms" => Precision::Millis,
            _ => return None,
        };
        if self.kind == TemporalKind::Time && unit_p < Precision::Hour {
            return None;
        }
        if self.kind == TemporalKind::Date && unit_p > Precision::Day {
            // sub-day amounts move a date only by whole days
            let hours = match unit_p {
                Precision::Hour => amount.to_f64(),
                Precision::Minute => amount.to_f64() / 60.0,
                Precision::Second => amount.to_f64() / 3600.0,
                _ => amount.to_f64() / 3_600_000.0,
            };
            let days = (hours / 24.0).trunc();
            return self.add(&Decimal::from_f64(days)?, "day");
        }
        let n = amount.truncate().trunc_i64()?;
        let mut t = *self;
        match unit_p {
            Precision::Year | Precision::Month => {
                let months = if unit_p == Precision::Year {
                    n.checked_mul(12)?
                } else {
                    n
                };
                if t.precision == Precision::Year && unit_p == Precision::Month {
                    // year precision: whole years only
                    t.year = i32::try_from(t.year as i64 + months / 12).ok()?;
                } else {
                    let total = t.year as i64 * 12 + (t.month as i64 - 1) + months;
                    t.year = i32::try_from(total.div_euclid(12)).ok()?;
                    t.month = (total.rem_euclid(12) + 1) as u8;
                    let dim = days_in_month(t.year, t.month);
                    if t.day > dim {
                        t.day = dim;
                    }
                }
            }
            _ => {
                let ms_per: i64 = match unit {
                    "week" | "weeks" | "wk" => 7 * 86_400_000,
                    "day" | "days" | "d" => 86_400_000,
                    "hour" | "hours" | "h" => 3_600_000,
                    "minute" | "minutes" | "min" => 60_000,
                    "second" | "seconds" | "s" => 1000,
                    _ => 1,
                };
                let delta = if ms_per >= 1000 && !amount.is_integer() && unit_p >= Precision::Second
                {
                    (amount.to_f64() * ms_per as f64) as i64
                } else {
                    n.checked_mul(ms_per)?
                };
                // coarser-than-unit values move in whole units of their own precision
                let delta = match t.precision {
                    Precision::Year => (delta / (365 * 86_400_000)) * 365 * 86_400_000,
                    Precision::Month => delta - delta % 86_400_000,
                    Precision::Day if t.kind != TemporalKind::Time => delta - delta % 86_400_000,
                    _ => delta,
                };
                if t.precision <= Precision::Month {
                    // shift via days, keeping the unknown fields unknown
                    let days = delta / 86_400_000;
                    let base = days_from_civil(t.year as i64, t.month as i64, 1);
                    let (y, m, _) = civil_from_days(base + days);
                    t.year = y as i32;
                    t.month = m as u8;
                } else if t.kind == TemporalKind::Time {
                    let cur = t.field(Precision::Second)
                        + (t.hour as i64 * 3600 + t.minute as i64 * 60) * 1000;
                    let v = (cur + delta).rem_euclid(86_400_000);
                    t.hour = (v / 3_600_000) as u8;
                    t.minute = ((v / 60_000) % 60) as u8;
                    t.second = ((v / 1000) % 60) as u8;
                    t.nanos = (v % 1000) as u32 * 1_000_000;
                } else {
                    let tz = t.tz;
                    let ms = t.epoch_ms().checked_add(delta)?;
                    t = t.with_epoch_ms(ms, tz);
                }
            }
        }
        if !(1..=9999).contains(&t.year) {
            return None;
        }
        Some(t)
    }

    /// Current instant (UTC) as a DateTime with millisecond precision.
    pub fn now() -> Temporal {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut t = Self::empty(TemporalKind::DateTime);
        t.precision = Precision::Millis;
        t.frac_digits = 3;
        t.with_epoch_ms(ms, Some(0))
    }

    pub fn today() -> Temporal {
        let mut t = Self::now();
        t.kind = TemporalKind::Date;
        t.precision = Precision::Day;
        t.tz = None;
        t.hour = 0;
        t.minute = 0;
        t.second = 0;
        t.nanos = 0;
        t
    }

    pub fn time_of_day() -> Temporal {
        let mut t = Self::now();
        t.kind = TemporalKind::Time;
        t.tz = None;
        t
    }

    /// Truncate to a coarser precision.
    pub fn with_precision(&self, p: Precision) -> Temporal {
        let mut t = *self;
        if p < t.precision {
            t.precision = p;
            if p < Precision::Hour {
                t.tz = None;
            }
        }
        t
    }

    fn write_time(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision >= Precision::Millis {
            write!(f, ".{:03}", self.millis())?;
        }
        Ok(())
    }
}

impl fmt::Display for Temporal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == TemporalKind::Time {
            return self.write_time(f);
        }
        write!(f, "{:04}", self.year)?;
        if self.precision >= Precision::Month {
            write!(f, "-{:02}", self.month)?;
        }
        if self.precision >= Precision::Day {
            write!(f, "-{:02}", self.day)?;
        }
        if self.kind == TemporalKind::DateTime && self.precision >= Precision::Hour {
            f.write_str("T")?;
            self.write_time(f)?;
            match self.tz {
                Some(0) => f.write_str("Z")?,
                Some(off) => {
                    let sign = if off < 0 { '-' } else { '+' };
                    write!(f, "{}{:02}:{:02}", sign, off.abs() / 60, off.abs() % 60)?
                }
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare() {
        let a = Temporal::parse_datetime("2017-11-05T01:30:00.0-04:00").expect("dt");
        let b = Temporal::parse_datetime("2017-11-05T00:30:00.0-05:00").expect("dt");
        assert_eq!(a.compare(&b), Some(Ordering::Equal));
        let d = Temporal::parse_date("2012-04-15").expect("d").as_datetime();
        let e = Temporal::parse_datetime("2012-04-15T10:00:00").expect("dt");
        assert_eq!(d.compare(&e), None);
        assert!(Temporal::parse_date("2012-13").is_none());
        assert!(Temporal::parse_time("25:00").is_none());
        let t = Temporal::parse_date("2014-01-31").expect("d");
        let t2 = t.add(&Decimal::from_i64(1), "month").expect("add");
        assert_eq!(t2.to_string(), "2014-02-28");
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    }
}
