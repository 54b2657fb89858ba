//! `GET /console/audit?cpr=` (administrators): who accessed a citizen's data.

use super::*;
use crate::report::flows;
use fhir_core::fhir::ResourceType;

pub async fn audit(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
) -> HttpResponse {
    if let Some(refused) = admins_only(&state, &req, &ctx) {
        return refused;
    }
    let l = lang(&req);
    let title = l.t("Adgangslog", "Audit");
    let cpr = crate::api::reports::param(&ctx, "cpr").map(|c| c.trim().replace('-', ""));
    let form = html! {
        form.query method="get" action="/console/audit" {
            label { (l.t("Borgerens CPR-nummer", "The citizen's CPR number"))
                input name="cpr" value=(cpr.clone().unwrap_or_default()) inputmode="numeric" autocomplete="off" pattern="[0-9]{6}-?[0-9]{4}" required; }
            button type="submit" { (l.t("Søg", "Search")) }
        }
        p { (l.t("Søgningen bliver selv registreret i adgangsloggen.", "The search itself is recorded in the audit trail.")) }
    };
    let Some(cpr) = cpr else {
        return framed(&state, &req, Some(&ctx), title, Nav::Audit, 200, form);
    };
    if !(cpr.len() == 10 && cpr.bytes().all(|b| b.is_ascii_digit())) {
        let main = html! { (form) p.error role="alert" { (l.t("Et CPR-nummer har ti cifre.", "A CPR number has ten digits.")) } };
        return framed(&state, &req, Some(&ctx), title, Nav::Audit, 400, main);
    }
    // The audit trail stores the citizen as a Patient reference: find the citizen's Patient
    // resources first (AuditEvent search takes no chains), then their events.
    let patients = match state
        .engine
        .search_request(
            &ctx.access,
            ResourceType::PATIENT,
            &[
                ("identifier".to_string(), format!("{}|{cpr}", vocab::CPR)),
                ("_elements".to_string(), "id".to_string()),
            ],
            false,
            ctx.base(),
        )
        .await
    {
        Ok(b) => b,
        Err(e) => return error_page(&state, &req, &ctx, &e),
    };
    let patients: Value = serde_json::from_str(&patients).unwrap_or(Value::Null);
    let refs: Vec<String> = patients["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| e.pointer("/resource/id").and_then(Value::as_str))
                .map(|id| format!("Patient/{id}"))
                .collect()
        })
        .unwrap_or_default();
    let pairs = vec![
        (
            "patient".to_string(),
            if refs.is_empty() {
                // No such citizen here: a reference that matches nothing.
                "Patient/none".to_string()
            } else {
                refs.join(",")
            },
        ),
        ("_sort".to_string(), "-date".to_string()),
        ("_count".to_string(), "100".to_string()),
    ];
    let bundle = match state
        .engine
        .search_request(
            &ctx.access,
            ResourceType::AUDIT_EVENT,
            &pairs,
            false,
            ctx.base(),
        )
        .await
    {
        Ok(b) => b,
        Err(e) => return error_page(&state, &req, &ctx, &e),
    };
    let bundle: Value = serde_json::from_str(&bundle).unwrap_or(Value::Null);
    let events: Vec<&Value> = bundle["entry"]
        .as_array()
        .map(|es| es.iter().filter_map(|e| e.get("resource")).collect())
        .unwrap_or_default();
    let main = html! {
        (form)
        h2 { (flows::masked_cpr(&cpr)) ": " (events.len()) " " (l.t("hændelser", "events")) }
        table #audit-events {
            thead { tr {
                th scope="col" { (l.t("Tidspunkt", "When")) }
                th scope="col" { (l.t("Hvem", "Who")) }
                th scope="col" { (l.t("Handling", "Action")) }
                th scope="col" { (l.t("Hvad", "What")) }
                th scope="col" { (l.t("Udfald", "Outcome")) }
            } }
            tbody {
                @for ev in &events {
                    tr {
                        td { (ev["recorded"].as_str().unwrap_or("")) }
                        td { (who(ev)) }
                        td { (ev.pointer("/subtype/0/code").or_else(|| ev.pointer("/type/code")).and_then(Value::as_str).unwrap_or("")) " " (ev["action"].as_str().unwrap_or("")) }
                        td { (what(ev)) }
                        td { (ev["outcome"].as_str().unwrap_or("")) }
                    }
                }
            }
        }
    };
    framed(&state, &req, Some(&ctx), title, Nav::Audit, 200, main)
}

/// The requesting agent of an AuditEvent: its name, identifier or reference.
pub(super) fn who(ev: &Value) -> String {
    let agents = ev["agent"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let agent = agents
        .iter()
        .find(|a| a["requestor"].as_bool() == Some(true))
        .or_else(|| agents.first());
    agent
        .and_then(|a| {
            a.pointer("/who/display")
                .or_else(|| a.pointer("/who/identifier/value"))
                .or_else(|| a.pointer("/who/reference"))
                .or_else(|| a.get("name"))
                .and_then(Value::as_str)
        })
        .unwrap_or("")
        .to_string()
}

/// The entities an AuditEvent names, by reference (CPR numbers masked).
pub(super) fn what(ev: &Value) -> String {
    ev["entity"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| {
                    e.pointer("/what/reference")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            let id = e.pointer("/what/identifier");
                            match id.and_then(|i| i["system"].as_str()) {
                                Some(vocab::CPR) => {
                                    id.and_then(|i| i["value"].as_str()).map(flows::masked_cpr)
                                }
                                _ => None,
                            }
                        })
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
