//! No input may panic the validator. cargo-fuzz (fuzz/, nightly) explores freely; this runs on
//! stable in every `cargo test`: thousands of deterministic mutations of valid resources (values
//! replaced by every JSON kind, keys dropped and renamed, arrays and objects swapped, nesting)
//! validated against the base and our profile.

use serde_json::{json, Value};

use crate::validator;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn junk(r: &mut Rng) -> Value {
    match r.below(12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1e308),
        4 => json!(""),
        5 => json!("   "),
        6 => json!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>"),
        7 => json!([]),
        8 => json!({}),
        9 => json!([null, {}, "x"]),
        10 => json!({"resourceType": "Patient", "contained": [{"resourceType": "Bundle"}]}),
        _ => json!("urn:uuid:ZZZ|#%&"),
    }
}

fn mutate(v: &mut Value, r: &mut Rng, depth: usize) {
    if depth > 12 {
        return;
    }
    match v {
        Value::Object(o) if !o.is_empty() => {
            let keys: Vec<String> = o.keys().cloned().collect();
            let k = &keys[r.below(keys.len())];
            match r.below(6) {
                0 => {
                    o.remove(k);
                }
                1 => {
                    let val = o.remove(k).unwrap_or(Value::Null);
                    o.insert(format!("_{k}"), val);
                }
                2 => {
                    o.insert(k.clone(), junk(r));
                }
                3 => {
                    let val = o.remove(k).unwrap_or(Value::Null);
                    o.insert(k.clone(), json!([val]));
                }
                _ => {
                    if let Some(child) = o.get_mut(k) {
                        mutate(child, r, depth + 1);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = r.below(a.len());
            if r.below(3) == 0 {
                a[i] = junk(r);
            } else {
                mutate(&mut a[i], r, depth + 1);
            }
        }
        other => *other = junk(r),
    }
}

#[test]
fn mutated_resources_never_panic() {
    let seeds = [
        json!({"resourceType": "CarePlan", "meta": {"profile": ["http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careplan"]},
            "extension": [{"url": "http://sektorbro.dk/fhir/StructureDefinition/rehab-phase", "valueCode": "assessment"}],
            "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "f-1"}],
            "status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"},
            "period": {"start": "2026-11-01"}, "author": {"reference": "Organization/o1"},
            "contained": [{"resourceType": "Goal", "id": "g", "lifecycleStatus": "active", "description": {"text": "gå"}, "subject": {"reference": "#"}}],
            "goal": [{"reference": "#g"}],
            "activity": [{"detail": {"status": "in-progress", "scheduledTiming": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "wk"}}}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "resource": {"resourceType": "Patient",
                "name": [{"given": ["A", null], "_given": [null, {"extension": [{"url": "http://x", "valueString": "y"}]}]}],
                "birthDate": "1948-03-01"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]},
                "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120}}]},
             "request": {"method": "POST", "url": "Observation"}}]}),
    ];
    let v = validator();
    let mut r = Rng(0x05ee_db40);
    let mut runs = 0;
    for seed in &seeds {
        for _ in 0..1500 {
            let mut m = seed.clone();
            for _ in 0..=r.below(4) {
                mutate(&mut m, &mut r, 0);
            }
            let _ = v.validate(&m, &[]);
            runs += 1;
        }
    }
    // Deep nesting: far past the walk's depth limit.
    let mut deep = json!({"text": "x"});
    for _ in 0..300 {
        deep = json!({"extension": [{"url": "http://x", "valueCodeableConcept": deep}]});
    }
    let _ = v.validate(
        &json!({"resourceType": "Patient", "maritalStatus": deep}),
        &[],
    );
    let mut nested = json!({"resourceType": "Patient"});
    for _ in 0..300 {
        nested = json!({"resourceType": "Patient", "contained": [nested]});
    }
    let _ = v.validate(&nested, &[]);
    assert!(runs >= 3000);
}
