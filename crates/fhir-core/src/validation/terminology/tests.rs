//! Hand-written cases for each piece of semantics.

use serde_json::{json, Value};

use super::{compact, Membership, Terminology, ValueSetStatus};

const CS: &str = "http://example.org/cs/animals";

fn animals() -> Value {
    json!({
        "resourceType": "CodeSystem", "url": CS, "version": "1.0.0", "status": "active",
        "content": "complete", "caseSensitive": true,
        "valueSet": "http://example.org/vs/all-animals",
        "property": [
            {"code": "legs", "type": "integer"},
            {"code": "status", "type": "code"},
            {"code": "parent", "type": "code"}
        ],
        "concept": [
            {"code": "animal", "display": "Animal", "concept": [
                {"code": "mammal", "display": "Mammal", "concept": [
                    {"code": "dog", "display": "Dog", "property": [{"code": "legs", "valueInteger": 4}]},
                    {"code": "cat", "display": "Cat", "property": [{"code": "legs", "valueInteger": 4}]},
                    {"code": "human", "display": "Human", "property": [{"code": "legs", "valueInteger": 2}]}
                ]},
                {"code": "bird", "display": "Bird", "concept": [
                    {"code": "dodo", "display": "Dodo", "property": [{"code": "status", "valueCode": "retired"}]}
                ]}
            ]},
            // Hierarchy by property instead of nesting.
            {"code": "sparrow", "display": "Sparrow", "property": [{"code": "parent", "valueCode": "bird"}]},
            {"code": "Rock", "display": "Rock"}
        ]
    })
}

fn vs(url: &str, compose: Value) -> Value {
    json!({"resourceType": "ValueSet", "url": url, "status": "active", "compose": compose})
}

fn store(extra: &[Value]) -> Terminology {
    let mut t = Terminology::new();
    t.add(&animals()).expect("animals");
    for r in extra {
        t.add(r).expect("resource");
    }
    t
}

fn member(m: Membership) -> bool {
    m.is_member()
}

fn not_member(m: &Membership) -> bool {
    matches!(m, Membership::NotMember { .. })
}

