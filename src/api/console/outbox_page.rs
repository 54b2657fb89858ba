//! `GET /console/outbox` and its retry and discard actions (administrators).

use super::*;

pub(super) fn status_label(l: Lang, s: JobStatus) -> &'static str {
    match s {
        JobStatus::Pending => l.t("Venter", "Pending"),
        JobStatus::InFlight => l.t("Under afsendelse", "In flight"),
        JobStatus::Delivered => l.t("Leveret", "Delivered"),
        JobStatus::Dead => l.t("Død", "Dead"),
        JobStatus::Discarded => l.t("Kasseret", "Discarded"),
    }
}

pub(super) fn breaker_label(l: Lang, b: u8) -> (&'static str, &'static str) {
    match b {
        0 => (l.t("Lukket (leverer)", "Closed (delivering)"), "status-ok"),
        1 => (l.t("Åben (holder pause)", "Open (pausing)"), "status-bad"),
        _ => (
            l.t("Halvåben (prøver)", "Half-open (probing)"),
            "status-warn",
        ),
    }
}

pub async fn outbox(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
) -> HttpResponse {
    if let Some(refused) = admins_only(&state, &req, &ctx) {
        return refused;
    }
    let l = lang(&req);
    let result = async {
        let overview = state.forwarder.overview().await?;
        let dead = state.forwarder.jobs(Some(JobStatus::Dead), 0, 100).await?;
        Ok::<_, FhirError>((overview, dead))
    }
    .await;
    let (overview, dead) = match result {
        Ok(r) => r,
        Err(e) => return error_page(&state, &req, &ctx, &e),
    };
    let csrf = csrf(&state, &req).unwrap_or_default();
    let count = |jobs: &[(JobStatus, i64)], s: JobStatus| {
        jobs.iter()
            .filter(|(j, _)| *j == s)
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    let done = crate::api::reports::param(&ctx, "done");
    let main = html! {
        @if let Some(d) = done {
            p.notice role="status" #done { (d) }
        }
        h2 { (l.t("Modtagere", "Destinations")) }
        table #destinations {
            thead { tr {
                th scope="col" { (l.t("Modtager", "Destination")) }
                th.num scope="col" { (status_label(l, JobStatus::Pending)) }
                th.num scope="col" { (status_label(l, JobStatus::InFlight)) }
                th.num scope="col" { (status_label(l, JobStatus::Dead)) }
                th scope="col" { (l.t("Afbryder", "Breaker")) }
            } }
            tbody {
                @for d in &overview {
                    @let (b, class) = breaker_label(l, d.breaker);
                    tr data-destination=(d.id) {
                        th scope="row" { (d.id) }
                        td.num data-status="pending" { (count(&d.jobs, JobStatus::Pending)) }
                        td.num data-status="in-flight" { (count(&d.jobs, JobStatus::InFlight)) }
                        td.num data-status="dead" { (count(&d.jobs, JobStatus::Dead)) }
                        td { span class=(class) { (b) } }
                    }
                }
            }
        }
        h2 { (l.t("Døde breve", "Dead letters")) }
        @if dead.is_empty() {
            p #no-dead { (l.t("Ingen døde breve.", "No dead letters.")) }
        }
        @for j in &dead {
            @let action = |what: &str| format!("/console/outbox/{}/{what}", encode(&j.message_id));
            section.dead data-message-id=(j.message_id) {
                h3 { code { (j.message_id) } " → " (j.destination) }
                p {
                    (l.t("Afsender", "Sender")) ": " (j.sender) " · "
                    (l.t("Forsøg", "Attempts")) ": " (j.attempts)
                    @if let Some(s) = j.last_status { " · HTTP " (s) }
                }
                @if let Some(e) = &j.last_error { p { (l.t("Fejl", "Error")) ": " (e) } }
                @if let Some(o) = &j.receiver_outcome {
                    (receiver_outcome(l, o))
                }
                form method="post" action=(action("retry")) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="sender" value=(j.sender);
                    button type="submit" { (l.t("Prøv igen", "Retry")) }
                }
                " "
                form method="post" action=(action("discard"))
                    data-confirm=(l.t("Kassér brevet? Det sendes ikke.", "Discard the letter? It will not be sent.")) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="sender" value=(j.sender);
                    button.danger type="submit" { (l.t("Kassér", "Discard")) }
                }
            }
        }
    };
    framed(
        &state,
        &req,
        Some(&ctx),
        l.t("Udbakke", "Outbox"),
        Nav::Outbox,
        200,
        main,
    )
}

/// The receiver's OperationOutcome, issue by issue (or its text when it is not one).
pub(super) fn receiver_outcome(l: Lang, text: &str) -> Markup {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let issues = parsed
        .as_ref()
        .and_then(|v| v.get("issue"))
        .and_then(Value::as_array);
    html! {
        div.receiver-outcome {
            p { (l.t("Modtagerens svar", "The receiver's answer")) ":" }
            @match issues {
                Some(list) => { ul.outcome {
                    @for i in list {
                        li {
                            strong { (i["severity"].as_str().unwrap_or("")) } " "
                            code { (i["code"].as_str().unwrap_or("")) } " "
                            (i["diagnostics"].as_str().or_else(|| i.pointer("/details/text").and_then(Value::as_str)).unwrap_or(""))
                            @if let Some(x) = i["expression"].as_array().and_then(|x| x.first()).and_then(Value::as_str) {
                                " (" code { (x) } ")"
                            }
                        }
                    }
                } }
                None => { pre { (text) } }
            }
        }
    }
}

pub(super) async fn act(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
    path: web::Path<String>,
    body: RawBody,
    action: DeadAction,
) -> HttpResponse {
    if let Some(refused) = admins_only(&state, &req, &ctx) {
        return refused;
    }
    let l = lang(&req);
    let Some(form) = csrf_checked(&state, &req, &body.0) else {
        return framed(
            &state,
            &req,
            Some(&ctx),
            l.t("Afvist", "Refused"),
            Nav::Outbox,
            403,
            html! { p.error role="alert" { (l.t("Formularen er udløbet; åbn siden igen.", "The form has expired; open the page again.")) } },
        );
    };
    let id = path.into_inner();
    match state
        .forwarder
        .act_on_dead(&id, form.sender.as_deref(), action)
        .await
    {
        Ok(job) => {
            let done = format!(
                "{} {}: {}",
                job.message_id,
                l.t("er nu", "is now"),
                status_label(l, job.status)
            );
            HttpResponse::SeeOther()
                .insert_header((
                    header::LOCATION,
                    format!("/console/outbox?done={}", encode(&done)),
                ))
                .finish()
        }
        Err(e) => error_page(&state, &req, &ctx, &e),
    }
}

pub async fn outbox_retry(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
    path: web::Path<String>,
    body: RawBody,
) -> HttpResponse {
    act(state, req, ctx, path, body, DeadAction::Retry).await
}

pub async fn outbox_discard(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
    path: web::Path<String>,
    body: RawBody,
) -> HttpResponse {
    act(state, req, ctx, path, body, DeadAction::Discard).await
}
