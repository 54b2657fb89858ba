//! Search: parameters, chains, includes, paging under writes, sorting, summaries, errors.

use serde_json::{json, Value};

use crate::helpers::{match_ids, next_link, TestApp};
use crate::on_both_backends;

const CPR: &str = "urn:oid:1.2.208.176.1.2";

/// A citizen with a rehabilitation plan, two goals and a temporary-stay encounter with a meeting.
async fn seed(app: &TestApp) -> (String, String, Vec<String>) {
    let patient = app
        .create(&json!({"resourceType": "Patient",
            "identifier": [{"system": CPR, "value": "0101451234"}],
            "name": [{"family": "Jørgensen", "given": ["Ebba"]}], "birthDate": "1945-01-01"}))
        .await;
    let pid = patient["id"].as_str().unwrap().to_string();
    let mut goals = Vec::new();
    for (text, due) in [
        ("Walk to the bakery", "2024-04-01"),
        ("Shower alone", "2024-05-01"),
    ] {
        let g = app
            .create(&json!({"resourceType": "Goal", "lifecycleStatus": "active",
                "description": {"text": text}, "subject": {"reference": format!("Patient/{pid}")},
                "target": [{"dueDate": due}]}))
            .await;
        goals.push(g["id"].as_str().unwrap().to_string());
    }
    let plan = app
        .create(&json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": format!("Patient/{pid}")},
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "736353004"}]}],
            "period": {"start": "2024-03-01", "end": "2024-05-15"},
            "goal": goals.iter().map(|g| json!({"reference": format!("Goal/{g}")})).collect::<Vec<_>>()}))
        .await;
    let stay = app
        .create(
            &json!({"resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": format!("Patient/{pid}")}, "period": {"start": "2024-03-01"}}),
        )
        .await;
    let stay_id = stay["id"].as_str().unwrap();
    app.create(&json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{pid}")}, "partOf": {"reference": format!("Encounter/{stay_id}")},
        "period": {"start": "2024-03-07T10:00:00+01:00", "end": "2024-03-07T11:00:00+01:00"}}))
        .await;
    (pid, plan["id"].as_str().unwrap().to_string(), goals)
}

async fn regions_find_a_citizens_plans_by_cpr_through_a_chain(app: TestApp) {
    let (_, plan, _) = seed(&app).await;
    app.create(
        &json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/someone-else"}}),
    )
    .await;
    let found = app
        .get_json(
            &format!("CarePlan?patient.identifier={CPR}|0101451234"),
            200,
        )
        .await;
    assert_eq!(match_ids(&found), vec![plan]);
    assert_eq!(found["total"], 1);
}

async fn token_reference_string_and_date_parameters_filter(app: TestApp) {
    let (pid, plan, goals) = seed(&app).await;
    let ids = |b: &Value| match_ids(b);
    assert_eq!(
        ids(&app
            .get_json(&format!("CarePlan?subject=Patient/{pid}"), 200)
            .await),
        vec![plan.clone()]
    );
    assert_eq!(
        ids(&app.get_json(&format!("CarePlan?patient={pid}"), 200).await),
        vec![plan.clone()]
    );
    assert_eq!(
        ids(&app
            .get_json(
                "CarePlan?status=active&category=http://snomed.info/sct|736353004",
                200
            )
            .await),
        vec![plan.clone()]
    );
    assert!(ids(&app.get_json("CarePlan?status=completed", 200).await).is_empty());
    assert_eq!(
        ids(&app
            .get_json(&format!("CarePlan?goal=Goal/{}", goals[1]), 200)
            .await),
        vec![plan.clone()]
    );
    assert_eq!(
        ids(&app
            .get_json("CarePlan?date=ge2024-03-01&date=le2024-06-01", 200)
            .await),
        vec![plan.clone()]
    );
    assert!(ids(&app.get_json("CarePlan?date=gt2024-06-01", 200).await).is_empty());
    assert_eq!(
        ids(&app.get_json("Goal?target-date=lt2024-04-15", 200).await),
        vec![goals[0].clone()]
    );
    assert_eq!(
        ids(&app
            .get_json("Goal?lifecycle-status=active&_sort=-target-date", 200)
            .await),
        vec![goals[1].clone(), goals[0].clone()]
    );
    assert_eq!(
        ids(&app.get_json("Patient?name=jorg", 200).await),
        vec![pid.clone()]
    );
    assert_eq!(
        ids(&app.get_json("Patient?birthdate=1945", 200).await),
        vec![pid.clone()]
    );
    assert_eq!(
        ids(&app
            .get_json(&format!("Patient?identifier={CPR}|0101451234"), 200)
            .await),
        vec![pid.clone()]
    );
    assert_eq!(
        ids(&app.get_json("Encounter?class=AMB", 200).await).len(),
        1
    );
    assert_eq!(
        ids(&app.get_json("Encounter?status:not=finished", 200).await).len(),
        1
    );
    assert_eq!(
        ids(&app
            .get_json("Encounter?status=finished,in-progress", 200)
            .await)
        .len(),
        2
    );
    let lu = app
        .get_json("CarePlan?_lastUpdated=gt2000-01-01", 200)
        .await;
    assert_eq!(ids(&lu), vec![plan]);
}

