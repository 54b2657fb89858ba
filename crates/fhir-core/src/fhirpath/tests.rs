//! Unit tests of the engine on small inline resources, plus a robustness check that no
//! input string makes the lexer, parser or evaluator panic.

use serde_json::json;

use super::*;

fn eval_str(expr: &str, res: &serde_json::Value) -> Result<Vec<String>, String> {
    let e = compile(expr).map_err(|e| e.to_string())?;
    let model = JsonOnlyModel;
    let ctx = EvalContext::new(&model, res);
    let r = evaluate(&e, &ctx).map_err(|e| e.to_string())?;
    Ok(r.iter().map(|i| i.to_string()).collect())
}

#[test]
fn basics_without_model() {
    let p = json!({
        "resourceType": "Patient", "id": "p1",
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://x/bt", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "name": [{"given": ["Peter", "James"], "_given": [null, {"id": "g2"}], "family": "Chalmers"}],
        "deceasedBoolean": false
    });
    assert_eq!(
        eval_str("name.given", &p).unwrap(),
        vec!["\"Peter\"", "\"James\""]
    );
    assert_eq!(
        eval_str("birthDate.extension.exists()", &p).unwrap(),
        vec!["true"]
    );
    assert_eq!(
        eval_str("birthDate.extension('http://x/bt').value", &p)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(eval_str("birthDate.hasValue()", &p).unwrap(), vec!["true"]);
    assert_eq!(eval_str("name.given[1].id", &p).unwrap(), vec!["\"g2\""]);
    assert_eq!(eval_str("deceased", &p).unwrap(), vec!["false"]);
    assert_eq!(
        eval_str("birthDate < @2000-01-01", &p).unwrap(),
        vec!["true"]
    );
    assert_eq!(
        eval_str("Patient.name.family & ', ' & name.given.first()", &p).unwrap(),
        vec!["Chalmers, Peter"]
    );
    assert_eq!(eval_str("1.2 / 1.8", &p).unwrap(), vec!["0.66666667"]);
    assert_eq!(
        eval_str("(1 | 2 | 3).aggregate($this + $total, 0)", &p).unwrap(),
        vec!["6"]
    );
    assert!(eval_str("name.single().given.single()", &p).is_err());
    assert_eq!(
        eval_str("@2014-01-31 + 1 month", &p).unwrap(),
        vec!["2014-02-28"]
    );
}

#[test]
fn parse_errors_have_offsets() {
    let e = compile("name.where(").unwrap_err();
    assert_eq!(e.offset, 11);
    let e = compile("name.foo()").unwrap_err();
    assert!(e.message.contains("unknown function"), "{e}");
    assert!(compile("1 +").is_err());
    assert!(compile("'unterminated").is_err());
}

#[test]
fn evaluate_boolean_rules() {
    let p = json!({"resourceType": "Patient", "active": true});
    let m = JsonOnlyModel;
    let ctx = EvalContext::new(&m, &p);
    assert_eq!(
        evaluate_boolean(&compile("active").unwrap(), &ctx),
        Ok(Some(true))
    );
    assert_eq!(
        evaluate_boolean(&compile("gender").unwrap(), &ctx),
        Ok(None)
    );
    assert_eq!(
        evaluate_boolean(&compile("active.not()").unwrap(), &ctx),
        Ok(Some(false))
    );
    assert!(evaluate_boolean(&compile("(1|2)").unwrap(), &ctx).is_err());
}

#[test]
fn resolve_contained_and_bundle() {
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://x/Patient/1", "resource": {"resourceType": "Patient", "id": "1",
            "contained": [{"resourceType": "Organization", "id": "o"}],
            "managingOrganization": {"reference": "#o"},
            "link": [{"other": {"reference": "Patient/2"}}]}},
        {"fullUrl": "http://x/Patient/2", "resource": {"resourceType": "Patient", "id": "2"}}
    ]});
    let m = JsonOnlyModel;
    let p = &b["entry"][0]["resource"];
    let ctx = EvalContext::new(&m, p).with_bundle(&b);
    let e = compile("managingOrganization.resolve().id").unwrap();
    assert_eq!(evaluate(&e, &ctx).unwrap().len(), 1);
    let e = compile("link.other.resolve().id = '2'").unwrap();
    assert_eq!(evaluate_boolean(&e, &ctx), Ok(Some(true)));
    let e = compile("link.other.resolve() is Patient").unwrap();
    assert_eq!(evaluate_boolean(&e, &ctx), Ok(Some(true)));
}

