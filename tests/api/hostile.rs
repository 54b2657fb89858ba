//! Hostile bytes at the edge (issue 20, items 9 and "also found"): control characters in
//! strings and search values, duplicate JSON keys, foreign charsets, ids of dots only and
//! decimals beyond a double. Each must be refused before anything reaches storage.

use reqwest::header::CONTENT_TYPE;
use sektorbro::config::ValidationMode;
use serde_json::{json, Value};

use crate::helpers::{error_locations, match_ids, spawn_app_with, Db, TestApp};
use crate::on_both_backends;

async fn post_text(app: &TestApp, path: &str, content_type: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header(CONTENT_TYPE, content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request")
}

async fn outcome(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    let oo: Value = res.json().await.expect("an OperationOutcome");
    assert_eq!(oo["resourceType"], "OperationOutcome", "{oo}");
    oo
}

/// NUL and other control characters: 422 with the location, in every validation mode (with
/// validation off the check at the body still holds), and nothing stored on either database.
async fn control_characters_are_422_in_every_mode(db: Db) {
    for mode in [ValidationMode::Enforce, ValidationMode::Off] {
        let Some(app) = spawn_app_with(db, |c| c.validation.mode = mode).await else {
            return;
        };
        let body = r#"{"resourceType":"Patient","name":[{"family":"a\u0000b","given":["ok","x\u001b"],"prefix":["\f"],"suffix":["x\by"]}]}"#;
        let oo = outcome(
            post_text(&app, "Patient", "application/fhir+json", body).await,
            422,
        )
        .await;
        let at = error_locations(&oo);
        assert!(at.contains(&"Patient.name[0].family"), "{mode:?}: {oo}");
        assert!(at.contains(&"Patient.name[0].given[1]"), "{mode:?}: {oo}");
        // the short escapes \f and \b too (a fuzzing find)
        assert!(at.contains(&"Patient.name[0].prefix[0]"), "{mode:?}: {oo}");
        assert!(at.contains(&"Patient.name[0].suffix[0]"), "{mode:?}: {oo}");
        // inside a transaction too
        let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":
            {"resourceType":"Patient","name":[{"text":"\u0001"}]},"request":{"method":"POST","url":"Patient"}}]}"#;
        let oo = outcome(
            post_text(&app, "", "application/fhir+json", bundle).await,
            422,
        )
        .await;
        assert!(
            error_locations(&oo).contains(&"Bundle.entry[0].resource.name[0].text"),
            "{mode:?}: {oo}"
        );
        // an escaped backslash before "u0000" is text, not a control character
        let fine = r#"{"resourceType":"Patient","name":[{"family":"a\\u0000b\tc"}]}"#;
        let res = post_text(&app, "Patient", "application/fhir+json", fine).await;
        assert_eq!(res.status().as_u16(), 201, "{mode:?}");
        assert_eq!(match_ids(&app.get_json("Patient", 200).await).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_422_in_every_mode_sqlite() {
    control_characters_are_422_in_every_mode(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_422_in_every_mode_postgres() {
    control_characters_are_422_in_every_mode(Db::Postgres).await;
}

async fn a_search_value_with_a_control_character_is_400_naming_the_parameter(app: TestApp) {
    for query in [
        "Patient?family=a%00b",
        "Patient?name=%1B",
        "Patient?_id=x&given=%07",
    ] {
        let oo = outcome(app.get(query).await, 400).await;
        let text = oo["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        let name = query
            .rsplit('&')
            .next()
            .and_then(|p| p.trim_start_matches("Patient?").split('=').next())
            .unwrap_or_default();
        assert!(text.contains(&format!("{name:?}")), "{query}: {text}");
        assert!(text.contains("control character"), "{text}");
    }
    // tab is allowed in FHIR strings, and so in search values
    assert_eq!(app.get("Patient?family=a%09b").await.status().as_u16(), 200);
}

async fn duplicate_json_keys_are_400(app: TestApp) {
    for body in [
        r#"{"resourceType":"Observation","resourceType":"Patient"}"#,
        r#"{"resourceType":"Patient","name":[{"family":"a","family":"b"}]}"#,
        r#"{"resourceType":"Patient","gender":"male","active":true,"gender":"female"}"#,
    ] {
        let oo = outcome(
            post_text(&app, "Patient", "application/fhir+json", body).await,
            400,
        )
        .await;
        let text = oo["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(text.contains("appears twice"), "{body}: {text}");
    }
    assert!(match_ids(&app.get_json("Patient", 200).await).is_empty());
}

async fn a_charset_other_than_utf8_is_415(app: TestApp) {
    let body = r#"{"resourceType":"Patient","name":[{"family":"S\u00f8rensen"}]}"#;
    for ct in [
        "application/fhir+json; charset=latin1",
        "application/fhir+json;charset=ISO-8859-1",
        "application/json; charset=\"utf-16\"",
    ] {
        outcome(post_text(&app, "Patient", ct, body).await, 415).await;
    }
    for ct in [
        "application/fhir+json; charset=utf-8",
        "application/fhir+json; charset=\"UTF-8\"",
        "application/fhir+json",
    ] {
        let res = post_text(&app, "Patient", ct, body).await;
        assert_eq!(res.status().as_u16(), 201, "{ct}");
    }
}

async fn ids_of_dots_only_are_refused(app: TestApp) {
    // `.` and `..` would be resolved by the HTTP client itself; `...` reaches the server as is
    // (the body's id is checked first: 422; the URL's alone would be 400)
    let res = app
        .put(
            "Patient/...",
            &json!({"resourceType": "Patient", "id": "..."}),
        )
        .await;
    let oo = outcome(res, 422).await;
    assert!(oo.to_string().contains("dots only"), "{oo}");
    let res = app
        .put(
            "Patient/...",
            &json!({"resourceType": "Patient", "id": "a"}),
        )
        .await;
    let status = res.status().as_u16();
    let oo: Value = res.json().await.unwrap();
    assert!(status == 400 || status == 422, "{status} {oo}");
    assert!(oo.to_string().contains("dots only"), "{oo}");
    for id in [".", "..", "..."] {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": id},
             "request": {"method": "PUT", "url": format!("Patient/{id}")}}]});
        let res = app.post("", &bundle).await;
        let status = res.status().as_u16();
        assert!(status == 400 || status == 422, "{id}: {status}");
        let oo: Value = res.json().await.unwrap();
        assert!(oo.to_string().contains("dots only"), "{id}: {oo}");
    }
    assert!(match_ids(&app.get_json("Patient", 200).await).is_empty());
    // dots among other characters are ordinary ids
    let res = app
        .put(
            "Patient/a.b",
            &json!({"resourceType": "Patient", "id": "a.b"}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 201);
}

async fn a_decimal_beyond_a_double_is_422(app: TestApp) {
    let body = r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},
        "valueQuantity":{"value":1e400}}"#;
    let oo = outcome(
        post_text(&app, "Observation", "application/fhir+json", body).await,
        422,
    )
    .await;
    assert_eq!(
        error_locations(&oo),
        ["Observation.value.ofType(Quantity).value"],
        "{oo}"
    );
}

on_both_backends!(
    a_search_value_with_a_control_character_is_400_naming_the_parameter,
    duplicate_json_keys_are_400,
    a_charset_other_than_utf8_is_415,
    ids_of_dots_only_are_refused,
    a_decimal_beyond_a_double_is_422,
);