async fn include_and_revinclude_add_the_related_resources(app: TestApp) {
    let (pid, plan, goals) = seed(&app).await;
    let b = app
        .get_json(
            &format!("CarePlan?_id={plan}&_include=CarePlan:goal&_include=CarePlan:subject"),
            200,
        )
        .await;
    let included: Vec<String> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(included.len(), 3, "{included:?}");
    assert!(included.contains(&format!("Patient/{pid}")));
    for g in &goals {
        assert!(included.contains(&format!("Goal/{g}")));
    }
    let stays = app
        .get_json("Encounter?class=IMP&_revinclude=Encounter:part-of", 200)
        .await;
    let modes: Vec<&str> = stays["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["search"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, vec!["match", "include"]);
}

async fn paging_links_stay_correct_while_data_is_written(app: TestApp) {
    for n in 0..7 {
        app.create(&json!({"resourceType": "Organization", "name": format!("Kommune {n}")}))
            .await;
    }
    let first = app.get_json("Organization?_count=3", 200).await;
    let mut seen = match_ids(&first);
    assert!(
        first.get("total").is_none(),
        "no free total while more pages follow"
    );
    let mut next = next_link(&first);
    // Writes between pages: a new resource (sorts after the cursor) and a deletion of one already seen.
    app.create(&json!({"resourceType": "Organization", "name": "Kommune new"}))
        .await;
    assert_eq!(
        app.delete(&format!("Organization/{}", seen[0]))
            .await
            .status()
            .as_u16(),
        204
    );
    while let Some(url) = next {
        let page = app.follow(&url).await;
        seen.extend(match_ids(&page));
        next = next_link(&page);
    }
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no resource appears twice");
    assert_eq!(
        seen.len(),
        8,
        "nothing skipped: 7 originals plus the new one"
    );
}

async fn sort_summary_count_and_elements(app: TestApp) {
    for name in ["Bravo", "alpha", "Charlie"] {
        app.create(&json!({"resourceType": "Organization", "name": name, "active": true}))
            .await;
    }
    let sorted = app.get_json("Organization?_sort=name", 200).await;
    let names: Vec<&str> = sorted["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alpha", "Bravo", "Charlie"]);
    let count = app.get_json("Organization?_summary=count", 200).await;
    assert_eq!(count["total"], 3);
    assert!(count.get("entry").is_none());
    let el = app
        .get_json("Organization?_elements=name&_count=1", 200)
        .await;
    let r = &el["entry"][0]["resource"];
    assert!(r.get("active").is_none());
    assert!(r.get("name").is_some());
    assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    // Sorted paging carries on after the cursor.
    let p1 = app.get_json("Organization?_sort=-name&_count=2", 200).await;
    let p2 = app.follow(&next_link(&p1).expect("next link")).await;
    assert_eq!(p2["entry"][0]["resource"]["name"], "alpha");
}

async fn unknown_parameters_are_reported_unless_lenient(app: TestApp) {
    let strict = app.get_json("CarePlan?colour=red&status=active", 400).await;
    assert_eq!(strict["issue"][0]["expression"][0], "colour=red");
    let res = app
        .client
        .get(app.url("CarePlan?colour=red&status=active"))
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let b: Value = res.json().await.unwrap();
    let outcome = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("outcome entry");
    assert_eq!(outcome["resource"]["issue"][0]["severity"], "warning");
    assert!(!b["link"][0]["url"].as_str().unwrap().contains("colour"));
    app.get_json("Goal?target-date=tomorrow", 400).await;
    app.get_json("CarePlan?_page=garbage", 400).await;
}

