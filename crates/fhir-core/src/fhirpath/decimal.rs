//! A small exact decimal: an `i128` mantissa and a power-of-ten scale.
//!
//! FHIR decimals keep their written precision (`1.10` is not `1.1` when printed), and
//! FHIRPath equality/equivalence depend on it, so binary floating point is not used for
//! storage or for `+ - * /`. Transcendental functions (`ln`, `exp`, `sqrt`, `power`) go
//! through `f64`, which is what every implementation does.

use std::cmp::Ordering;
use std::fmt;

/// Digits kept after the point by division (the FHIRPath suite expects 8).
pub const DIV_SCALE: u32 = 8;
const MAX_SCALE: u32 = 28;

#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    mant: i128,
    scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    pub const ZERO: Decimal = Decimal { mant: 0, scale: 0 };

    pub fn from_i64(v: i64) -> Self {
        Decimal {
            mant: v as i128,
            scale: 0,
        }
    }

    pub fn new(mant: i128, scale: u32) -> Self {
        Decimal { mant, scale }
    }

    pub fn scale(&self) -> u32 {
        self.scale
    }

    pub fn mantissa(&self) -> i128 {
        self.mant
    }

    /// Parses `[+-]digits[.digits][e[+-]digits]`. Returns `None` for anything else or
    /// for values that do not fit 38 significant digits.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut neg = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            neg = b[i] == b'-';
            i += 1;
        }
        let mut mant: i128 = 0;
        let mut scale: i64 = 0;
        let mut digits = 0;
        let mut seen_point = false;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_digit() {
                mant = mant.checked_mul(10)?.checked_add((c - b'0') as i128)?;
                digits += 1;
                if seen_point {
                    scale += 1;
                }
            } else if c == b'.' && !seen_point {
                seen_point = true;
                // a point must be followed by a digit
                if i + 1 >= b.len() || !b[i + 1].is_ascii_digit() {
                    return None;
                }
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        if i < b.len() {
            if b[i] != b'e' && b[i] != b'E' {
                return None;
            }
            let exp: i64 = s.get(i + 1..)?.parse().ok()?;
            if !(-60..=60).contains(&exp) {
                return None;
            }
            scale -= exp;
        }
        if scale < 0 {
            mant = mant.checked_mul(pow10((-scale) as u32)?)?;
            scale = 0;
        }
        if scale > 60 {
            return None;
        }
        let mut d = Decimal {
            mant: if neg { -mant } else { mant },
            scale: scale as u32,
        };
        if d.scale > MAX_SCALE + 10 {
            d = d.round(MAX_SCALE + 10);
        }
        Some(d)
    }

    pub fn is_zero(&self) -> bool {
        self.mant == 0
    }

    pub fn is_integer(&self) -> bool {
        match pow10(self.scale) {
            Some(p) => self.mant % p == 0,
            None => self.mant == 0,
        }
    }

    /// Integer part if it fits in i64 (truncating toward zero).
    pub fn trunc_i64(&self) -> Option<i64> {
        let p = pow10(self.scale)?;
        i64::try_from(self.mant / p).ok()
    }

    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    pub fn from_f64(v: f64) -> Option<Self> {
        if !v.is_finite() {
            return None;
        }
        // shortest round-trip text, then exact parse; keeps e.g. 0.1 as 0.1
        let d = Decimal::parse(&format!("{v}"))?;
        Some(if d.scale > 16 { d.round(16).trim() } else { d })
    }

    /// Rescale to `scale` digits (only grows; `None` on overflow).
    fn widen(&self, scale: u32) -> Option<i128> {
        if scale <= self.scale {
            return Some(self.mant);
        }
        self.mant.checked_mul(pow10(scale - self.scale)?)
    }

    /// Round half away from zero to `digits` after the point.
    pub fn round(&self, digits: u32) -> Decimal {
        if self.scale <= digits {
            return *self;
        }
        let drop = self.scale - digits;
        let Some(p) = pow10(drop) else {
            return Decimal::ZERO;
        };
        let q = self.mant / p;
        let r = self.mant % p;
        let half = p / 2;
        let q = if r.abs() >= half && half > 0 {
            q + self.mant.signum()
        } else {
            q
        };
        Decimal {
            mant: q,
            scale: digits,
        }
    }

    /// Remove trailing zeros after the point.
    pub fn trim(&self) -> Decimal {
        let mut d = *self;
        while d.scale > 0 && d.mant % 10 == 0 {
            d.mant /= 10;
            d.scale -= 1;
        }
        d
    }

    pub fn neg(&self) -> Decimal {
        Decimal {
            mant: self.mant.saturating_neg(),
            scale: self.scale,
        }
    }

    pub fn abs(&self) -> Decimal {
        Decimal {
            mant: self.mant.saturating_abs(),
            scale: self.scale,
        }
    }

    pub fn checked_add(&self, o: &Decimal) -> Option<Decimal> {
        let s = self.scale.max(o.scale);
        Some(Decimal {
            mant: self.widen(s)?.checked_add(o.widen(s)?)?,
            scale: s,
        })
    }

    pub fn checked_sub(&self, o: &Decimal) -> Option<Decimal> {
        self.checked_add(&o.neg())
    }

    pub fn checked_mul(&self, o: &Decimal) -> Option<Decimal> {
        let mut d = Decimal {
            mant: self.mant.checked_mul(o.mant)?,
            scale: self.scale + o.scale,
        };
        if d.scale > MAX_SCALE {
            d = d.round(MAX_SCALE);
        }
        Some(d)
    }

    /// Division rounded to [`DIV_SCALE`] digits, trailing zeros removed. `None` on /0.
    pub fn checked_div(&self, o: &Decimal) -> Option<Decimal> {
        self.div_scaled(o, DIV_SCALE).map(|d| d.trim())
    }

    pub fn div_scaled(&self, o: &Decimal, digits: u32) -> Option<Decimal> {
        if o.mant == 0 {
            return None;
        }
        // q = a/b * 10^(digits+1), then round the extra digit
        let shift = digits as i64 + 1 + o.scale as i64 - self.scale as i64;
        let (num, den) = if shift >= 0 {
            (self.mant.checked_mul(pow10(shift as u32)?)?, o.mant)
        } else {
            (self.mant, o.mant.checked_mul(pow10((-shift) as u32)?)?)
        };
        let q = num.checked_div(den)?;
        let r = q % 10;
        let mut q = q / 10;
        if r.abs() >= 5 {
            q += if (num < 0) != (den < 0) { -1 } else { 1 };
        }
        Some(Decimal {
            mant: q,
            scale: digits,
        })
    }

    /// Truncated division (`div`).
    pub fn checked_idiv(&self, o: &Decimal) -> Option<Decimal> {
        if o.mant == 0 {
            return None;
        }
        let s = self.scale.max(o.scale);
        let a = self.widen(s)?;
        let b = o.widen(s)?;
        Some(Decimal {
            mant: a / b,
            scale: 0,
        })
    }

    pub fn checked_rem(&self, o: &Decimal) -> Option<Decimal> {
        if o.mant == 0 {
            return None;
        }
        let s = self.scale.max(o.scale);
        let a = self.widen(s)?;
        let b = o.widen(s)?;
        Some(Decimal {
            mant: a % b,
            scale: s,
        })
    }

    pub fn floor(&self) -> Decimal {
        let Some(p) = pow10(self.scale) else {
            return Decimal::ZERO;
        };
        let q = self.mant.div_euclid(p);
        Decimal { mant: q, scale: 0 }
    }

    pub fn ceil(&self) -> Decimal {
        let Some(p) = pow10(self.scale) else {
            return Decimal::ZERO;
        };
        let q = self.mant.saturating_neg().div_euclid(p).saturating_neg();
        Decimal { mant: q, scale: 0 }
    }

    pub fn truncate(&self) -> Decimal {
        let Some(p) = pow10(self.scale) else {
            return Decimal::ZERO;
        };
        Decimal {
            mant: self.mant / p,
            scale: 0,
        }
    }

    /// Number of significant digits after the point as written.
    pub fn precision(&self) -> u32 {
        self.scale
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let s = self.scale.max(other.scale);
        match (self.widen(s), other.widen(s)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self
                .to_f64()
                .partial_cmp(&other.to_f64())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.mant < 0;
        let digits = self.mant.unsigned_abs().to_string();
        let scale = self.scale as usize;
        if neg {
            f.write_str("-")?;
        }
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() <= scale {
            f.write_str("0.")?;
            for _ in 0..(scale - digits.len()) {
                f.write_str("0")?;
            }
            f.write_str(&digits)
        } else {
            let (a, b) = digits.split_at(digits.len() - scale);
            write!(f, "{a}.{b}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).expect("valid decimal")
    }

    #[test]
    fn parse_print_arith() {
        assert_eq!(d("1.10").to_string(), "1.10");
        assert_eq!(d("-0.001").to_string(), "-0.001");
        assert_eq!(d("1e3").to_string(), "1000");
        assert_eq!(
            d("1.2").checked_add(&d("1.8")).map(|x| x.to_string()),
            Some("3.0".into())
        );
        assert_eq!(
            d("1.2").checked_div(&d("1.8")).map(|x| x.to_string()),
            Some("0.66666667".into())
        );
        assert_eq!(
            d("-2").checked_div(&d("3")).map(|x| x.to_string()),
            Some("-0.66666667".into())
        );
        assert_eq!(
            d("1").checked_div(&d("2")).map(|x| x.to_string()),
            Some("0.5".into())
        );
        assert_eq!(
            d("2.2").checked_rem(&d("1.8")).map(|x| x.to_string()),
            Some("0.4".into())
        );
        assert_eq!(d("-1.5").floor().to_string(), "-2");
        assert_eq!(d("-1.5").ceil().to_string(), "-1");
        assert_eq!(d("3.14159").round(3).to_string(), "3.142");
        assert!(Decimal::parse("1.").is_none());
        assert!(Decimal::parse("abc").is_none());
        assert_eq!(d("0.0"), d("0"));
    }
}