fn unknown_reason(m: Membership) -> String {
    match m {
        Membership::Unknown { reason } => reason,
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[test]
fn concept_list_and_exclude() {
    let t = store(&[
        vs(
            "http://x/pets",
            json!({"include": [{"system": CS, "concept": [{"code": "dog"}, {"code": "cat"}, {"code": "unicorn"}]}]}),
        ),
        vs(
            "http://x/not-cats",
            json!({
                "include": [{"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "mammal"}]}],
                "exclude": [{"system": CS, "concept": [{"code": "cat"}]}]
            }),
        ),
    ]);
    assert!(member(t.check_code("http://x/pets", Some(CS), "dog")));
    assert!(not_member(&t.check_code(
        "http://x/pets",
        Some(CS),
        "human"
    )));
    // Listed, but not a code of the (complete) code system.
    assert!(not_member(&t.check_code(
        "http://x/pets",
        Some(CS),
        "unicorn"
    )));
    assert!(not_member(&t.check_code(
        "http://x/pets",
        Some("http://other"),
        "dog"
    )));
    assert!(member(t.check_code("http://x/pets", None, "cat")));
    assert!(member(t.check_code(
        "http://x/not-cats",
        Some(CS),
        "mammal"
    )));
    assert!(member(t.check_code("http://x/not-cats", Some(CS), "dog")));
    assert!(not_member(&t.check_code(
        "http://x/not-cats",
        Some(CS),
        "cat"
    )));
    assert!(not_member(&t.check_code(
        "http://x/not-cats",
        Some(CS),
        "bird"
    )));
}

#[test]
fn hierarchy_filters() {
    let f = |op: &str, value: &str| {
        vs(
            &format!("http://x/{op}-{value}"),
            json!({"include": [{"system": CS, "filter": [{"property": "concept", "op": op, "value": value}]}]}),
        )
    };
    let t = store(&[
        f("is-a", "bird"),
        f("descendent-of", "bird"),
        f("is-not-a", "mammal"),
        f("generalizes", "dog"),
        f("in", "dog,Rock"),
        f("not-in", "dog,cat"),
        f("regex", "d.*"),
    ]);
    let c = |v: &str, code: &str| t.check_code(&format!("http://x/{v}"), Some(CS), code);
    assert!(member(c("is-a-bird", "bird")));
    assert!(member(c("is-a-bird", "dodo")));
    assert!(
        member(c("is-a-bird", "sparrow")),
        "hierarchy via parent property"
    );
    assert!(not_member(&c("is-a-bird", "dog")));
    assert!(not_member(&c("descendent-of-bird", "bird")));
    assert!(member(c("descendent-of-bird", "sparrow")));
    assert!(member(c("is-not-a-mammal", "bird")));
    assert!(member(c("is-not-a-mammal", "Rock")));
    assert!(not_member(&c("is-not-a-mammal", "mammal")));
    assert!(not_member(&c("is-not-a-mammal", "cat")));
    assert!(member(c("generalizes-dog", "animal")));
    assert!(member(c("generalizes-dog", "dog")));
    assert!(not_member(&c("generalizes-dog", "cat")));
    assert!(member(c("in-dog,Rock", "Rock")));
    assert!(not_member(&c("in-dog,Rock", "cat")));
    assert!(member(c("not-in-dog,cat", "human")));
    assert!(not_member(&c("not-in-dog,cat", "dog")));
    assert!(member(c("regex-d.*", "dodo")));
    assert!(
        not_member(&c("regex-d.*", "cat")),
        "regex must match the whole code"
    );
}

#[test]
fn property_filters() {
    let t = store(&[
        vs(
            "http://x/bipeds",
            json!({"include": [{"system": CS, "filter": [{"property": "legs", "op": "=", "value": "2"}]}]}),
        ),
        vs(
            "http://x/with-legs",
            json!({"include": [{"system": CS, "filter": [{"property": "legs", "op": "exists", "value": "true"}]}]}),
        ),
        vs(
            "http://x/children-of-mammal",
            json!({"include": [{"system": CS, "filter": [{"property": "parent", "op": "=", "value": "mammal"}]}]}),
        ),
        vs(
            "http://x/parents-of-dog",
            json!({"include": [{"system": CS, "filter": [{"property": "child", "op": "=", "value": "dog"}]}]}),
        ),
        vs(
            "http://x/both",
            json!({"include": [{"system": CS, "filter": [
                {"property": "concept", "op": "is-a", "value": "mammal"},
                {"property": "legs", "op": "=", "value": "4"}
            ]}]}),
        ),
        vs(
            "http://x/colour",
            json!({"include": [{"system": CS, "filter": [{"property": "colour", "op": "=", "value": "red"}]}]}),
        ),
    ]);
    assert!(member(t.check_code("http://x/bipeds", Some(CS), "human")));
    assert!(not_member(&t.check_code(
        "http://x/bipeds",
        Some(CS),
        "dog"
    )));
    assert!(member(t.check_code("http://x/with-legs", Some(CS), "cat")));
    assert!(not_member(&t.check_code(
        "http://x/with-legs",
        Some(CS),
        "bird"
    )));
    assert!(member(t.check_code(
        "http://x/children-of-mammal",
        Some(CS),
        "human"
    )));
    assert!(not_member(&t.check_code(
        "http://x/children-of-mammal",
        Some(CS),
        "mammal"
    )));
    assert!(member(t.check_code(
        "http://x/parents-of-dog",
        Some(CS),
        "mammal"
    )));
    assert!(not_member(&t.check_code(
        "http://x/parents-of-dog",
        Some(CS),
        "animal"
    )));
    assert!(member(t.check_code("http://x/both", Some(CS), "dog")));
    assert!(not_member(&t.check_code(
        "http://x/both",
        Some(CS),
        "human"
    )));
    let r = unknown_reason(t.check_code("http://x/colour", Some(CS), "dog"));
    assert!(r.contains("colour"), "{r}");
}

#[test]
fn imports_are_united_and_intersected_with_system() {
    let t = store(&[
        vs(
            "http://x/mammals",
            json!({"include": [{"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "mammal"}]}]}),
        ),
        vs(
            "http://x/four-legs",
            json!({"include": [{"system": CS, "filter": [{"property": "legs", "op": "=", "value": "4"}]}]}),
        ),
        vs(
            "http://x/union",
            json!({"include": [{"valueSet": ["http://x/mammals"]}, {"system": CS, "concept": [{"code": "Rock"}]}]}),
        ),
        vs(
            "http://x/two-imports",
            json!({"include": [{"valueSet": ["http://x/mammals", "http://x/four-legs"]}]}),
        ),
        vs(
            "http://x/with-system",
            json!({"include": [{"system": CS, "concept": [{"code": "dog"}, {"code": "bird"}], "valueSet": ["http://x/mammals"]}]}),
        ),
        vs(
            "http://x/missing-import",
            json!({"include": [{"valueSet": ["http://x/nowhere"]}]}),
        ),
    ]);
    assert!(member(t.check_code("http://x/union", Some(CS), "human")));
    assert!(member(t.check_code("http://x/union", Some(CS), "Rock")));
    assert!(not_member(&t.check_code(
        "http://x/union",
        Some(CS),
        "bird"
    )));
    assert!(member(t.check_code(
        "http://x/two-imports",
        Some(CS),
        "cat"
    )));
    assert!(member(t.check_code(
        "http://x/two-imports",
        Some(CS),
        "human"
    )));
    assert!(not_member(&t.check_code(
        "http://x/two-imports",
        Some(CS),
        "bird"
    )));
    assert!(member(t.check_code(
        "http://x/with-system",
        Some(CS),
        "dog"
    )));
    assert!(not_member(&t.check_code(
        "http://x/with-system",
        Some(CS),
        "bird"
    )));
    assert!(not_member(&t.check_code(
        "http://x/with-system",
        Some(CS),
        "cat"
    )));
    let r = unknown_reason(t.check_code("http://x/missing-import", Some(CS), "dog"));
    assert!(r.contains("http://x/nowhere is not loaded"), "{r}");
}

#[test]
fn cycles_are_unknown() {
    let t = store(&[
        vs(
            "http://x/a",
            json!({"include": [{"valueSet": ["http://x/b"]}, {"system": CS, "concept": [{"code": "dog"}]}]}),
        ),
        vs(
            "http://x/b",
            json!({"include": [{"valueSet": ["http://x/a"]}]}),
        ),
        vs(
            "http://x/self",
            json!({"include": [{"valueSet": ["http://x/self"]}]}),
        ),
    ]);
    // `dog` is certainly in a; anything else depends on the cycle.
    assert!(member(t.check_code("http://x/a", Some(CS), "dog")));
    let r = unknown_reason(t.check_code("http://x/a", Some(CS), "cat"));
    assert!(r.contains("cycle"), "{r}");
    let r = unknown_reason(t.check_code("http://x/b", Some(CS), "cat"));
    assert!(r.contains("cycle"), "{r}");
    let r = unknown_reason(t.check_code("http://x/self", Some(CS), "cat"));
    assert!(r.contains("cycle"), "{r}");
}

#[test]
fn answers_do_not_depend_on_order_of_first_use() {
    let defs = || {
        store(&[
            vs(
                "http://x/a",
                json!({"include": [{"valueSet": ["http://x/b"]}, {"system": CS, "concept": [{"code": "dog"}]}]}),
            ),
            vs(
                "http://x/b",
                json!({"include": [{"valueSet": ["http://x/a"]}, {"system": CS, "concept": [{"code": "cat"}]}]}),
            ),
            vs(
                "http://x/c",
                json!({"include": [{"valueSet": ["http://x/a", "http://x/b"]}]}),
            ),
        ])
    };
    let urls = ["http://x/a", "http://x/b", "http://x/c"];
    let answers = |order: &[usize]| {
        let t = defs();
        for &i in order {
            let _ = t.check_code(urls[i], Some(CS), "dog");
        }
        let mut out = Vec::new();
        for url in urls {
            for code in ["dog", "cat", "human"] {
                out.push(t.check_code(url, Some(CS), code));
            }
        }
        out
    };
    let first = answers(&[0, 1, 2]);
    for order in [[1, 0, 2], [2, 1, 0], [2, 0, 1]] {
        assert_eq!(answers(&order), first, "{order:?}");
    }
    // Each value set certainly holds its own code.
    assert!(first[0].is_member() && first[4].is_member());
}

#[test]
fn versions() {
    let mut v2 = animals();
    v2["version"] = json!("2.0.0");
    v2["concept"] = json!([{"code": "robot"}]);
    let mk = |version: &str, code: &str| {
        json!({"resourceType": "ValueSet", "url": "http://x/v", "version": version, "status": "active",
               "compose": {"include": [{"system": CS, "version": "1.0.0", "concept": [{"code": code}]}]}})
    };
    let t = store(&[
        v2,
        mk("1.10", "dog"),
        mk("1.9", "cat"),
        vs(
            "http://x/pin-1",
            json!({"include": [{"system": CS, "version": "1.0.0"}]}),
        ),
        vs(
            "http://x/pin-3",
            json!({"include": [{"system": CS, "version": "3"}]}),
        ),
        vs("http://x/latest", json!({"include": [{"system": CS}]})),
    ]);
    // Highest version by numeric comparison: 1.10 > 1.9.
    assert!(member(t.check_code("http://x/v", Some(CS), "dog")));
    assert!(member(t.check_code("http://x/v|1.9", Some(CS), "cat")));
    assert!(not_member(&t.check_code("http://x/v|1.9", Some(CS), "dog")));
    let r = unknown_reason(t.check_code("http://x/v|7", Some(CS), "dog"));
    assert!(r.contains("version 7 is not loaded"), "{r}");
    assert!(member(t.check_code("http://x/pin-1", Some(CS), "dog")));
    assert!(not_member(&t.check_code(
        "http://x/pin-1",
        Some(CS),
        "robot"
    )));
    assert!(member(t.check_code("http://x/latest", Some(CS), "robot")));
    assert!(not_member(&t.check_code(
        "http://x/latest",
        Some(CS),
        "dog"
    )));
    let r = unknown_reason(t.check_code("http://x/pin-3", Some(CS), "dog"));
    assert!(r.contains("version 3 is not loaded"), "{r}");
    assert!(member(
        t.check_in_code_system(&format!("{CS}|1.0.0"), "dog")
    ));
    assert!(not_member(&t.check_in_code_system(CS, "dog")));
    assert_eq!(t.display(&format!("{CS}|1.0.0"), "dog"), Some("Dog"));
}

#[test]
fn same_version_later_add_overrides() {
    let mut t = store(&[vs(
        "http://x/o",
        json!({"include": [{"system": CS, "concept": [{"code": "dog"}]}]}),
    )]);
    assert!(member(t.check_code("http://x/o", Some(CS), "dog")));
    t.add(&vs(
        "http://x/o",
        json!({"include": [{"system": CS, "concept": [{"code": "cat"}]}]}),
    ))
    .expect("add");
    assert!(not_member(&t.check_code("http://x/o", Some(CS), "dog")));
    assert!(member(t.check_code("http://x/o", Some(CS), "cat")));
}

#[test]
fn implicit_value_set_of_code_system() {
    let t = store(&[]);
    assert!(t.has_value_set("http://example.org/vs/all-animals"));
    assert!(member(t.check_code(
        "http://example.org/vs/all-animals",
        Some(CS),
        "sparrow"
    )));
    assert!(not_member(&t.check_code(
        "http://example.org/vs/all-animals",
        Some(CS),
        "stone"
    )));
}

#[test]
fn case_sensitivity() {
    let t = store(&[
        json!({
            "resourceType": "CodeSystem", "url": "http://x/ci", "status": "active", "content": "complete",
            "caseSensitive": false, "concept": [{"code": "Alpha"}, {"code": "beta"}]
        }),
        json!({
            "resourceType": "CodeSystem", "url": "http://x/unstated", "status": "active", "content": "complete",
            "concept": [{"code": "Gamma"}]
        }),
        vs(
            "http://x/ci-vs",
            json!({"include": [{"system": "http://x/ci", "concept": [{"code": "ALPHA"}]}]}),
        ),
    ]);
    assert!(member(t.check_in_code_system("http://x/ci", "alpha")));
    assert!(member(t.check_in_code_system("http://x/ci", "BETA")));
    assert!(member(t.check_in_code_system("http://x/unstated", "gamma")));
    assert!(member(t.check_code(
        "http://x/ci-vs",
        Some("http://x/ci"),
        "Alpha"
    )));
    assert!(member(t.check_code(
        "http://x/ci-vs",
        Some("http://x/ci"),
        "alpha"
    )));
    assert!(not_member(&t.check_code(
        "http://x/ci-vs",
        Some("http://x/ci"),
        "beta"
    )));
    // The animals system is case-sensitive.
    assert!(not_member(&t.check_in_code_system(CS, "DOG")));
    assert!(not_member(&t.check_in_code_system(CS, "rock")));
}

#[test]
fn partial_code_systems_and_externals() {
    let t = store(&[
        json!({"resourceType": "CodeSystem", "url": "http://snomed.info/sct", "status": "active", "content": "not-present"}),
        json!({"resourceType": "CodeSystem", "url": "http://x/frag", "status": "active", "content": "fragment", "caseSensitive": true, "concept": [{"code": "a"}]}),
        json!({"resourceType": "CodeSystem", "url": "http://x/supp", "status": "active", "content": "supplement", "supplements": CS, "concept": [{"code": "dog"}]}),
        vs(
            "http://x/sct-isa",
            json!({"include": [{"system": "http://snomed.info/sct", "filter": [{"property": "concept", "op": "is-a", "value": "404684003"}]}]}),
        ),
        vs(
            "http://x/sct-list",
            json!({"include": [{"system": "http://snomed.info/sct", "concept": [{"code": "22298006"}]}]}),
        ),
        vs(
            "http://x/loinc-all",
            json!({"include": [{"system": "http://loinc.org"}]}),
        ),
        vs(
            "http://x/frag-all",
            json!({"include": [{"system": "http://x/frag"}]}),
        ),
        vs(
            "http://x/iso3",
            json!({"include": [{"system": "urn:iso:std:iso:3166", "filter": [{"property": "code", "op": "regex", "value": "[A-Z]{3}"}]}]}),
        ),
        vs(
            "http://x/ucum",
            json!({"include": [{"system": "http://unitsofmeasure.org"}]}),
        ),
    ]);
    let sct = Some("http://snomed.info/sct");
    let r = unknown_reason(t.check_code("http://x/sct-isa", sct, "22298006"));
    assert!(
        r.contains("SNOMED CT") && r.contains("is-a 404684003"),
        "{r}"
    );
    assert!(member(t.check_code("http://x/sct-isa", sct, "404684003")));
    assert!(member(t.check_code("http://x/sct-list", sct, "22298006")));
    assert!(not_member(&t.check_code(
        "http://x/sct-list",
        sct,
        "404684003"
    )));
    let r = unknown_reason(t.check_code("http://x/loinc-all", Some("http://loinc.org"), "8867-4"));
    assert!(r.contains("LOINC"), "{r}");
    assert!(member(t.check_code(
        "http://x/frag-all",
        Some("http://x/frag"),
        "a"
    )));
    let r = unknown_reason(t.check_code("http://x/frag-all", Some("http://x/frag"), "b"));
    assert!(r.contains("fragment"), "{r}");
    let r = unknown_reason(t.check_in_code_system("http://snomed.info/sct", "22298006"));
    assert!(r.contains("not-present"), "{r}");
    let r = unknown_reason(t.check_in_code_system("http://x/supp", "dog"));
    assert!(r.contains("supplement"), "{r}");
    assert!(not_member(&t.check_code(
        "http://x/iso3",
        Some("urn:iso:std:iso:3166"),
        "DK"
    )));
    unknown_reason(t.check_code("http://x/iso3", Some("urn:iso:std:iso:3166"), "DNK"));
    assert!(member(t.check_code(
        "http://x/ucum",
        Some("http://unitsofmeasure.org"),
        "mg/dL"
    )));
    assert!(not_member(&t.check_code(
        "http://x/ucum",
        Some("http://unitsofmeasure.org"),
        "mg/"
    )));
    unknown_reason(t.check_code("http://x/ucum", Some("http://unitsofmeasure.org"), "blorp"));
    assert!(member(
        t.check_in_code_system("http://unitsofmeasure.org", "kg/m2")
    ));
    let r = unknown_reason(t.check_code("http://x/absent", Some(CS), "dog"));
    assert!(r.contains("not loaded"), "{r}");
    assert!(matches!(
        t.value_set_status("http://x/sct-list"),
        ValueSetStatus::Complete { members: 1 }
    ));
    assert!(matches!(
        t.value_set_status("http://x/sct-isa"),
        ValueSetStatus::Partial { .. }
    ));
}

#[test]
fn inactive_flag() {
    let t = store(&[
        vs(
            "http://x/active-birds",
            json!({"inactive": false, "include": [{"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "bird"}]}]}),
        ),
        vs(
            "http://x/all-birds",
            json!({"include": [{"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "bird"}]}]}),
        ),
    ]);
    assert!(not_member(&t.check_code(
        "http://x/active-birds",
        Some(CS),
        "dodo"
    )));
    assert!(member(t.check_code(
        "http://x/active-birds",
        Some(CS),
        "sparrow"
    )));
    assert!(member(t.check_code("http://x/all-birds", Some(CS), "dodo")));
}

#[test]
fn expansion_used_when_compose_is_not_evaluable() {
    let t = store(&[json!({
        "resourceType": "ValueSet", "url": "http://x/exp", "status": "active",
        "compose": {"include": [{"system": "http://snomed.info/sct", "filter": [{"property": "concept", "op": "is-a", "value": "1"}]}]},
        "expansion": {"timestamp": "2020-01-01", "contains": [
            {"system": "http://snomed.info/sct", "code": "2", "contains": [{"system": "http://snomed.info/sct", "code": "3"}]}
        ]}
    })]);
    let sct = Some("http://snomed.info/sct");
    assert!(member(t.check_code("http://x/exp", sct, "3")));
    assert!(not_member(&t.check_code("http://x/exp", sct, "4")));
}

#[test]
fn malformed_resources_are_errors_not_panics() {
    let mut t = Terminology::new();
    for bad in [
        json!({"resourceType": "Patient"}),
        json!({"resourceType": "CodeSystem", "url": "http://x", "content": "complete", "concept": [{"display": "no code"}]}),
        json!({"resourceType": "CodeSystem", "url": "http://x", "content": "weird"}),
        json!({"resourceType": "CodeSystem", "content": "complete"}),
        json!({"resourceType": "CodeSystem", "url": "http://x", "content": "complete", "concept": {"code": "a"}}),
        json!({"resourceType": "ValueSet", "url": "http://x", "compose": {"include": [{}]}}),
        json!({"resourceType": "ValueSet", "url": "http://x", "compose": {"include": [{"concept": [{"code": "a"}]}]}}),
        json!({"resourceType": "ValueSet", "url": "http://x", "compose": {"include": [{"system": "s", "filter": [{"op": "="}]}]}}),
        json!({"resourceType": "ValueSet", "url": 7}),
        json!(null),
    ] {
        assert!(t.add(&bad).is_err(), "{bad}");
    }
    // Accepted but unevaluable at check time.
    t.add(&animals()).expect("animals");
    t.add(&vs("http://x/bad-regex", json!({"include": [{"system": CS, "filter": [{"property": "code", "op": "regex", "value": "(("}]}]})))
        .expect("add");
    t.add(&vs("http://x/bad-op", json!({"include": [{"system": CS, "filter": [{"property": "concept", "op": "sideways", "value": "x"}]}]})))
        .expect("add");
    t.add(&json!({"resourceType": "ValueSet", "url": "http://x/empty", "status": "draft"}))
        .expect("add");
    unknown_reason(t.check_code("http://x/bad-regex", Some(CS), "dog"));
    unknown_reason(t.check_code("http://x/bad-op", Some(CS), "dog"));
    unknown_reason(t.check_code("http://x/empty", Some(CS), "dog"));
}

#[test]
fn hierarchy_cycles_in_code_systems_are_safe() {
    let t = store(&[
        json!({
            "resourceType": "CodeSystem", "url": "http://x/loop", "status": "active", "content": "complete", "caseSensitive": true,
            "concept": [
                {"code": "a", "property": [{"code": "parent", "valueCode": "b"}]},
                {"code": "b", "property": [{"code": "parent", "valueCode": "a"}]},
                {"code": "c"}
            ]
        }),
        vs(
            "http://x/loop-vs",
            json!({"include": [{"system": "http://x/loop", "filter": [{"property": "concept", "op": "is-a", "value": "a"}]}]}),
        ),
    ]);
    assert!(member(t.check_code(
        "http://x/loop-vs",
        Some("http://x/loop"),
        "b"
    )));
    assert!(not_member(&t.check_code(
        "http://x/loop-vs",
        Some("http://x/loop"),
        "c"
    )));
}

#[test]
fn compact_keeps_machine_facts() {
    let full = animals();
    let small = compact(&full);
    assert!(small.get("text").is_none());
    assert_eq!(
        small["concept"][0]["concept"][0]["concept"][0]["code"],
        "dog"
    );
    assert_eq!(
        small["concept"][0]["concept"][0]["concept"][0]["property"][0]["valueInteger"],
        4
    );
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Terminology>();
}

#[test]
fn concurrent_first_use() {
    let t = store(&[
        vs(
            "http://x/a",
            json!({"include": [{"valueSet": ["http://x/b"]}, {"system": CS, "concept": [{"code": "dog"}]}]}),
        ),
        vs(
            "http://x/b",
            json!({"include": [{"valueSet": ["http://x/a"]}]}),
        ),
    ]);
    std::thread::scope(|s| {
        for i in 0..4 {
            let t = &t;
            s.spawn(move || {
                let (first, second) = if i % 2 == 0 {
                    ("http://x/a", "http://x/b")
                } else {
                    ("http://x/b", "http://x/a")
                };
                let _ = t.check_code(first, Some(CS), "cat");
                let _ = t.check_code(second, Some(CS), "cat");
                assert!(t.check_code("http://x/a", Some(CS), "dog").is_member());
            });
        }
    });
}

#[test]
fn supplements_never_shadow_or_add_codes() {
    let t = store(&[
        json!({"resourceType": "CodeSystem", "url": CS, "version": "9.9.9", "status": "active", "content": "supplement",
               "supplements": CS, "concept": [{"code": "dog"}, {"code": "griffin"}]}),
        json!({"resourceType": "CodeSystem", "url": "http://x/empty", "status": "active", "content": "complete"}),
        vs("http://x/all", json!({"include": [{"system": CS}]})),
        vs(
            "http://x/empty-all",
            json!({"include": [{"system": "http://x/empty"}]}),
        ),
    ]);
    assert!(member(t.check_code("http://x/all", Some(CS), "dog")));
    assert!(not_member(&t.check_code(
        "http://x/all",
        Some(CS),
        "griffin"
    )));
    assert_eq!(t.display(CS, "dog"), Some("Dog"));
    let r = unknown_reason(t.check_code("http://x/empty-all", Some("http://x/empty"), "a"));
    assert!(r.contains("no concepts"), "{r}");
}

/// Every member of a real-looking resource replaced by values of the wrong shape: `add` may
/// reject, checks may say anything, nothing panics.
#[test]
fn wrong_shapes_never_panic() {
    let base = vs(
        "http://x/shape",
        json!({"inactive": false, "include": [{"system": CS, "version": "1.0.0", "concept": [{"code": "dog"}],
            "filter": [{"property": "concept", "op": "is-a", "value": "mammal"}], "valueSet": ["http://x/shape"]}],
            "exclude": [{"system": CS, "concept": [{"code": "cat"}]}]}),
    );
    let oddities = [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({}),
        json!([1, "a", null]),
        json!(true),
    ];
    let mut paths: Vec<Vec<String>> = Vec::new();
    fn collect(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(o) => {
                for (k, child) in o {
                    path.push(k.clone());
                    out.push(path.clone());
                    collect(child, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(i.to_string());
                    out.push(path.clone());
                    collect(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    for resource in [base, animals()] {
        collect(&resource, &mut Vec::new(), &mut paths);
        for path in &paths {
            for odd in &oddities {
                let mut r = resource.clone();
                let mut slot = &mut r;
                for key in path {
                    slot = match slot {
                        Value::Object(o) => o.get_mut(key).expect("path"),
                        Value::Array(a) => a
                            .get_mut(key.parse::<usize>().expect("index"))
                            .expect("path"),
                        _ => unreachable!(),
                    };
                }
                *slot = odd.clone();
                let mut t = store(&[]);
                if t.add(&r).is_ok() {
                    for code in ["dog", "cat", "DOG", ""] {
                        let _ = t.check_code("http://x/shape", Some(CS), code);
                        let _ = t.check_code("http://x/shape", None, code);
                        let _ = t.check_in_code_system(CS, code);
                        let _ = t.display(CS, code);
                    }
                    let _ = t.value_set_status("http://x/shape");
                }
                let _ = compact(&r);
            }
        }
        paths.clear();
    }
}

#[test]
fn import_clique_stays_cheap() {
    let n = 20;
    let urls: Vec<String> = (0..n).map(|i| format!("http://x/k{i}")).collect();
    let resources: Vec<Value> = (0..n)
        .map(|i| {
            let others: Vec<&String> = urls.iter().filter(|u| **u != urls[i]).collect();
            vs(&urls[i], json!({"include": [{"valueSet": others}, {"system": CS, "concept": [{"code": "dog"}]}]}))
        })
        .collect();
    let t = store(&resources);
    let start = std::time::Instant::now();
    for url in &urls {
        assert!(t.check_code(url, Some(CS), "dog").is_member());
        unknown_reason(t.check_code(url, Some(CS), "cat"));
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    println!("20-clique: {:?}", start.elapsed());
}

#[test]
fn canonicals_split_at_the_last_bar() {
    use super::split_canonical;
    assert_eq!(split_canonical("http://x/vs"), ("http://x/vs", None));
    assert_eq!(
        split_canonical("http://x/vs|4.0.1"),
        ("http://x/vs", Some("4.0.1"))
    );
    assert_eq!(split_canonical("http://x/vs|"), ("http://x/vs", None));
    assert_eq!(
        split_canonical("http://x/a|b|2"),
        ("http://x/a|b", Some("2"))
    );
    assert_eq!(split_canonical("|2"), ("", Some("2")));
    assert_eq!(split_canonical("æø|å"), ("æø", Some("å")));
}
