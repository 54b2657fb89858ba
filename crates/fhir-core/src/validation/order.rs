//! Ordering of FHIR values, for `minValue[x]`/`maxValue[x]` (profiles and the Questionnaire
//! extensions) and `Period` (per-1): numbers, dates, dateTimes and instants of any precision
//! (compared at the precision both have; equal there is undecided), times, and Quantities whose
//! UCUM units convert into each other (the common units only).

use std::cmp::Ordering;

use serde_json::Value;

use crate::fhirpath::temporal::{civil_from_days, days_from_civil};

/// A date, dateTime or instant split into its parts; `seconds` holds the time of day in
/// seconds (with its fraction) shifted to UTC when a time zone is given.
#[derive(Debug, Clone, PartialEq)]
struct DateParts {
    /// year, month, day: as many as given
    ymd: Vec<i64>,
    /// seconds since midnight, and whether a zone was given
    seconds: Option<(f64, bool)>,
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_date(s: &str) -> Option<DateParts> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let ymd: Vec<i64> = date.split('-').map(digits).collect::<Option<Vec<_>>>()?;
    if ymd.is_empty() || ymd.len() > 3 {
        return None;
    }
    let seconds = match time {
        None => None,
        Some(t) => {
            let (clock, offset) = split_zone(t)?;
            let secs = clock_seconds(clock)?;
            Some((secs - offset.unwrap_or(0.0), offset.is_some()))
        }
    };
    let mut parts = DateParts { ymd, seconds };
    // A zone can move the time into the day before or after.
    if let Some((secs, z)) = parts.seconds {
        if parts.ymd.len() == 3 && !(0.0..86_400.0).contains(&secs) {
            let shift = (secs / 86_400.0).floor();
            let days = days_from_civil(parts.ymd[0], parts.ymd[1], parts.ymd[2]) + shift as i64;
            let (y, m, d) = civil_from_days(days);
            parts.ymd = vec![y, m, d];
            parts.seconds = Some((secs - shift * 86_400.0, z));
        }
    }
    Some(parts)
}

fn split_zone(t: &str) -> Option<(&str, Option<f64>)> {
    if let Some(c) = t.strip_suffix('Z') {
        return Some((c, Some(0.0)));
    }
    if let Some(i) = t.rfind(['+', '-']) {
        let (c, z) = t.split_at(i);
        let sign = if z.starts_with('-') { -1.0 } else { 1.0 };
        let (h, m) = z[1..].split_once(':')?;
        let off = (digits(h)? * 3600 + digits(m)? * 60) as f64;
        return Some((c, Some(sign * off)));
    }
    Some((t, None))
}

fn clock_seconds(c: &str) -> Option<f64> {
    let mut it = c.split(':');
    let h = digits(it.next()?)?;
    let m = digits(it.next()?)?;
    let s: f64 = match it.next() {
        Some(s) => s.parse().ok()?,
        None => 0.0,
    };
    Some((h * 3600 + m * 60) as f64 + s)
}

/// Compare two dates, dateTimes or instants. `None` when either does not parse, or when they
/// are equal at the precision both have but one is more precise (the order is then unknown).
pub fn compare_dates(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse_date(a)?, parse_date(b)?);
    let n = a.ymd.len().min(b.ymd.len());
    for i in 0..n {
        match a.ymd[i].cmp(&b.ymd[i]) {
            Ordering::Equal => {}
            o => return Some(o),
        }
    }
    if a.ymd.len() != b.ymd.len() {
        return None;
    }
    match (a.seconds, b.seconds) {
        (None, None) => Some(Ordering::Equal),
        (Some((x, _)), Some((y, _))) => x.partial_cmp(&y),
        _ => None,
    }
}

/// Whether `s` is a date, dateTime or instant this module can read.
pub fn is_date(s: &str) -> bool {
    parse_date(s).is_some()
}

/// Compare two times (`hh:mm:ss[.fff]`).
pub fn compare_times(a: &str, b: &str) -> Option<Ordering> {
    clock_seconds(a)?.partial_cmp(&clock_seconds(b)?)
}

/// The dimension and factor to the base unit of a UCUM unit code (common units only).
fn ucum(code: &str) -> Option<(&'static str, f64)> {
    Some(match code {
        // mass, in grams
        "kg" => ("g", 1000.0),
        "g" => ("g", 1.0),
        "mg" => ("g", 1e-3),
        "ug" => ("g", 1e-6),
        "ng" => ("g", 1e-9),
        "[lb_av]" => ("g", 453.592_37),
        "[oz_av]" => ("g", 28.349_523_125),
        // length, in metres
        "km" => ("m", 1000.0),
        "m" => ("m", 1.0),
        "dm" => ("m", 0.1),
        "cm" => ("m", 0.01),
        "mm" => ("m", 1e-3),
        "um" => ("m", 1e-6),
        "[in_i]" => ("m", 0.0254),
        "[ft_i]" => ("m", 0.3048),
        // volume, in litres
        "L" | "l" => ("L", 1.0),
        "dL" => ("L", 0.1),
        "cL" => ("L", 0.01),
        "mL" => ("L", 1e-3),
        "uL" => ("L", 1e-6),
        // time, in seconds
        "ms" => ("s", 1e-3),
        "s" => ("s", 1.0),
        "min" => ("s", 60.0),
        "h" => ("s", 3600.0),
        "d" => ("s", 86_400.0),
        "wk" => ("s", 604_800.0),
        "mo" => ("s", 2_629_800.0),
        "a" => ("s", 31_557_600.0),
        // pressure, in pascals
        "Pa" => ("Pa", 1.0),
        "kPa" => ("Pa", 1000.0),
        "mm[Hg]" => ("Pa", 133.322),
        // others used as is
        "%" => ("%", 1.0),
        "/min" => ("/min", 1.0),
        "{beats}/min" => ("/min", 1.0),
        "kg/m2" => ("kg/m2", 1.0),
        _ => return None,
    })
}

