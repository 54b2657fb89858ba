//! Quantities and a deliberately small UCUM subset: enough to compare and convert
//! common clinical units (mass, length, volume, time, pressure, amount, percent) and
//! FHIRPath calendar durations. Units outside the subset compare only when identical.

use std::cmp::Ordering;
use std::fmt;

use super::decimal::Decimal;

#[derive(Clone, Debug)]
pub struct Quantity {
    pub value: Decimal,
    /// A UCUM code (`mg`, `'wk'`) or a FHIRPath calendar keyword (`week`, `days`).
    pub unit: String,
}

/// Base dimensions: m, g, s, mol, K, plus "other" buckets for arbitrary units.
const DIMS: usize = 5;

#[derive(Clone, Debug, PartialEq)]
struct Canon {
    factor: f64,
    dims: [i32; DIMS],
    /// Units we treat as incomparable unless identical (e.g. `[IU]`, `Cel`).
    opaque: Option<String>,
}

fn atom(code: &str) -> Option<(f64, [i32; DIMS])> {
    const M: [i32; DIMS] = [1, 0, 0, 0, 0];
    const G: [i32; DIMS] = [0, 1, 0, 0, 0];
    const S: [i32; DIMS] = [0, 0, 1, 0, 0];
    const MOL: [i32; DIMS] = [0, 0, 0, 1, 0];
    const K: [i32; DIMS] = [0, 0, 0, 0, 1];
    const ONE: [i32; DIMS] = [0, 0, 0, 0, 0];
    const VOL: [i32; DIMS] = [3, 0, 0, 0, 0];
    const PRESS: [i32; DIMS] = [-1, 1, -2, 0, 0];
    const FORCE: [i32; DIMS] = [1, 1, -2, 0, 0];
    const ENERGY: [i32; DIMS] = [2, 1, -2, 0, 0];
    Some(match code {
        "m" => (1.0, M),
        "g" => (1.0, G),
        "s" => (1.0, S),
        "mol" => (1.0, MOL),
        "K" => (1.0, K),
        "1" => (1.0, ONE),
        "%" => (0.01, ONE),
        "min" => (60.0, S),
        "h" => (3600.0, S),
        "d" => (86400.0, S),
        "wk" => (604800.0, S),
        "mo" => (2629800.0, S),
        "a" => (31557600.0, S),
        "L" | "l" => (0.001, VOL),
        "[lb_av]" => (453.59237, G),
        "[oz_av]" => (28.349523125, G),
        "[in_i]" => (0.0254, M),
        "[ft_i]" => (0.3048, M),
        "[mi_i]" => (1609.344, M),
        "Pa" => (1000.0, PRESS),
        "bar" => (1.0e8, PRESS),
        "m[Hg]" => (133_322_387.415, PRESS),
        "N" => (1000.0, FORCE),
        "J" => (1000.0, ENERGY),
        "cal" => (4184.0, ENERGY),
        "[Cal]" => (4_184_000.0, ENERGY),
        "Hz" => (1.0, [0, 0, -1, 0, 0]),
        _ => return None,
    })
}

fn prefix(c: &str) -> Option<f64> {
    Some(match c {
        "Y" => 1e24,
        "Z" => 1e21,
        "E" => 1e18,
        "P" => 1e15,
        "T" => 1e12,
        "G" => 1e9,
        "M" => 1e6,
        "k" => 1e3,
        "h" => 1e2,
        "da" => 1e1,
        "d" => 1e-1,
        "c" => 1e-2,
        "m" => 1e-3,
        "u" => 1e-6,
        "n" => 1e-9,
        "p" => 1e-12,
        "f" => 1e-15,
        "a" => 1e-18,
        _ => return None,
    })
}

/// Canonical value of a calendar keyword when it has a fixed UCUM meaning.
pub fn calendar_to_ucum(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "year" | "years" => "a",
        "month" | "months" => "mo",
        "week" | "weeks" => "wk",
        "day" | "days" => "d",
        "hour" | "hours" => "h",
        "minute" | "minutes" => "min",
        "second" | "seconds" => "s",
        "millisecond" | "milliseconds" => "ms",
        _ => return None,
    })
}

pub fn is_calendar_keyword(unit: &str) -> bool {
    calendar_to_ucum(unit).is_some()
}