async fn has_finds_resources_by_what_refers_to_them(app: TestApp) {
    let (pid, plan, _) = seed(&app).await;
    // A second citizen with nothing pointing at them.
    let other = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Holm"}]}))
        .await;
    assert!(other["id"].is_string());
    let ids = |b: &Value| match_ids(b);
    let found = app
        .get_json("Patient?_has:CarePlan:subject:status=active", 200)
        .await;
    assert_eq!(ids(&found), vec![pid.clone()]);
    let found = app
        .get_json("Patient?_has:CarePlan:subject:status=revoked", 200)
        .await;
    assert!(ids(&found).is_empty(), "{found}");
    // Two at once are ANDed; alternatives inside one are ORed.
    let found = app
        .get_json(
            "Patient?_has:CarePlan:subject:status=revoked,active&_has:Goal:subject:lifecycle-status=active",
            200,
        )
        .await;
    assert_eq!(ids(&found), vec![pid.clone()]);
    let found = app
        .get_json(
            "Patient?_has:CarePlan:subject:status=active&_has:Goal:subject:lifecycle-status=cancelled",
            200,
        )
        .await;
    assert!(ids(&found).is_empty(), "{found}");
    // Nested: citizens with a stay that a finished meeting is part of; and a chain inside.
    let found = app
        .get_json(
            "Patient?_has:Encounter:subject:_has:Encounter:part-of:status=finished",
            200,
        )
        .await;
    assert_eq!(ids(&found), vec![pid.clone()]);
    let found = app
        .get_json(
            "Patient?_has:Encounter:subject:_has:Encounter:part-of:status=cancelled",
            200,
        )
        .await;
    assert!(ids(&found).is_empty(), "{found}");
    let found = app
        .get_json(
            "Patient?_has:CarePlan:subject:goal.lifecycle-status=active",
            200,
        )
        .await;
    assert_eq!(ids(&found), vec![pid.clone()]);
    // A deleted plan no longer matches (and the earlier page is not served from a cache).
    let res = app.delete(&format!("CarePlan/{plan}")).await;
    assert!(res.status().is_success(), "{}", res.status());
    let found = app
        .get_json("Patient?_has:CarePlan:subject:status=active", 200)
        .await;
    assert!(ids(&found).is_empty(), "{found}");
}

async fn has_errors_are_reported_at_the_parameter(app: TestApp) {
    for query in [
        "_has:Nonsense:subject:status=active",
        "_has:CarePlan:colour:status=active",
        "_has:CarePlan:status:status=active",
        "_has:CarePlan:subject=active",
        "_has:CarePlan:subject:colour=red",
        "_has:CarePlan:subject:date=yesterday",
        // Goal.subject never refers to an Encounter.
        "_has:Goal:subject:lifecycle-status=active",
    ] {
        let rtype = if query.starts_with("_has:Goal") {
            "Encounter"
        } else {
            "Patient"
        };
        let outcome = app.get_json(&format!("{rtype}?{query}"), 400).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["expression"][0], query, "{outcome}");
    }
}

/// `_has` tests the referring resources under the caller's visibility: another tenant's plan
/// pointing at a citizen does not make that citizen match.
async fn has_does_not_see_other_tenants_resources(app: TestApp) {
    use crate::tokens::token;
    let kolding = token("kolding", "system/*.cruds");
    let haderslev = token("haderslev", "system/*.cruds");
    let send = |method: reqwest::Method, path: String, tok: &str, body: Option<Value>| {
        let mut req = app.client.request(method, app.url(&path)).bearer_auth(tok);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        async move {
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, patient) = send(
        reqwest::Method::POST,
        "Patient".into(),
        &kolding,
        Some(json!({"resourceType": "Patient", "name": [{"family": "Kjær"}]})),
    )
    .await;
    assert_eq!(status, 201, "{patient}");
    let pid = patient["id"].as_str().expect("id").to_string();
    let plan = |status: &str| {
        json!({"resourceType": "CarePlan", "status": status, "intent": "plan",
            "subject": {"reference": format!("Patient/{pid}")}})
    };
    let (status, body) = send(
        reqwest::Method::POST,
        "CarePlan".into(),
        &haderslev,
        Some(plan("active")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let search = "Patient?_has:CarePlan:subject:status=active";
    // The development client sees every tenant: the row is there to be found.
    assert_eq!(
        match_ids(&app.get_json(search, 200).await),
        vec![pid.clone()]
    );
    let (status, page) = send(reqwest::Method::GET, search.into(), &kolding, None).await;
    assert_eq!(status, 200);
    assert!(
        match_ids(&page).is_empty(),
        "Haderslev's plan leaked: {page}"
    );
    let (_, page) = send(reqwest::Method::GET, search.into(), &haderslev, None).await;
    assert!(
        match_ids(&page).is_empty(),
        "Kolding's patient leaked: {page}"
    );
    // Kolding's own plan does count.
    let (status, body) = send(
        reqwest::Method::POST,
        "CarePlan".into(),
        &kolding,
        Some(plan("active")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, page) = send(reqwest::Method::GET, search.into(), &kolding, None).await;
    assert_eq!(match_ids(&page), vec![pid]);
}

on_both_backends!(
    regions_find_a_citizens_plans_by_cpr_through_a_chain,
    token_reference_string_and_date_parameters_filter,
    include_and_revinclude_add_the_related_resources,
    paging_links_stay_correct_while_data_is_written,
    sort_summary_count_and_elements,
    unknown_parameters_are_reported_unless_lenient,
    has_finds_resources_by_what_refers_to_them,
    has_errors_are_reported_at_the_parameter,
    has_does_not_see_other_tenants_resources,
);
