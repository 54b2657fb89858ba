//! Authentication, scopes and tenancy over HTTP, one negative test per rule: bad tokens (401),
//! insufficient scope (403), and another tenant's records answered as unknown (404) on read,
//! write, search, `_include`/`_revinclude`, history and transaction; a region reads a citizen's
//! records once a discharge note was addressed to it or the owner shared them; the admin
//! endpoints answer administrators only.

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Db, TestApp};
use crate::tokens::{self, claims, sign_with, token};

const ALL: &str = "system/*.cruds";

/// A request as `client`.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    tok: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = if path.starts_with('/') {
        format!("{}{path}", app.addr)
    } else {
        format!("{}/{path}", app.fhir)
    };
    let mut req = app.client.request(method, url).bearer_auth(tok);
    if let Some(b) = body {
        let ct = if path.starts_with("/municipal") {
            "application/json"
        } else {
            "application/fhir+json"
        };
        req = req.header(CONTENT_TYPE, ct).body(b.to_string());
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str, tok: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, path, tok, None).await
}

fn fixture(dir: &str, name: &str) -> Value {
    let path = format!("{}/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

/// Kolding's record stored by Kolding's client; its CarePlan and Patient ids.
async fn kolding_record(app: &TestApp) -> (String, String) {
    let kolding = token("kolding", ALL);
    let rec = fixture("municipal", "completed-discharged-home.json");
    let (status, body) = call(
        app,
        reqwest::Method::POST,
        "/municipal/v1/care-records",
        &kolding,
        Some(&rec),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let plan = body["carePlan"]
        .as_str()
        .or_else(|| {
            body["resources"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|r| r.starts_with("CarePlan/"))
        })
        .expect("care plan reference")
        .to_string();
    let (status, plan_json) = get(app, &plan, &kolding).await;
    assert_eq!(status, 200);
    let patient = plan_json["subject"]["reference"]
        .as_str()
        .expect("subject")
        .to_string();
    (plan, patient)
}

fn entries(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| {
                    let r = &e["resource"];
                    Some(format!(
                        "{}/{}",
                        r["resourceType"].as_str()?,
                        r["id"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn refused_tokens(app: TestApp) {
    let valid = claims("kolding", ALL);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = valid.clone();
        f(&mut c);
        sign_with(&json!({"alg": "ES256"}), &c, "ec-p256.key.pem")
    };
    let mut tampered = token("kolding", ALL);
    // Another payload under the same signature.
    let parts: Vec<&str> = tampered.split('.').collect();
    let other = with(&|c| c["sub"] = json!("ops"));
    let other_payload = other.split('.').nth(1).unwrap().to_string();
    tampered = format!("{}.{other_payload}.{}", parts[0], parts[2]);
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", with(&|c| c["exp"] = json!(tokens::now() - 600))),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(tokens::now() + 600)),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("https://elsewhere.test/fhir")),
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.test")),
        ),
        ("unknown client", with(&|c| c["sub"] = json!("stranger"))),
        ("bad signature", tampered),
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&valid)),
        ),
        (
            "HS256",
            format!(
                "{}.{}.c2lnbmF0dXJl",
                b64(&json!({"alg": "HS256"})),
                b64(&valid)
            ),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (name, tok) in cases {
        let res = app
            .client
            .get(format!("{}/CarePlan", app.fhir))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401, "{name}");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        let oo: Value = res.json().await.unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome", "{name}");
    }
    // No credentials at all.
    let res = reqwest::Client::new()
        .get(format!("{}/CarePlan", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    // Open: health and the CapabilityStatement.
    for open in ["/healthz", "/fhir/metadata"] {
        let res = reqwest::Client::new()
            .get(format!("{}{open}", app.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{open}");
    }
    // The valid token works.
    assert_eq!(get(&app, "CarePlan", &token("kolding", ALL)).await.0, 200);
}

async fn scopes_limit_interactions(app: TestApp) {
    // `narrow` may read and search CarePlans only (its ceiling), whatever its token asks for.
    let narrow = token("narrow", "system/*.cruds");
    assert_eq!(get(&app, "CarePlan", &narrow).await.0, 200);
    let (status, oo) = get(&app, "Patient", &narrow).await;
    assert_eq!(status, 403, "{oo}");
    assert!(oo["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("system/Patient.s"));
    let plan = json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/x"}});
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "CarePlan",
        &narrow,
        Some(&plan),
    )
    .await;
    assert_eq!(status, 403);
    // A token asking for less gets less: read-only Kolding cannot write.
    let reader = token("kolding", "system/*.rs");
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "CarePlan",
        &reader,
        Some(&plan),
    )
    .await;
    assert_eq!(status, 403);
    // Scopes apply inside transactions too.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": plan, "request": {"method": "POST", "url": "CarePlan"}}]});
    let (status, _) = call(&app, reqwest::Method::POST, "", &reader, Some(&tx)).await;
    assert_eq!(status, 403);
    // System history needs a scope on every type.
    assert_eq!(get(&app, "_history", &narrow).await.0, 403);
}

async fn other_tenants_records_are_unknown(app: TestApp) {
    let (plan, patient) = kolding_record(&app).await;
    let kolding = token("kolding", ALL);
    let haderslev = token("haderslev", ALL);

    // Read, vread, history: exactly as for an id that does not exist.
    let (status, mine) = get(&app, &plan, &kolding).await;
    assert_eq!(status, 200);
    let (status, theirs) = get(&app, &plan, &haderslev).await;
    assert_eq!(status, 404, "{theirs}");
    let missing = get(&app, "CarePlan/does-not-exist", &haderslev).await.1;
    assert_eq!(
        theirs["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .replace(&plan, "X"),
        missing["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .replace("CarePlan/does-not-exist", "X")
    );
    assert_eq!(
        get(&app, &format!("{plan}/_history/1"), &haderslev).await.0,
        404
    );
    assert_eq!(
        get(&app, &format!("{plan}/_history"), &haderslev).await.0,
        404
    );
    assert_eq!(get(&app, &patient, &haderslev).await.0, 404);

    // Search, including through chains, _include and _revinclude, and type history. Kolding's
    // page of the same search comes first: a cached page must not serve the other tenant.
    // (The record is its course's CarePlan and, as KL Common models them, one CarePlan per
    // planned intervention.)
    let (_, page) = get(&app, "CarePlan", &kolding).await;
    assert!(entries(&page).contains(&plan), "{page}");
    let (_, page) = get(&app, "CarePlan", &haderslev).await;
    assert!(entries(&page).is_empty(), "{page}");
    let (_, page) = get(&app, "Goal", &haderslev).await;
    assert!(entries(&page).is_empty());
    let cpr = "0101451234";
    let _ = cpr;
    let (_, page) = get(
        &app,
        "CarePlan?subject:Patient.gender=female,male,other,unknown",
        &haderslev,
    )
    .await;
    assert!(entries(&page).is_empty(), "{page}");
    let (_, page) = get(
        &app,
        "CarePlan?_include=CarePlan:subject&_revinclude=Provenance:target",
        &kolding,
    )
    .await;
    assert!(entries(&page).contains(&patient), "Kolding sees its own");
    // Haderslev stores its own CarePlan pointing at Kolding's patient: _include must not
    // bring Kolding's Patient along, nor _revinclude Kolding's Goals.
    let own = json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": patient}});
    let (status, created) = call(
        &app,
        reqwest::Method::POST,
        "CarePlan",
        &haderslev,
        Some(&own),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (_, page) = get(&app, "CarePlan?_include=CarePlan:subject", &haderslev).await;
    let seen = entries(&page);
    assert_eq!(seen.len(), 1, "only its own plan: {seen:?}");
    let (_, page) = get(&app, &format!("Goal?subject={patient}"), &haderslev).await;
    assert!(entries(&page).is_empty());
    let (_, page) = get(&app, "CarePlan/_history", &haderslev).await;
    assert_eq!(entries(&page).len(), 1);
    let (_, page) = get(&app, "Patient?_revinclude=CarePlan:subject", &haderslev).await;
    assert!(entries(&page).is_empty(), "{page}");

    // Writes: update and delete of another tenant's id change nothing.
    let mut changed = mine.clone();
    changed["status"] = json!("revoked");
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        &plan,
        &haderslev,
        Some(&changed),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, reqwest::Method::DELETE, &plan, &haderslev, None).await;
    assert_eq!(
        status, 204,
        "deleting what one cannot see is deleting nothing"
    );
    let (status, still) = get(&app, &plan, &kolding).await;
    assert_eq!(status, 200);
    assert_eq!(still["meta"]["versionId"], mine["meta"]["versionId"]);

    // Transaction and batch: the same rules per entry; a transaction fails whole.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": changed, "request": {"method": "PUT", "url": plan}}]});
    let (status, _) = call(&app, reqwest::Method::POST, "", &haderslev, Some(&tx)).await;
    assert_eq!(status, 404);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": plan}},
        {"request": {"method": "GET", "url": "CarePlan"}}]});
    let (status, res) = call(&app, reqwest::Method::POST, "", &haderslev, Some(&batch)).await;
    assert_eq!(status, 200);
    assert!(res["entry"][0]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("404"));
    let inner = &res["entry"][1]["resource"];
    assert_eq!(entries(inner).len(), 1, "its own plan only: {inner}");

    // The municipal endpoint: another municipality's record is neither posted nor read.
    let rec = fixture("municipal", "completed-discharged-home.json");
    let (status, oo) = call(
        &app,
        reqwest::Method::POST,
        "/municipal/v1/care-records",
        &haderslev,
        Some(&rec),
    )
    .await;
    assert_eq!(status, 403, "{oo}");
    let id = rec["recordId"].as_str().unwrap();
    let (status, _) = get(
        &app,
        &format!("/municipal/v1/care-records/{id}?municipality=0621"),
        &haderslev,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(
        &app,
        &format!("/municipal/v1/care-records/{id}?municipality=0621"),
        &kolding,
    )
    .await;
    assert_eq!(status, 200);
    // Regions do not post municipal records.
    let region = token("region-syd", ALL);
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/municipal/v1/care-records",
        &region,
        Some(&rec),
    )
    .await;
    assert_eq!(status, 403);

    // Administrators see everything.
    assert_eq!(get(&app, &plan, &token("ops", "system/*.*")).await.0, 200);
}

async fn a_share_lets_a_region_read_one_citizen(app: TestApp) {
    let (plan, patient) = kolding_record(&app).await;
    let kolding = token("kolding", ALL);
    let region = token("region-syd", "system/*.rs");
    assert_eq!(get(&app, &plan, &region).await.0, 404);
    let share = json!({"resourceType": "Parameters", "parameter": [
        {"name": "recipient", "valueIdentifier": {"system": tokens::SOR, "value": "328791000016006"}},
        {"name": "reason", "valueString": "follow-up after discharge"}]});
    // Only the owner can share.
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("{patient}/$share"),
        &token("haderslev", ALL),
        Some(&share),
    )
    .await;
    assert_eq!(status, 404);
    let (status, oo) = call(
        &app,
        reqwest::Method::POST,
        &format!("{patient}/$share"),
        &kolding,
        Some(&share),
    )
    .await;
    assert_eq!(status, 200, "{oo}");
    assert_eq!(get(&app, &plan, &region).await.0, 200);
    assert_eq!(get(&app, &patient, &region).await.0, 200);
    let (_, page) = get(&app, "Goal", &region).await;
    assert!(!entries(&page).is_empty());
    // Read only: the region cannot change what it was shared.
    let (_, mine) = get(&app, &plan, &kolding).await;
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        &plan,
        &token("region-syd", ALL),
        Some(&mine),
    )
    .await;
    assert!(status == 403 || status == 404, "{status}");
    // Another region still sees nothing.
    assert_eq!(
        get(&app, &plan, &token("region-nord", "system/*.rs"))
            .await
            .0,
        404
    );
    let (_, page) = get(&app, "CarePlan", &token("region-nord", "system/*.rs")).await;
    assert!(entries(&page).is_empty());
}

async fn admin_endpoints_answer_administrators_only(app: TestApp) {
    let (status, oo) = get(&app, "/admin/outbox", &token("kolding", ALL)).await;
    assert_eq!(status, 403, "{oo}");
    assert_eq!(
        get(&app, "/admin/caches", &token("region-syd", ALL))
            .await
            .0,
        403
    );
    assert_eq!(
        get(&app, "/admin/outbox", &token("ops", "system/*.*"))
            .await
            .0,
        200
    );
    let res = reqwest::Client::new()
        .get(format!("{}/admin/outbox", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
}

/// Every refusal leaves an AuditEvent (who, what, outcome) that administrators, and only they,
/// can search; nobody can change or delete one through the API.
async fn refusals_are_audited_and_the_audit_log_is_for_admins(app: TestApp) {
    let (plan, _) = kolding_record(&app).await;
    let unauthenticated = reqwest::Client::new()
        .get(format!("{}/CarePlan", app.fhir))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    assert_eq!(get(&app, "Patient", &token("narrow", ALL)).await.0, 403);
    assert_eq!(get(&app, &plan, &token("haderslev", ALL)).await.0, 404);

    let ops = token("ops", "system/*.*");
    let find = |query: String| {
        let app = &app;
        let ops = ops.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let (status, page) = get(app, &query, &ops).await;
                assert_eq!(status, 200, "{page}");
                let found: Vec<Value> = page["entry"]
                    .as_array()
                    .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
                    .unwrap_or_default();
                if !found.is_empty() || std::time::Instant::now() > deadline {
                    return found;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let cross = find(format!("AuditEvent?altid=haderslev&entity={plan}")).await;
    assert!(!cross.is_empty(), "the cross-tenant read is audited");
    assert!(cross.iter().all(|e| e["outcome"] == "4"), "{cross:?}");
    let scope = find("AuditEvent?altid=narrow&outcome=4".into()).await;
    assert!(!scope.is_empty(), "the scope refusal is audited");
    let refused = find("AuditEvent?outcome=4&_count=200".into()).await;
    assert!(
        refused.iter().any(|e| e["agent"]
            .as_array()
            .is_some_and(|agents| agents.iter().all(|a| a.get("altId").is_none()))),
        "the unauthenticated request is audited without a client"
    );
    let mine = find("AuditEvent?altid=kolding&outcome=0".into()).await;
    assert!(!mine.is_empty(), "successes are audited too");

    // The audit log is for administrators, and nobody writes it through the API.
    assert_eq!(get(&app, "AuditEvent", &token("kolding", ALL)).await.0, 403);
    let id = mine[0]["id"].as_str().unwrap();
    let (status, _) = get(&app, &format!("AuditEvent/{id}"), &token("kolding", ALL)).await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("AuditEvent/{id}"),
        &ops,
        None,
    )
    .await;
    assert_eq!(status, 405);
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        &format!("AuditEvent/{id}"),
        &ops,
        Some(&mine[0]),
    )
    .await;
    assert_eq!(status, 405);
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "AuditEvent",
        &ops,
        Some(&mine[0]),
    )
    .await;
    assert_eq!(status, 405);
    let (status, read) = get(&app, &format!("AuditEvent/{id}"), &ops).await;
    assert_eq!(status, 200);
    assert_eq!(read["meta"]["versionId"], "1");
}

crate::on_both_backends!(
    refusals_are_audited_and_the_audit_log_is_for_admins,
    refused_tokens,
    scopes_limit_interactions,
    other_tenants_records_are_unknown,
    a_share_lets_a_region_read_one_citizen,
    admin_endpoints_answer_administrators_only,
);

/// A discharge note addressed to a region lets that region read the citizen's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discharge_note_lets_its_receiver_read_the_record() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let receiver = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let base = format!("{}/fhir", receiver.uri());
    let app = spawn_app_with(Db::Sqlite, move |c| {
        crate::forwarding::fast(c);
        c.forwarding.destinations = vec![crate::forwarding::destination(
            "region-syddanmark",
            &base,
            &["328791000016006"],
        )];
    })
    .await
    .expect("app");
    let (plan, _) = kolding_record(&app).await;
    let region = token("region-syd", "system/*.rs");
    assert_eq!(get(&app, &plan, &region).await.0, 404);
    let note = fixture("discharge", "kolding-discharged-home.json");
    // Another municipality cannot send Kolding's note: for it, the record does not exist.
    let (status, oo) = call(
        &app,
        reqwest::Method::POST,
        "/municipal/v1/discharge-notes",
        &token("haderslev", ALL),
        Some(&note),
    )
    .await;
    assert_eq!(status, 422, "{oo}");
    assert_eq!(oo["issue"][0]["expression"][0], "$.careRecord");
    // Nor can the region it is addressed to.
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/municipal/v1/discharge-notes",
        &region,
        Some(&note),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/municipal/v1/discharge-notes",
        &token("kolding", ALL),
        Some(&note),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = get(&app, &plan, &region).await;
    assert_eq!(status, 200);
    let composition = body["composition"].as_str().unwrap();
    assert_eq!(get(&app, composition, &region).await.0, 200);
    assert_eq!(
        get(&app, &plan, &token("region-nord", "system/*.rs"))
            .await
            .0,
        404
    );
}
