//! Conversions between FHIRPath's primitive types (`toInteger()`, `convertsToDate()`, …).

use super::*;

pub(super) fn to_dec(p: &Prim<'_>) -> Decimal {
    match p {
        Prim::Int(i) => Decimal::from_i64(*i),
        Prim::Dec(d) => *d,
        _ => Decimal::ZERO,
    }
}

pub(super) fn is_int_text(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())
}

pub(super) fn is_dec_text(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (a, b) = match t.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (t, None),
    };
    !a.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.is_none_or(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
}

pub(crate) fn to_boolean(p: &Prim<'_>) -> Option<bool> {
    match p {
        Prim::Bool(b) => Some(*b),
        Prim::Int(1) => Some(true),
        Prim::Int(0) => Some(false),
        Prim::Dec(d) if *d == Decimal::from_i64(1) => Some(true),
        Prim::Dec(d) if d.is_zero() => Some(false),
        Prim::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn to_integer(p: &Prim<'_>) -> Option<i64> {
    match p {
        Prim::Int(i) => Some(*i),
        Prim::Bool(b) => Some(*b as i64),
        Prim::Str(s) if is_int_text(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn to_decimal(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from_i64(*i)),
        Prim::Dec(d) => Some(*d),
        Prim::Bool(b) => Some(Decimal::new(*b as i128 * 10, 1)),
        Prim::Str(s) if is_dec_text(s) => Decimal::parse(s),
        _ => None,
    }
}

pub(super) fn to_quantity(p: &Prim<'_>) -> Option<Quantity> {
    match p {
        Prim::Int(_) | Prim::Dec(_) => Some(Quantity::new(to_dec(p), "1")),
        Prim::Bool(b) => Some(Quantity::new(Decimal::new(*b as i128 * 10, 1), "1")),
        Prim::Quantity(q) => Some(q.as_ref().clone()),
        Prim::Str(s) => {
            let s = s.trim();
            let (num, rest) = match s.find(' ') {
                Some(i) => (&s[..i], s[i..].trim()),
                None => (s, ""),
            };
            if !is_dec_text(num) {
                return None;
            }
            let v = Decimal::parse(num)?;
            if rest.is_empty() {
                return Some(Quantity::new(v, "1"));
            }
            if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                return Some(Quantity::new(v, u));
            }
            if is_calendar_keyword(rest) {
                return Some(Quantity::new(v, rest));
            }
            None
        }
        _ => None,
    }
}

pub(super) fn to_text(p: &Prim<'_>) -> String {
    match p {
        Prim::Bool(b) => b.to_string(),
        Prim::Int(i) => i.to_string(),
        Prim::Dec(d) => d.to_string(),
        Prim::Str(s) => s.to_string(),
        Prim::Temporal(t) => t.to_string(),
        Prim::Quantity(q) => q.to_string(),
    }
}

pub(super) fn to_date(p: &Prim<'_>) -> Option<Temporal> {
    match p {
        Prim::Str(s) => {
            Temporal::parse_date(s).or_else(|| Temporal::parse_datetime(s).map(|t| date_part(&t)))
        }
        Prim::Temporal(t) if t.kind != TemporalKind::Time => Some(date_part(t)),
        _ => None,
    }
}

pub(super) fn date_part(t: &Temporal) -> Temporal {
    let mut d = t.with_precision(t.precision.min(Precision::Day));
    d.kind = TemporalKind::Date;
    d.tz = None;
    d
}

pub(super) fn to_datetime(p: &Prim<'_>) -> Option<Temporal> {
    match p {
        Prim::Str(s) => Temporal::parse_datetime(s),
        Prim::Temporal(t) if t.kind != TemporalKind::Time => Some(t.as_datetime()),
        _ => None,
    }
}

pub(super) fn to_time(p: &Prim<'_>) -> Option<Temporal> {
    match p {
        Prim::Str(s) => Temporal::parse_time(s.strip_prefix('T').unwrap_or(s)),
        Prim::Temporal(t) if t.kind == TemporalKind::Time => Some(*t),
        _ => None,
    }
}
