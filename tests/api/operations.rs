//! Health, readiness, metrics, request ids and the CapabilityStatement.

use serde_json::Value;

use crate::helpers::TestApp;
use crate::on_both_backends;

async fn health_readiness_and_metrics_answer(app: TestApp) {
    let h = app
        .client
        .get(format!("{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status().as_u16(), 200);
    let r: Value = app
        .client
        .get(format!("{}/readyz", app.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready");
    app.get("Patient/nope").await;
    let m = app
        .client
        .get(format!("{}/metrics", app.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("sektorbro_http_requests_total{route=\"/fhir/{type}/{id}\",method=\"GET\",status=\"404\"} 1"), "{m}");
    assert!(m.contains("sektorbro_http_request_duration_seconds_bucket"));
}

async fn request_ids_are_echoed_or_assigned(app: TestApp) {
    let res = app
        .client
        .get(app.url("metadata"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .client
        .get(app.url("metadata"))
        .header("x-request-id", "bad id; DROP")
        .send()
        .await
        .unwrap();
    let assigned = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(assigned.len(), 36, "a generated uuid replaces an unsafe id");
}

async fn capability_statement_lists_served_types_and_parameters(app: TestApp) {
    let cs = app.get_json("metadata", 200).await;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    // How to authenticate is part of the statement, and the statement is valid R4.
    assert_eq!(
        cs["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
    let v = fhir_core::validation::Validator::shared_r4().expect("definitions");
    let errors: Vec<_> = v
        .validate(&cs, &[])
        .into_iter()
        .filter(|i| i.severity == fhir_core::fhir::outcome::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    // The operations the routes serve, each with its definition.
    let ops = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["operation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let s = |k: &str| o[k].as_str().unwrap().to_string();
                (s("name"), s("definition"))
            })
            .collect()
    };
    let validate = (
        "validate".to_string(),
        "http://hl7.org/fhir/OperationDefinition/Resource-validate".to_string(),
    );
    let share = (
        "share".to_string(),
        sektorbro::api::fhir::metadata::PATIENT_SHARE.to_string(),
    );
    for r in resources {
        let ops = ops(r);
        assert!(ops.contains(&validate), "{} lacks $validate", r["type"]);
        assert_eq!(
            ops.contains(&share),
            r["type"] == "Patient",
            "{}",
            r["type"]
        );
    }
    assert_eq!(
        ops(&cs["rest"][0]),
        [(
            "process-message".to_string(),
            "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message".to_string()
        )]
    );
    // Our own operation is published as a valid OperationDefinition at that canonical.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/operations/OperationDefinition-Patient-share.json"
    );
    let def: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(def["url"], sektorbro::api::fhir::metadata::PATIENT_SHARE);
    let problems: Vec<_> = v
        .validate(&def, &[])
        .into_iter()
        .filter(|i| i.severity <= fhir_core::fhir::outcome::Severity::Warning)
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let careplan = resources
        .iter()
        .find(|r| r["type"] == "CarePlan")
        .expect("CarePlan");
    let params: Vec<&str> = careplan["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "_id",
        "_lastUpdated",
        "patient",
        "subject",
        "goal",
        "care-team",
        "status",
        "category",
        "date",
        "identifier",
    ] {
        assert!(params.contains(&p), "CarePlan lacks {p}");
    }
    assert!(careplan["searchInclude"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == "CarePlan:goal"));
    for t in [
        "Patient",
        "Organization",
        "Encounter",
        "Goal",
        "Task",
        "Bundle",
        "MessageHeader",
        "Provenance",
    ] {
        assert!(resources.iter().any(|r| r["type"] == t), "{t} missing");
    }
}

on_both_backends!(
    health_readiness_and_metrics_answer,
    request_ids_are_echoed_or_assigned,
    capability_statement_lists_served_types_and_parameters,
);