fn simple_unit(u: &str) -> Option<(f64, [i32; DIMS])> {
    if let Some(a) = atom(u) {
        return Some(a);
    }
    for plen in [1usize, 2] {
        if u.len() > plen && u.is_char_boundary(plen) {
            let (p, rest) = u.split_at(plen);
            if let (Some(f), Some((af, d))) = (prefix(p), atom(rest)) {
                return Some((f * af, d));
            }
        }
    }
    None
}

fn component(c: &str) -> Option<(f64, [i32; DIMS])> {
    // strip annotations like {cells}
    let mut s = c;
    if let Some(i) = s.find('{') {
        if !s.ends_with('}') {
            return None;
        }
        s = &s[..i];
        if s.is_empty() {
            return Some((1.0, [0; DIMS]));
        }
    }
    if s.starts_with('(') && s.ends_with(')') && s.len() >= 2 {
        return term(&s[1..s.len() - 1]);
    }
    // trailing exponent
    let bytes = s.as_bytes();
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1].is_ascii_digit() {
        end -= 1;
    }
    if end > 0 && (bytes[end - 1] == b'-' || bytes[end - 1] == b'+') && end < bytes.len() {
        end -= 1;
    }
    let (base, exp) = if end > 0 && end < bytes.len() {
        (&s[..end], s[end..].parse::<i32>().ok()?)
    } else {
        (s, 1)
    };
    if base.is_empty() {
        // a pure number such as "10" (e.g. 10*3)
        return None;
    }
    if base == "10*" || base == "10^" {
        return Some((10f64.powi(exp), [0; DIMS]));
    }
    let (f, d) = simple_unit(base)?;
    let mut dims = [0; DIMS];
    for i in 0..DIMS {
        dims[i] = d[i] * exp;
    }
    Some((f.powi(exp), dims))
}

