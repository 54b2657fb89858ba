//! Code systems that are not shipped as CodeSystem resources: names for messages and the
//! syntactic rules used where a code system is a grammar rather than a list.

use super::set::Tri;

pub(super) const UCUM: &str = "http://unitsofmeasure.org";
pub(super) const BCP47: &str = "urn:ietf:bcp:47";
pub(super) const BCP13: &str = "urn:ietf:bcp:13";

/// A human name for well-known code systems we never hold completely.
pub(super) fn well_known_name(system: &str) -> Option<&'static str> {
    Some(match system {
        s if s == "http://snomed.info/sct" || s.starts_with("http://snomed.info/sct/") => {
            "SNOMED CT"
        }
        "http://loinc.org" => "LOINC",
        s if s.starts_with("http://hl7.org/fhir/sid/icd-10") => "ICD-10",
        "http://hl7.org/fhir/sid/icd-9-cm" => "ICD-9-CM",
        UCUM => "UCUM",
        BCP47 => "BCP-47 language tags",
        BCP13 => "MIME types (BCP-13)",
        "urn:iso:std:iso:3166" | "urn:iso:std:iso:3166:-2" => "ISO 3166 country codes",
        "urn:iso:std:iso:4217" => "ISO 4217 currency codes",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://dicom.nema.org/resources/ontology/DCM" => "DICOM",
        "http://hl7.org/fhir/sid/ndc" => "NDC",
        "http://hl7.org/fhir/sid/cvx" => "CVX",
        "http://www.whocc.no/atc" => "ATC",
        "urn:oid:1.2.208.176.2.4" => "SKS (Danish health classification)",
        _ => return None,
    })
}

/// How a system is named in messages: `SNOMED CT (http://snomed.info/sct)` or the URL.
pub(super) fn describe(system: &str) -> String {
    match well_known_name(system) {
        Some(name) => format!("{name} ({system})"),
        None => system.to_owned(),
    }
}

/// A code system decided by grammar rather than by a list of codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Syntax {
    /// UCUM unit expressions: full grammar, atoms from a built-in subset; unknown atoms are
    /// `Maybe`.
    Ucum,
    /// BCP-47 language tags: well-formedness only (the subtag registry is not held).
    Bcp47,
    /// MIME types: `type/subtype[;parameters]` with a registered top-level type.
    MimeType,
}

impl Syntax {
    pub(super) fn for_system(system: &str) -> Option<Syntax> {
        match system {
            UCUM => Some(Syntax::Ucum),
            BCP47 => Some(Syntax::Bcp47),
            BCP13 => Some(Syntax::MimeType),
            _ => None,
        }
    }

    pub(super) fn check(self, code: &str) -> Tri {
        match self {
            Syntax::Ucum => ucum::check(code),
            Syntax::Bcp47 => yes_no(bcp47_well_formed(code)),
            Syntax::MimeType => yes_no(mime_well_formed(code)),
        }
    }

    pub(super) fn maybe_reason(self) -> Option<&'static str> {
        match self {
            Syntax::Ucum => {
                Some("UCUM units outside the built-in set of unit atoms cannot be checked")
            }
            Syntax::Bcp47 | Syntax::MimeType => None,
        }
    }
}

fn yes_no(b: bool) -> Tri {
    if b {
        Tri::Yes
    } else {
        Tri::No
    }
}

/// Well-formedness of a BCP-47 language tag (RFC 5646 `langtag`, private use, and the
/// irregular grandfathered tags treated as opaque).
fn bcp47_well_formed(tag: &str) -> bool {
    if tag.is_empty() || tag.len() > 100 {
        return false;
    }
    let parts: Vec<&str> = tag.split('-').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return false;
    }
    let alpha = |s: &str| s.bytes().all(|b| b.is_ascii_alphabetic());
    let digit = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mut i = 0;
    let first = parts[0];
    if first.eq_ignore_ascii_case("x") || first.eq_ignore_ascii_case("i") {
        return parts.len() > 1 && parts[1..].iter().all(|p| p.len() <= 8);
    }
    if !(alpha(first) && (2..=8).contains(&first.len())) {
        return false;
    }
    i += 1;
    // extlang: up to three 3-letter subtags after a 2-3 letter language.
    if first.len() <= 3 {
        let mut n = 0;
        while n < 3 && i < parts.len() && parts[i].len() == 3 && alpha(parts[i]) {
            i += 1;
            n += 1;
        }
    }
    if i < parts.len() && parts[i].len() == 4 && alpha(parts[i]) {
        i += 1; // script
    }
    if i < parts.len()
        && ((parts[i].len() == 2 && alpha(parts[i])) || (parts[i].len() == 3 && digit(parts[i])))
    {
        i += 1; // region
    }
    while i < parts.len() {
        let p = parts[i];
        let variant =
            (5..=8).contains(&p.len()) || (p.len() == 4 && p.as_bytes()[0].is_ascii_digit());
        if !variant {
            break;
        }
        i += 1;
    }
    while i < parts.len() && parts[i].len() == 1 {
        let singleton = parts[i];
        i += 1;
        let start = i;
        let max = 8;
        let min = if singleton.eq_ignore_ascii_case("x") {
            1
        } else {
            2
        };
        while i < parts.len() && (min..=max).contains(&parts[i].len()) {
            if !singleton.eq_ignore_ascii_case("x") && parts[i].len() == 1 {
                break;
            }
            i += 1;
        }
        if i == start {
            return false;
        }
        if singleton.eq_ignore_ascii_case("x") {
            return i == parts.len();
        }
    }
    i == parts.len()
}

