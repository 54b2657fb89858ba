//! Any bytes: if they parse as JSON, validating them must not panic (or overflow the stack).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use fhir_core::validation::Validator;

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| Validator::r4().expect("embedded definitions"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = validator().validate(&v, &[]);
        let _ = validator().validate(
            &v,
            &["http://sektorbro.dk/fhir/StructureDefinition/sektorbro-careplan".to_string()],
        );
    }
});
