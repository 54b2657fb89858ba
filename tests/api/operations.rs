//! Health, readiness, metrics, request ids and the CapabilityStatement.

use serde_json::{json, Value};

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
        [
            validate.clone(),
            (
                "process-message".to_string(),
                "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message".to_string(),
            ),
            (
                "export".to_string(),
                "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export".to_string(),
            ),
        ]
    );
    // Bulk Data export at the Patient and Group levels, with the IG's definitions.
    for (t, def) in [
        (
            "Patient",
            "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
        ),
        (
            "Group",
            "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
        ),
    ] {
        let r = resources.iter().find(|r| r["type"] == t).expect(t);
        assert!(
            ops(r).contains(&("export".to_string(), def.to_string())),
            "{t} lacks $export"
        );
    }
    // $validate is also served at the system level (`POST /fhir/$validate`).
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

/// A request for one claimed interaction, with the resource `id` where it needs one.
fn interaction_request(
    app: &TestApp,
    rtype: &str,
    id: &str,
    code: &str,
) -> reqwest::RequestBuilder {
    let body = json!({"resourceType": rtype, "id": id}).to_string();
    let c = &app.client;
    let json = |b: reqwest::RequestBuilder| {
        b.header("content-type", "application/fhir+json")
            .body(body.clone())
    };
    match code {
        "read" => c.get(app.url(&format!("{rtype}/{id}"))),
        "vread" => c.get(app.url(&format!("{rtype}/{id}/_history/1"))),
        "update" => json(c.put(app.url(&format!("{rtype}/{id}")))),
        "delete" => c.delete(app.url(&format!("{rtype}/{id}"))),
        "patch" => c
            .patch(app.url(&format!("{rtype}/{id}")))
            .header("content-type", "application/json-patch+json")
            .body("[]"),
        "history-instance" => c.get(app.url(&format!("{rtype}/{id}/_history"))),
        "history-type" => c.get(app.url(&format!("{rtype}/_history"))),
        "create" => json(c.post(app.url(rtype))),
        "search-type" => c.get(app.url(rtype)),
        other => panic!("a claimed interaction this test does not know: {other}"),
    }
}

/// Every interaction and operation the CapabilityStatement claims is served (answers anything but
/// 405 or a 404 for want of a route), and what it does not claim (writes of AuditEvent) is not.
async fn capability_claims_hold(app: TestApp) {
    let cs = app.get_json("metadata", 200).await;
    let rest = &cs["rest"][0];
    let mut checked = 0;
    for r in rest["resource"].as_array().unwrap() {
        let t = r["type"].as_str().unwrap();
        for i in r["interaction"].as_array().unwrap() {
            let code = i["code"].as_str().unwrap();
            let res = interaction_request(&app, t, "claim-1", code)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert_ne!(status, 405, "{t} claims {code}: {body}");
            assert!(
                !body.contains("no endpoint at"),
                "{t} claims {code} but has no route: {body}"
            );
            checked += 1;
        }
        for op in r["operation"].as_array().unwrap() {
            let name = op["name"].as_str().unwrap();
            let url = match name {
                "share" => app.url(&format!("{t}/claim-1/$share")),
                "export" if t == "Group" => app.url("Group/claim-1/$export"),
                _ => app.url(&format!("{t}/${name}")),
            };
            // Bulk Data kick-offs are GET (with Prefer: respond-async).
            let method = if name == "export" {
                reqwest::Method::GET
            } else {
                reqwest::Method::POST
            };
            let res = app
                .client
                .request(method, url)
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType": "Parameters"}).to_string())
                .send()
                .await
                .unwrap();
            assert_ne!(res.status().as_u16(), 405, "{t} claims ${name}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
    let audit = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .expect("AuditEvent is served");
    let codes: Vec<&str> = audit["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for write in ["create", "update", "patch", "delete"] {
        assert!(!codes.contains(&write), "AuditEvent claims {write}");
        let res = interaction_request(&app, "AuditEvent", "a1", write)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 405, "AuditEvent {write} is refused");
    }
    assert_eq!(audit["conditionalCreate"], false);
    let codes: Vec<&str> = rest["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["transaction", "batch", "history-system"]);
    let ops: Vec<&str> = rest["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["validate", "process-message", "export"]);
    assert_eq!(
        cs["instantiates"][0],
        "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
    );
    let res = app
        .client
        .post(app.url("$validate"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        200,
        "system-level $validate is served"
    );
    let patient = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    let revs = patient["searchRevInclude"].as_array().expect("revincludes");
    assert!(revs.iter().any(|r| r == "CarePlan:subject"), "{revs:?}");
    // `_has` is claimed where references can point, and every such reference answers it.
    let mut has = 0;
    for r in rest["resource"].as_array().unwrap() {
        let t = r["type"].as_str().unwrap();
        let claimed = r["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "_has" && p["type"] == "special");
        let revs: Vec<&str> = r["searchRevInclude"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(claimed, !revs.is_empty(), "{t}: _has claimed iff referable");
        for rev in revs {
            let (source, param) = rev.split_once(':').unwrap();
            let res = app
                .get(&format!("{t}?_has:{source}:{param}:_id=claim-1"))
                .await;
            let status = res.status().as_u16();
            assert_eq!(status, 200, "{t}?_has:{rev}: {}", res.text().await.unwrap());
            has += 1;
        }
    }
    assert!(has > 50, "{has}");
}

/// HEAD answers a read or search with its headers and no body; OPTIONS answers `Allow`; other
/// methods get 405 naming what the route answers.
async fn head_and_options(app: TestApp) {
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Head"}]}))
        .await;
    let id = p["id"].as_str().unwrap();
    let get = app.get(&format!("Patient/{id}")).await;
    let head = app
        .client
        .head(app.url(&format!("Patient/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["etag"], get.headers()["etag"]);
    assert_eq!(
        head.headers()["content-type"],
        get.headers()["content-type"]
    );
    assert!(head.bytes().await.unwrap().is_empty());
    let head = app
        .client
        .head(app.url("Patient?name=Head"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    let options = app
        .client
        .request(reqwest::Method::OPTIONS, app.url(&format!("Patient/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status().as_u16(), 204);
    assert_eq!(
        options.headers()["allow"],
        "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
    );
    let patch = app.client.patch(app.url("metadata")).send().await.unwrap();
    assert_eq!(patch.status().as_u16(), 405);
    let outcome: Value = patch.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
}

/// SMART Backend Services discover the token endpoint without credentials, at the root and at
/// the FHIR base; the CapabilityStatement names it too.
async fn smart_discovery_is_public(app: TestApp) {
    for url in [
        format!("{}/.well-known/smart-configuration", app.addr),
        app.url(".well-known/smart-configuration"),
    ] {
        let res = reqwest::get(&url).await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{url}");
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["token_endpoint"], crate::tokens::TOKEN_ENDPOINT);
        assert_eq!(doc["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["private_key_jwt"])
        );
        assert!(doc["scopes_supported"].as_array().unwrap().len() > 2);
        assert!(doc["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("client-confidential-asymmetric")));
    }
    let cs = app.get_json("metadata", 200).await;
    let ext = &cs["rest"][0]["security"]["extension"][0];
    assert_eq!(
        ext["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(
        ext["extension"][0]["valueUri"],
        crate::tokens::TOKEN_ENDPOINT
    );
}

on_both_backends!(
    capability_claims_hold,
    head_and_options,
    smart_discovery_is_public,
    health_readiness_and_metrics_answer,
    request_ids_are_echoed_or_assigned,
    capability_statement_lists_served_types_and_parameters,
);