fn mime_well_formed(code: &str) -> bool {
    const TOP: [&str; 10] = [
        "application",
        "audio",
        "font",
        "example",
        "image",
        "message",
        "model",
        "multipart",
        "text",
        "video",
    ];
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    let mut sections = code.split(';');
    let media = sections.next().unwrap_or("");
    let Some((ty, sub)) = media.trim().split_once('/') else {
        return false;
    };
    if !TOP.iter().any(|t| t.eq_ignore_ascii_case(ty)) || !token(sub) {
        return false;
    }
    sections.all(|param| match param.trim().split_once('=') {
        Some((k, v)) => token(k) && !v.is_empty(),
        None => false,
    })
}

mod ucum {
    //! A UCUM parser (case-sensitive form) over a built-in subset of unit atoms.

    use super::Tri;

    /// Atoms that accept metric prefixes.
    const METRIC: &[&str] = &[
        "m", "s", "g", "rad", "K", "C", "cd", "mol", "sr", "Hz", "N", "Pa", "J", "W", "A", "V",
        "F", "Ohm", "S", "Wb", "Cel", "T", "H", "lm", "lx", "Bq", "Gy", "Sv", "l", "L", "ar", "t",
        "bar", "u", "eV", "pc", "[c]", "[h]", "[k]", "[eps_0]", "[mu_0]", "[e]", "[m_e]", "[m_p]",
        "[G]", "[g]", "[ly]", "gf", "Ky", "Gal", "dyn", "erg", "P", "St", "Mx", "G", "Oe", "Gb",
        "sb", "Lmb", "ph", "Ci", "R", "RAD", "REM", "cal", "cal_[15]", "cal_[20]", "cal_m",
        "cal_IT", "cal_th", "[Cal]", "[iU]", "[IU]", "eq", "osm", "kat", "U", "B", "B[SPL]",
        "B[V]", "B[mV]", "B[uV]", "B[10.nV]", "B[W]", "B[kW]", "Np", "bit", "By", "Bd", "mho",
        "m[Hg]", "m[H2O]", "g%", "[pH]", "Ao", "b", "att", "mo_s", "[mesh_i]",
    ];