fn term(s: &str) -> Option<(f64, [i32; DIMS])> {
    if s.is_empty() {
        return None;
    }
    let mut factor = 1.0;
    let mut dims = [0; DIMS];
    let mut depth = 0;
    let mut start = 0;
    let mut sign = 1;
    let bytes = s.as_bytes();
    let mut i = 0;
    let apply = |piece: &str, sign: i32, factor: &mut f64, dims: &mut [i32; DIMS]| {
        let (f, d) = component(piece)?;
        if sign > 0 {
            *factor *= f;
        } else {
            *factor /= f;
        }
        for k in 0..DIMS {
            dims[k] += sign * d[k];
        }
        Some(())
    };
    while i <= bytes.len() {
        let c = if i < bytes.len() { bytes[i] } else { b'.' };
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'.' | b'/' if depth == 0 => {
                let piece = &s[start..i];
                if piece.is_empty() {
                    if i == 0 && c == b'/' {
                        // leading "/s" means 1/s
                        sign = -1;
                        start = i + 1;
                        i += 1;
                        continue;
                    }
                    return None;
                }
                apply(piece, sign, &mut factor, &mut dims)?;
                sign = if c == b'/' { -1 } else { 1 };
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    Some((factor, dims))
}

fn canon(unit: &str) -> Canon {
    let u = calendar_to_ucum(unit).unwrap_or(unit);
    match term(u) {
        Some((factor, dims)) => Canon {
            factor,
            dims,
            opaque: None,
        },
        None => Canon {
            factor: 1.0,
            dims: [0; DIMS],
            opaque: Some(u.to_string()),
        },
    }
}

impl Quantity {
    pub fn new(value: Decimal, unit: impl Into<String>) -> Self {
        Quantity {
            value,
            unit: unit.into(),
        }
    }

    /// Value of `self` expressed in `target`'s unit, when the two are commensurable.
    pub fn convert_to(&self, target: &str) -> Option<Decimal> {
        if self.unit == target {
            return Some(self.value);
        }
        let a = canon(&self.unit);
        let b = canon(target);
        if a.opaque.is_some() || b.opaque.is_some() {
            return None;
        }
        if a.dims != b.dims {
            return None;
        }
        let ratio = a.factor / b.factor;
        // exact when the ratio is a power of ten
        let log = ratio.log10();
        if (log - log.round()).abs() < 1e-9 && log.abs() < 30.0 {
            let p = log.round() as i32;
            let v = self.value;
            return if p >= 0 {
                v.checked_mul(&Decimal::new(10i128.pow(p as u32), 0))
            } else {
                Some(Decimal::new(v.mantissa(), v.scale() + (-p) as u32))
            };
        }
        Decimal::from_f64(self.value.to_f64() * ratio)
    }

    /// Calendar durations of a year or a month are not comparable with UCUM `a`/`mo`.
    fn calendar_conflict(&self, other: &Quantity) -> bool {
        let cal = |u: &str| matches!(u, "year" | "years" | "month" | "months");
        cal(&self.unit) != cal(&other.unit)
            && (cal(&self.unit) || cal(&other.unit))
            && canon(&self.unit).dims == canon(&other.unit).dims
            && {
                let ucum = |u: &str| matches!(u, "a" | "mo");
                ucum(&self.unit) || ucum(&other.unit)
            }
    }

    /// `None` when the units cannot be compared.
    pub fn compare(&self, other: &Quantity) -> Option<Ordering> {
        if self.calendar_conflict(other) || calendar_mismatch(&self.unit, &other.unit) {
            return None;
        }
        let o = other.convert_to(&self.unit)?;
        Some(self.value.cmp(&o))
    }

    pub fn equivalent(&self, other: &Quantity) -> Option<bool> {
        if self.calendar_conflict(other) {
            return Some(false);
        }
        let o = other.convert_to(&self.unit)?;
        let p = self.value.scale().min(o.scale());
        Some(self.value.round(p) == o.round(p))
    }

    pub fn mul(&self, other: &Quantity) -> Option<Quantity> {
        let v = self.value.checked_mul(&other.value)?;
        let unit = match (self.unit.as_str(), other.unit.as_str()) {
            ("1", u) | (u, "1") => u.to_string(),
            (a, b) => format!("{}.{}", ucum_of(a), ucum_of(b)),
        };
        Some(Quantity::new(v, unit))
    }

    pub fn div(&self, other: &Quantity) -> Option<Quantity> {
        let v = self.value.checked_div(&other.value)?;
        let unit = if self.unit == other.unit {
            "1".to_string()
        } else if other.unit == "1" {
            self.unit.clone()
        } else {
            format!("{}/({})", ucum_of(&self.unit), ucum_of(&other.unit))
        };
        Some(Quantity::new(v, unit))
    }
}

/// Calendar years and months have no fixed length in smaller units.
fn calendar_mismatch(a: &str, b: &str) -> bool {
    let class = |u: &str| match u {
        "year" | "years" => Some(1),
        "month" | "months" => Some(2),
        _ => None,
    };
    match (class(a), class(b)) {
        (None, None) => false,
        (x, y) => x != y && (is_calendar_keyword(a) && is_calendar_keyword(b)),
    }
}

fn ucum_of(u: &str) -> &str {
    calendar_to_ucum(u).unwrap_or(u)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_calendar_keyword(&self.unit) {
            write!(f, "{} {}", self.value, self.unit)
        } else {
            write!(f, "{} '{}'", self.value, self.unit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str, u: &str) -> Quantity {
        Quantity::new(Decimal::parse(v).expect("dec"), u)
    }

    #[test]
    fn conversions() {
        assert_eq!(
            q("4.0000", "g").compare(&q("4000.0", "mg")),
            Some(Ordering::Equal)
        );
        assert_eq!(
            q("7", "days").compare(&q("1", "week")),
            Some(Ordering::Equal)
        );
        assert_eq!(q("7", "days").compare(&q("1", "wk")), Some(Ordering::Equal));
        assert_eq!(q("4", "g").equivalent(&q("4040", "mg")), Some(true));
        let m = q("2.0", "cm").mul(&q("2.0", "m")).expect("mul");
        assert_eq!(m.compare(&q("0.040", "m2")), Some(Ordering::Equal));
        assert_eq!(
            q("1", "mg/dL").compare(&q("2", "mg/dL")),
            Some(Ordering::Less)
        );
        assert_eq!(
            q("1", "[lb_av]").compare(&q("1", "kg")),
            Some(Ordering::Less)
        );
        assert_eq!(q("1", "kg").compare(&q("1", "m")), None);
        assert_eq!(q("1", "year").compare(&q("1", "a")), None);
        assert_eq!(
            q("760", "mm[Hg]").compare(&q("101.325", "kPa")),
            Some(Ordering::Greater)
        );
        assert_eq!(
            q("1", "mmol/L").compare(&q("1000", "umol/L")),
            Some(Ordering::Equal)
        );
    }
}