/// Small deterministic generator (xorshift) so the test needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'s>(&mut self, xs: &[&'s str]) -> &'s str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

#[test]
fn no_input_panics() {
    let seeds = [
        "name.where(given = 'Jim').exists()",
        "hasValue() or (children().count() > id.count())",
        "@2014-01-01T10:00:00Z + 1 'wk' > now()",
        "(1 | 2.5 | 'a').aggregate($this & $total, '')",
        "contained.where(('#'+id in %resource.descendants().reference).not()).empty()",
        "value.as(Quantity).value.round(2).toString().matches('^[0-9.]+$')",
        "iif(a.b[0].c ~ 4 days, `x`.y, %\"vs-z\")",
        "-(1).power(0.5).sqrt().ln().exp().log(2)",
    ];
    let atoms = [
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ".",
        ",",
        "'",
        "`",
        "@",
        "@T",
        "%",
        "$this",
        "$total",
        "+",
        "-",
        "*",
        "/",
        "|",
        "&",
        "=",
        "!=",
        "~",
        "<=",
        ">",
        " and ",
        " or ",
        " implies ",
        " is ",
        " as ",
        "div",
        "mod",
        "1",
        "0.5",
        "'x'",
        "name",
        "where(",
        "repeat(",
        "select(",
        "iif(",
        "2012-",
        "T10:",
        "Z",
        "\\u",
        "\\",
        "9999999999999999999999",
        "1e400",
        "'mg'",
        "week",
        "ofType(",
        "descendants()",
        "resolve()",
        "substring(",
        "/*",
        "//",
        "\u{e9}",
        "\u{1F600}",
    ];
    let res = json!({"resourceType": "Patient", "id": "x", "name": [{"given": ["a", "b"]}],
        "contained": [{"resourceType": "Patient", "id": "c"}], "valueQuantity": {"value": 1.5, "unit": "mg"}});
    let model = JsonOnlyModel;
    let ctx = EvalContext::new(&model, &res);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut compiled = 0;
    for round in 0..4000 {
        let mut s = rng.pick(&seeds).to_string();
        for _ in 0..(1 + rng.next() % 4) {
            let op = rng.next() % 3;
            let pos = if s.is_empty() {
                0
            } else {
                (rng.next() as usize) % s.len()
            };
            let pos = (0..=pos)
                .rev()
                .find(|p| s.is_char_boundary(*p))
                .unwrap_or(0);
            match op {
                0 => s.insert_str(pos, rng.pick(&atoms)),
                1 => {
                    let end = (pos + 1 + (rng.next() % 5) as usize).min(s.len());
                    let end = (end..=s.len())
                        .find(|p| s.is_char_boundary(*p))
                        .unwrap_or(s.len());
                    s.replace_range(pos..end, "");
                }
                _ => s.truncate(pos),
            }
        }
        if round % 7 == 0 {
            s = (0..(rng.next() % 12)).map(|_| rng.pick(&atoms)).collect();
        }
        if let Ok(e) = compile(&s) {
            compiled += 1;
            let _ = evaluate(&e, &ctx);
        }
    }
    assert!(
        compiled > 100,
        "the mutator should produce some valid expressions"
    );
    // deep nesting is rejected, not a stack overflow
    let deep = "(".repeat(5000) + "1" + &")".repeat(5000);
    assert!(compile(&deep).is_err());
    let long = vec!["1"; 5000].join(" + ");
    assert!(compile(&long).is_err());
    // the deepest accepted expressions evaluate without exhausting a 2 MiB test stack
    for depth in [60usize, 95, 127, 190] {
        let nested = "name.where(".repeat(depth / 2) + "true" + &")".repeat(depth / 2);
        if let Ok(e) = compile(&nested) {
            let _ = evaluate(&e, &ctx);
        }
        let parens = "(".repeat(depth) + "1 + 1" + &")".repeat(depth);
        if let Ok(e) = compile(&parens) {
            let _ = evaluate(&e, &ctx);
        }
        let chain = vec!["1"; depth].join(" + ");
        if let Ok(e) = compile(&chain) {
            let _ = evaluate(&e, &ctx);
        }
    }
}

#[test]
fn expr_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Expr>();
    check::<SnapshotModel>();
}