    /// Atoms without metric prefixes.
    const PLAIN: &[&str] = &[
        "10*",
        "10^",
        "[pi]",
        "%",
        "[ppth]",
        "[ppm]",
        "[ppb]",
        "[pptr]",
        "gon",
        "deg",
        "'",
        "''",
        "min",
        "h",
        "d",
        "a_t",
        "a_j",
        "a_g",
        "a",
        "wk",
        "mo_j",
        "mo_g",
        "mo",
        "atm",
        "[in_i]",
        "[ft_i]",
        "[yd_i]",
        "[mi_i]",
        "[fth_i]",
        "[nmi_i]",
        "[kn_i]",
        "[sin_i]",
        "[sft_i]",
        "[syd_i]",
        "[cin_i]",
        "[cft_i]",
        "[cyd_i]",
        "[bf_i]",
        "[cr_i]",
        "[mil_i]",
        "[cml_i]",
        "[hd_i]",
        "[lb_av]",
        "[oz_av]",
        "[dr_av]",
        "[scwt_av]",
        "[lcwt_av]",
        "[ston_av]",
        "[lton_av]",
        "[stone_av]",
        "[gr]",
        "[oz_tr]",
        "[lb_tr]",
        "[pwt_tr]",
        "[oz_ap]",
        "[dr_ap]",
        "[scr_ap]",
        "[lb_ap]",
        "[gal_us]",
        "[qt_us]",
        "[pt_us]",
        "[gil_us]",
        "[foz_us]",
        "[fdr_us]",
        "[min_us]",
        "[crd_us]",
        "[bu_us]",
        "[gal_wi]",
        "[pk_us]",
        "[dqt_us]",
        "[dpt_us]",
        "[tbs_us]",
        "[tsp_us]",
        "[cup_us]",
        "[foz_m]",
        "[cup_m]",
        "[tsp_m]",
        "[tbs_m]",
        "[gal_br]",
        "[pk_br]",
        "[bu_br]",
        "[qt_br]",
        "[pt_br]",
        "[gil_br]",
        "[foz_br]",
        "[fdr_br]",
        "[min_br]",
        "[degF]",
        "[degR]",
        "[degRe]",
        "[Btu]",
        "[Btu_IT]",
        "[Btu_th]",
        "[HP]",
        "[psi]",
        "[drp]",
        "[HPF]",
        "[LPF]",
        "[arb'U]",
        "[USP'U]",
        "[GPL'U]",
        "[MPL'U]",
        "[APL'U]",
        "[beth'U]",
        "[anti'Xa'U]",
        "[todd'U]",
        "[dye'U]",
        "[smgy'U]",
        "[bdsk'U]",
        "[ka'U]",
        "[knk'U]",
        "[mclg'U]",
        "[tb'U]",
        "[CCID_50]",
        "[TCID_50]",
        "[EID_50]",
        "[PFU]",
        "[FFU]",
        "[CFU]",
        "[IR]",
        "[BAU]",
        "[AU]",
        "[Amb'a'1'U]",
        "[PNU]",
        "[Lf]",
        "[D'ag'U]",
        "[FEU]",
        "[ELU]",
        "[EU]",
        "[S]",
        "[MET]",
        "[diop]",
        "[p'diop]",
        "%[slope]",
        "[hnsf'U]",
        "[wood'U]",
        "[Ch]",
        "[CFU]",
        "[m_u]",
        "[car_m]",
        "[car_Au]",
        "[smoot]",
        "[lne]",
        "[pca]",
        "[pnt]",
        "[pied]",
        "[pouce]",
        "[ligne]",
        "[didot]",
        "[cicero]",
        "[twp]",
        "[twhp]",
        "[pca_pr]",
        "[pnt_pr]",
        "[mesh_i]",
        "[den]",
        "circ",
        "sph",
        "[rch_us]",
        "[lk_us]",
        "[ch_us]",
        "[rd_us]",
        "[fur_us]",
        "[mi_us]",
        "[acr_us]",
        "[srd_us]",
        "[smi_us]",
        "[sct]",
        "[twp]",
        "[mil_us]",
        "[in_us]",
        "[ft_us]",
        "[yd_us]",
        "[rd_br]",
        "[in_br]",
        "[ft_br]",
        "[mi_br]",
        "[nmi_br]",
        "[kn_br]",
        "[acr_br]",
        "[ch_br]",
        "[lk_br]",
        "[pc_br]",
        "[yd_br]",
        "[hp_X]",
        "[hp_C]",
        "[hp_M]",
        "[hp_Q]",
        "[kp_X]",
        "[kp_C]",
        "[kp_M]",
        "[kp_Q]",
        "[tex]",
        "[ppth]",
        "[HPF]",
        "[LPF]",
        "[iU]",
        "Ao",
        "[mu_0]",
    ];

    const PREFIXES: &[&str] = &[
        "da", "Ki", "Mi", "Gi", "Ti", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m",
        "u", "n", "p", "f", "a", "z", "y",
    ];