/// A Quantity's value in its dimension's base unit (and the dimension), for comparison.
/// Without a UCUM code the unit as written is the dimension and the value is used as is.
fn quantity(q: &Value) -> Option<(f64, String)> {
    let value = number(q.get("value")?)?;
    let system = q.get("system").and_then(Value::as_str);
    let code = q
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| q.get("unit").and_then(Value::as_str));
    match (system, code) {
        (Some("http://unitsofmeasure.org"), Some(c)) | (None, Some(c)) => match ucum(c) {
            Some((dim, factor)) => Some((value * factor, dim.to_string())),
            None => Some((value, c.to_string())),
        },
        (Some(s), Some(c)) => Some((value, format!("{s}|{c}"))),
        (_, None) => Some((value, String::new())),
    }
}

/// Whether two units convert into each other (or are the same).
pub fn quantities_comparable(a: &Value, b: &Value) -> bool {
    matches!((quantity(a), quantity(b)), (Some((_, x)), Some((_, y))) if x == y)
}

/// Compare two Quantities: `None` when a value is missing or the units do not convert.
pub fn compare_quantities(a: &Value, b: &Value) -> Option<Ordering> {
    let (x, ux) = quantity(a)?;
    let (y, uy) = quantity(b)?;
    if ux != uy {
        return None;
    }
    // Conversion factors are not exact in binary: equal within rounding is equal.
    let scale = x.abs().max(y.abs()).max(1e-300);
    if ((x - y) / scale).abs() < 1e-9 {
        return Some(Ordering::Equal);
    }
    x.partial_cmp(&y)
}

pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// Compare two values of the FHIR type `kind` (`integer`, `decimal`, `date`, `dateTime`,
/// `instant`, `time`, `Quantity`, `Duration`, `Age`, …). `None`: not comparable.
pub fn compare(kind: &str, a: &Value, b: &Value) -> Option<Ordering> {
    match kind {
        "integer" | "decimal" | "positiveInt" | "unsignedInt" | "integer64" => {
            number(a)?.partial_cmp(&number(b)?)
        }
        "date" | "dateTime" | "instant" => compare_dates(a.as_str()?, b.as_str()?),
        "time" => compare_times(a.as_str()?, b.as_str()?),
        "Quantity" | "Duration" | "Age" | "Distance" | "Count" | "SimpleQuantity"
        | "MoneyQuantity" => compare_quantities(a, b),
        _ => None,
    }
}

/// How a value of `kind` is shown in messages.
pub fn show(kind: &str, v: &Value) -> String {
    match (kind, v) {
        (_, Value::String(s)) => s.clone(),
        (_, Value::Number(n)) => n.to_string(),
        (_, Value::Object(o)) => {
            let value = o.get("value").map(|v| v.to_string()).unwrap_or_default();
            let unit = o
                .get("unit")
                .or_else(|| o.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("{value} {unit}").trim().to_string()
        }
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_at_common_precision() {
        assert_eq!(compare_dates("2019", "2020"), Some(Ordering::Less));
        assert_eq!(compare_dates("2021-05", "2020"), Some(Ordering::Greater));
        assert_eq!(compare_dates("2020-05", "2020"), None);
        assert_eq!(
            compare_dates("2020-01-02", "2020-01-01T10:00:00Z"),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_dates("2020-01-01T10:00:00+02:00", "2020-01-01T09:00:00Z"),
            Some(Ordering::Less)
        );
        // a zone moves the instant to the previous day
        assert_eq!(
            compare_dates("2020-01-02T00:30:00+01:00", "2020-01-01T23:45:00Z"),
            Some(Ordering::Less)
        );
        assert_eq!(compare_dates("x", "2020"), None);
    }

    #[test]
    fn quantities_convert() {
        let a = json!({"value": 1500, "system": "http://unitsofmeasure.org", "code": "g"});
        let b = json!({"value": 1, "system": "http://unitsofmeasure.org", "code": "kg"});
        assert_eq!(compare_quantities(&a, &b), Some(Ordering::Greater));
        let c = json!({"value": 2, "system": "http://unitsofmeasure.org", "code": "h"});
        let d = json!({"value": 120, "system": "http://unitsofmeasure.org", "code": "min"});
        assert_eq!(compare_quantities(&c, &d), Some(Ordering::Equal));
        let e = json!({"value": 2, "system": "http://unitsofmeasure.org", "code": "cm"});
        assert_eq!(compare_quantities(&c, &e), None);
    }
}