    pub(super) fn check(code: &str) -> Tri {
        if code.is_empty() || code.len() > 200 || !code.bytes().all(|b| (33..=126).contains(&b)) {
            return Tri::No;
        }
        let mut p = Parser {
            s: code.as_bytes(),
            i: 0,
            unknown: None,
            depth: 0,
        };
        let ok = p.main_term() && p.i == p.s.len();
        match (ok, p.unknown) {
            (false, _) => Tri::No,
            (true, None) => Tri::Yes,
            (true, Some(atom)) => Tri::maybe(format!(
                "UCUM unit atom '{atom}' is not in the built-in UCUM table, so '{code}' cannot be checked"
            )),
        }
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
        unknown: Option<String>,
        depth: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn main_term(&mut self) -> bool {
            if self.peek() == Some(b'/') {
                self.i += 1;
            }
            self.term()
        }

        fn term(&mut self) -> bool {
            if !self.component() {
                return false;
            }
            while let Some(b'.' | b'/') = self.peek() {
                self.i += 1;
                if !self.component() {
                    return false;
                }
            }
            true
        }

        fn component(&mut self) -> bool {
            match self.peek() {
                Some(b'(') => {
                    self.depth += 1;
                    if self.depth > 20 {
                        return false;
                    }
                    self.i += 1;
                    let ok = self.term() && self.peek() == Some(b')');
                    if ok {
                        self.i += 1;
                    }
                    self.depth -= 1;
                    ok
                }
                Some(b'{') => self.annotation(),
                Some(_) => {
                    let start = self.i;
                    // A run of unit-symbol characters, brackets included.
                    while let Some(b) = self.peek() {
                        match b {
                            b'.' | b'/' | b'(' | b')' | b'{' | b'}' => break,
                            b'[' => {
                                while let Some(c) = self.peek() {
                                    self.i += 1;
                                    if c == b']' {
                                        break;
                                    }
                                }
                            }
                            _ => self.i += 1,
                        }
                    }
                    let run = &self.s[start..self.i];
                    if run.is_empty() {
                        return false;
                    }
                    let Ok(run) = std::str::from_utf8(run) else {
                        return false;
                    };
                    let ok = self.simple_unit_with_exponent(run);
                    if ok && self.peek() == Some(b'{') {
                        return self.annotation();
                    }
                    ok
                }
                None => false,
            }
        }

        fn annotation(&mut self) -> bool {
            self.i += 1;
            while let Some(b) = self.peek() {
                self.i += 1;
                match b {
                    b'}' => return true,
                    b'{' => return false,
                    _ => {}
                }
            }
            false
        }

        fn simple_unit_with_exponent(&mut self, run: &str) -> bool {
            if run.bytes().all(|b| b.is_ascii_digit()) {
                return true; // a factor
            }
            if run.contains('[') && !run.contains(']') {
                return false;
            }
            // Split a trailing exponent: optional sign and digits, never inside brackets.
            let bytes = run.as_bytes();
            let mut cut = bytes.len();
            while cut > 0 && bytes[cut - 1].is_ascii_digit() {
                cut -= 1;
            }
            if cut < bytes.len() && cut > 0 && matches!(bytes[cut - 1], b'+' | b'-') {
                cut -= 1;
            }
            let (atom, exponent) = run.split_at(cut);
            // `10*3` and `10^3` are the atom `10*` with exponent 3.
            if atom.is_empty() {
                return false;
            }
            if exponent == "+" || exponent == "-" {
                return false;
            }
            if known(atom) {
                return true;
            }
            if atom.contains(['+', '-']) {
                return false;
            }
            if self.unknown.is_none() {
                self.unknown = Some(atom.to_owned());
            }
            true
        }
    }

    fn known(atom: &str) -> bool {
        if METRIC.contains(&atom) || PLAIN.contains(&atom) {
            return true;
        }
        PREFIXES.iter().any(|p| {
            atom.strip_prefix(p)
                .is_some_and(|rest| !rest.is_empty() && METRIC.contains(&rest))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucum_grammar() {
        for ok in [
            "mg",
            "kg/m2",
            "mm[Hg]",
            "/min",
            "10*3/uL",
            "{score}",
            "%",
            "[in_i]",
            "Cel",
            "mL/(kg.h)",
            "1",
            "g.m-2",
            "ug/dL",
            "[IU]/L",
            "mmol/L",
            "10*9/L",
            "kg{body}",
            "cm[H2O]",
            "s-1",
        ] {
            assert_eq!(Syntax::Ucum.check(ok), Tri::Yes, "{ok}");
        }
        for bad in ["", "mg/", "(mg", "m g", "{abc", "kg//m", "mg)", "/"] {
            assert_eq!(Syntax::Ucum.check(bad), Tri::No, "{bad}");
        }
        assert!(matches!(Syntax::Ucum.check("foo"), Tri::Maybe(_)));
    }

    #[test]
    fn bcp47() {
        for ok in [
            "en",
            "da-DK",
            "zh-Hant-TW",
            "de-CH-1901",
            "x-private",
            "en-US-x-twain",
            "es-419",
        ] {
            assert!(bcp47_well_formed(ok), "{ok}");
        }
        for bad in ["", "e", "en_US", "en--US", "123", "en-US-x", "toolongtag1"] {
            assert!(!bcp47_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> = "m/.()[]{}0123456789-+*^_'%kgLAxX é".chars().collect();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let len = (seed % 12) as usize;
            let mut s = String::new();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            for syntax in [Syntax::Ucum, Syntax::Bcp47, Syntax::MimeType] {
                let _ = syntax.check(&s);
            }
        }
    }

    #[test]
    fn mime() {
        assert!(mime_well_formed("application/fhir+json"));
        assert!(mime_well_formed("text/plain; charset=utf-8"));
        assert!(!mime_well_formed("fhir+json"));
        assert!(!mime_well_formed("foo/bar"));
        assert!(!mime_well_formed("text/"));
    }
}
