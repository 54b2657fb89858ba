//! `/console`: the operations console, server-rendered HTML (maud) with one small vendored
//! script and SVG charts; no JavaScript build chain (docs/console.md).
//!
//! - `GET /console/sign-in`, `POST /console/sign-in` (a bearer token: the development token or a
//!   client's JWT) → a signed `HttpOnly; Secure; SameSite=Strict` session cookie
//!   ([`session`]); `POST /console/sign-out`.
//! - `GET /console/flows`: the KPIs of `GET /municipal/v1/kpis` for a municipality and period,
//!   with charts, goal attainment per discipline and the stays waiting past ready-for-discharge.
//! - `GET /console/outbox`, `POST /console/outbox/{message_id}/retry|discard` (administrators).
//! - `GET /console/system` (administrators): health, readiness, request rates and latencies,
//!   cache hit rates.
//! - `GET /console/audit?cpr=` (administrators): who accessed a citizen's data, through the
//!   AuditEvent search; the search is itself audited (as every console request is).
//!
//! The session cookie authenticates `/console/…` requests only (`api::observe` asks
//! [`session_caller`]); the pages see what the signed-in client would see through the API,
//! under the same scopes and tenancy, because they call the same functions with its `Access`.

pub mod session;
pub mod view;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde_json::Value;

use crate::api::context::{RawBody, RequestContext};
use crate::api::AppState;
use crate::auth::Caller;
use crate::error::FhirError;
use crate::municipal::vocab;
use crate::report::flows;
use crate::store::{DeadAction, JobStatus};
use view::{encode, is_admin, Bar, Frame, Lang, Nav};

const LANG_COOKIE: &str = "sektorbro-console-lang";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The caller of a console request, from its session cookie (`None`: sign in first).
pub fn session_caller(
    state: &AppState,
    headers: &HeaderMap,
    peer_is_loopback: bool,
) -> Option<Caller> {
    if !state.config.console.enabled {
        return None;
    }
    let value = cookie(headers, session::COOKIE)?;
    session::caller(
        &state.config.console,
        &state.auth,
        value,
        chrono::Utc::now().timestamp_millis(),
        peer_is_loopback,
    )
}

/// The answer to a console request without a valid session: to the sign-in form.
pub fn to_sign_in() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/sign-in"))
        .finish()
}

fn lang(req: &HttpRequest) -> Lang {
    match cookie(req.headers(), LANG_COOKIE) {
        Some("en") => Lang::En,
        _ => Lang::Da,
    }
}

fn csrf(state: &AppState, req: &HttpRequest) -> Option<String> {
    cookie(req.headers(), session::COOKIE).map(|v| session::csrf_token(&state.config.console, v))
}

fn here(req: &HttpRequest) -> String {
    match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{q}", req.path()),
    }
}

fn not_found() -> HttpResponse {
    view::respond(404, html! { p { "Not found" } })
}

/// A page in the frame of the signed-in caller.
fn framed(
    state: &AppState,
    req: &HttpRequest,
    ctx: Option<&RequestContext>,
    title: &str,
    nav: Nav,
    status: u16,
    main: Markup,
) -> HttpResponse {
    let csrf = csrf(state, req);
    let frame = Frame {
        lang: lang(req),
        title,
        nav,
        caller: ctx.and_then(|c| c.caller.as_ref()),
        csrf: csrf.as_deref(),
        here: &here(req),
    };
    view::respond(status, view::page(&frame, main))
}

/// The refusal of an administrators' page: nothing of it is shown.
fn admins_only(state: &AppState, req: &HttpRequest, ctx: &RequestContext) -> Option<HttpResponse> {
    if is_admin(ctx.caller.as_ref()) {
        return None;
    }
    let l = lang(req);
    Some(framed(
        state,
        req,
        Some(ctx),
        l.t("Ingen adgang", "No access"),
        Nav::None,
        403,
        html! { p.error role="alert" { (l.t("Siden er kun for administratorer.", "This page is for administrators only.")) } },
    ))
}

fn error_page(
    state: &AppState,
    req: &HttpRequest,
    ctx: &RequestContext,
    e: &FhirError,
) -> HttpResponse {
    let l = lang(req);
    let title = match e.status {
        403 => l.t("Ingen adgang", "No access"),
        _ => l.t("Fejl", "Error"),
    };
    framed(
        state,
        req,
        Some(ctx),
        title,
        Nav::None,
        e.status,
        view::issues(l, &e.issues),
    )
}

// ---------------------------------------------------------------------------------------------
// Static files, language, sign-in and sign-out

pub async fn asset(path: web::Path<String>) -> HttpResponse {
    let (body, kind) = match path.as_str() {
        "console.css" => (
            include_str!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return not_found(),
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, kind))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    if !state.config.console.enabled {
        return not_found();
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/flows"))
        .finish()
}

#[derive(serde::Deserialize)]
pub struct LanguageQuery {
    set: Option<String>,
    back: Option<String>,
}

/// `GET /console/language?set=da|en&back=PATH`: remember the language, back to a console page.
pub async fn language(state: web::Data<AppState>, q: web::Query<LanguageQuery>) -> HttpResponse {
    if !state.config.console.enabled {
        return not_found();
    }
    let set = match q.set.as_deref() {
        Some("en") => "en",
        _ => "da",
    };
    // Only a console path: never a redirect elsewhere.
    let back = q
        .back
        .as_deref()
        .filter(|b| b.starts_with("/console/") && !b.contains("//") && !b.contains('\\'))
        .unwrap_or("/console/flows");
    let mut res = HttpResponse::SeeOther().finish();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(back) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={set}; Path=/console; Max-Age=31536000; SameSite=Strict; Secure"
    )) {
        h.insert(header::SET_COOKIE, v);
    }
    res
}

fn sign_in_page(req: &HttpRequest, status: u16, problem: Option<String>) -> HttpResponse {
    let l = lang(req);
    let frame = Frame {
        lang: l,
        title: l.t("Log ind", "Sign in"),
        nav: Nav::None,
        caller: None,
        csrf: None,
        here: "/console/sign-in",
    };
    let main = html! {
        div.signin {
            p { (l.t(
                "Log ind med et adgangstoken: udviklingstokenet (kun fra denne maskine) eller en klients JWT. Konsollen viser det, klienten må se gennem API'et.",
                "Sign in with an access token: the development token (from this host only) or a client's JWT. The console shows what that client may see through the API.")) }
            @if let Some(p) = &problem {
                p.error role="alert" { (p) }
            }
            form method="post" action="/console/sign-in" {
                label for="token" { (l.t("Adgangstoken", "Access token")) }
                textarea #token name="token" required autocomplete="off" spellcheck="false" {}
                p { button type="submit" { (l.t("Log ind", "Sign in")) } }
            }
        }
    };
    view::respond(status, view::page(&frame, main))
}

pub async fn sign_in_form(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if !state.config.console.enabled {
        return not_found();
    }
    sign_in_page(&req, 200, None)
}

#[derive(serde::Deserialize)]
struct TokenForm {
    token: String,
}

/// Whether the request comes from this host (as the API decides it for the development token).
fn from_loopback(state: &AppState, req: &HttpRequest) -> bool {
    req.peer_addr().is_some_and(|a| a.ip().is_loopback())
        && crate::api::origin::client_ip(req, &state.config.server)
            .is_some_and(|ip| ip.is_loopback())
}

pub async fn sign_in(state: web::Data<AppState>, req: HttpRequest, body: RawBody) -> HttpResponse {
    if !state.config.console.enabled {
        return not_found();
    }
    let l = lang(&req);
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body.0) else {
        return sign_in_page(
            &req,
            400,
            Some(
                l.t("Angiv et adgangstoken.", "Give an access token.")
                    .into(),
            ),
        );
    };
    let token = form.token.trim();
    let caller = match state.auth.bearer(token, from_loopback(&state, &req)).await {
        Ok(c) => c,
        Err(e) => return sign_in_page(&req, e.status(), Some(e.to_string())),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut until = now + state.config.console.session_minutes as i64 * 60_000;
    if let Some(exp) = session::token_expiry_ms(token) {
        until = until.min(exp);
    }
    let value = session::issue(&state.config.console, &caller, until);
    let max_age = ((until - now) / 1000).max(1);
    tracing::info!(client = %caller.client.id, "console sign-in");
    let mut res = HttpResponse::SeeOther().finish();
    let h = res.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/console/flows"));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict",
        session::COOKIE
    )) {
        h.insert(header::SET_COOKIE, v);
    }
    res
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: String,
    #[serde(default)]
    sender: Option<String>,
}

fn csrf_checked(state: &AppState, req: &HttpRequest, body: &[u8]) -> Option<CsrfForm> {
    let form: CsrfForm = serde_urlencoded::from_bytes(body).ok()?;
    let value = cookie(req.headers(), session::COOKIE)?;
    session::csrf_ok(&state.config.console, value, &form.csrf).then_some(form)
}

pub async fn sign_out(state: web::Data<AppState>, req: HttpRequest, body: RawBody) -> HttpResponse {
    if !state.config.console.enabled {
        return not_found();
    }
    if cookie(req.headers(), session::COOKIE).is_some()
        && csrf_checked(&state, &req, &body.0).is_none()
    {
        return view::respond(403, html! { p { "CSRF" } });
    }
    let mut res = HttpResponse::SeeOther().finish();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_static("/console/sign-in"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
        session::COOKIE
    )) {
        h.insert(header::SET_COOKIE, v);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Flows

fn date(s: &str) -> Option<chrono::NaiveDate> {
    (s.len() == 10)
        .then(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

fn ms(d: chrono::NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

fn fmt_opt(l: Lang, v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |x| l.num(x, decimals))
}

/// One key figure; `data-value` holds the KPI API's JSON value (the browser tests compare it).
fn kpi_tile(kpi: &Value, label: &str, key: &str, shown: String, note: Option<String>) -> Markup {
    let raw = key.split('.').fold(kpi, |v, k| &v[k]).to_string();
    html! {
        div {
            dt { (label) }
            dd data-kpi=(key) data-value=(raw) { (shown) @if let Some(n) = note { " " small { (n) } } }
        }
    }
}

pub async fn flows(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
) -> HttpResponse {
    let l = lang(&req);
    let title = l.t("Forløb", "Flows");
    let param = |k: &str| {
        crate::api::reports::param(&ctx, k)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let today = chrono::Utc::now().date_naive();
    let next_month = {
        use chrono::Datelike as _;
        chrono::NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
            .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
            .unwrap_or(today)
    };
    let default_from = next_month
        .checked_sub_months(chrono::Months::new(12))
        .unwrap_or(next_month);
    let own = ctx
        .access
        .organizations()
        .iter()
        .filter_map(|o| o.strip_prefix(&format!("{}|", vocab::MUNICIPALITY_CODES)))
        .map(str::to_string)
        .collect::<Vec<_>>();
    let municipality = param("municipality")
        .map(str::to_string)
        .or_else(|| own.first().cloned());
    let from_text = param("from").map_or_else(|| default_from.to_string(), str::to_string);
    let to_text = param("to").map_or_else(|| next_month.to_string(), str::to_string);
    let mut problems = Vec::new();
    let from = date(&from_text);
    let to = date(&to_text);
    if from.is_none() {
        problems.push(l.t(
            "Fra skal være en dato (2026-01-01).",
            "From must be a date (2026-01-01).",
        ));
    }
    if to.is_none() {
        problems.push(l.t(
            "Til skal være en dato (2026-01-01).",
            "To must be a date (2026-01-01).",
        ));
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            problems.push(l.t("Til skal ligge efter fra.", "To must be after from."));
        }
    }
    if let Some(m) = &municipality {
        if !(m.len() == 4 && m.bytes().all(|b| b.is_ascii_digit())) {
            problems.push(l.t(
                "Kommunekoden har fire cifre.",
                "The municipality code has four digits.",
            ));
        }
    }
    let form = html! {
        form.query method="get" action="/console/flows" {
            label {
                (l.t("Kommune (kode)", "Municipality (code)"))
                @if own.len() > 1 && !view::is_admin(ctx.caller.as_ref()) {
                    select name="municipality" {
                        @for m in &own { option value=(m) selected[Some(m) == municipality.as_ref()] { (m) } }
                    }
                } @else {
                    input name="municipality" value=(municipality.clone().unwrap_or_default()) inputmode="numeric" pattern="[0-9]{4}" size="6";
                }
            }
            label { (l.t("Fra", "From")) input type="date" name="from" value=(from_text); }
            label { (l.t("Til (ikke med)", "To (excluded)")) input type="date" name="to" value=(to_text); }
            button type="submit" { (l.t("Vis", "Show")) }
        }
    };
    let (Some(m), Some(from), Some(to), true) = (municipality, from, to, problems.is_empty())
    else {
        let main = html! {
            (form)
            @if !problems.is_empty() {
                div.error role="alert" { ul { @for p in &problems { li { (p) } } } }
            } @else {
                p.notice { (l.t("Vælg en kommune.", "Choose a municipality.")) }
            }
        };
        return framed(
            &state,
            &req,
            Some(&ctx),
            title,
            Nav::Flows,
            if problems.is_empty() { 200 } else { 400 },
            main,
        );
    };
    match flows_body(&state, &ctx, l, &m, from, to).await {
        Ok(body) => framed(
            &state,
            &req,
            Some(&ctx),
            title,
            Nav::Flows,
            200,
            html! { (form) (body) },
        ),
        Err(e) => error_page(&state, &req, &ctx, &e),
    }
}

async fn flows_body(
    state: &AppState,
    ctx: &RequestContext,
    l: Lang,
    municipality: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Markup, FhirError> {
    crate::api::reports::permit(state, ctx, municipality).await?;
    let (from_ms, to_ms) = (ms(from), ms(to));
    let now = chrono::Utc::now().timestamp_millis();
    let rows = crate::api::kpis::rows(state, ctx, municipality, from_ms, to_ms).await?;
    let kpi = crate::report::kpis::body(
        municipality,
        &from.to_string(),
        &to.to_string(),
        &rows,
        from_ms,
        to_ms,
        now,
    );
    // The 24-hour rate per month: the KPI of each month on its own.
    let mut monthly = Vec::new();
    for (start, end) in flows::months(from, to, 24) {
        let (Some(s), Some(e)) = (date(&start), date(&end)) else {
            continue;
        };
        let f = crate::api::kpis::figures(state, ctx, municipality, (&start, ms(s)), (&end, ms(e)))
            .await?;
        let d = &f["dischargedWithin24h"];
        monthly.push(Bar {
            label: start[2..7].to_string(),
            value: d["rate"].as_f64().map(|r| r * 100.0),
            text: match d["rate"].as_f64() {
                Some(r) => format!(
                    "{} % ({}/{})",
                    l.num(r * 100.0, 1),
                    d["numerator"],
                    d["denominator"]
                ),
                None => l.t("ingen", "none").to_string(),
            },
            class: if d["rate"]
                .as_f64()
                .is_some_and(|r| r >= state.config.console.discharge_target)
            {
                "good"
            } else {
                ""
            },
        });
    }
    let (hours, days) = flows::stay_values(&rows.stays, from_ms, to_ms);
    let hour_edges = [0.0, 12.0, 24.0, 48.0, 72.0, 168.0];
    let hour_labels = ["0–12", "12–24", "24–48", "48–72", "72–168", "168+"];
    let day_edges = [0.0, 7.0, 14.0, 21.0, 28.0, 42.0];
    let day_labels = ["0–7", "7–14", "14–21", "21–28", "28–42", "42+"];
    let to_bars = |counts: Vec<u64>, labels: &[&str]| -> (Vec<Bar>, f64) {
        let max = counts.iter().copied().max().unwrap_or(0) as f64;
        (
            counts
                .into_iter()
                .zip(labels)
                .map(|(n, lab)| Bar {
                    label: lab.to_string(),
                    value: Some(n as f64),
                    text: n.to_string(),
                    class: "",
                })
                .collect(),
            max,
        )
    };
    let (hour_bars, hour_max) = to_bars(flows::histogram(&hours, &hour_edges), &hour_labels);
    let (day_bars, day_max) = to_bars(flows::histogram(&days, &day_edges), &day_labels);
    let phases: Vec<Bar> = crate::report::kpis::PHASES
        .iter()
        .map(|p| {
            let n = kpi["coursesByPhase"][*p].as_u64().unwrap_or(0);
            Bar {
                label: phase_label(l, p).to_string(),
                value: Some(n as f64),
                text: n.to_string(),
                class: "",
            }
        })
        .collect();
    // Goals per discipline and the waiting stays: the municipality's courses through the FHIR
    // search, with their Goals, stays and citizens (under the caller's access).
    let pairs = vec![
        (
            "identifier".to_string(),
            format!("{}|", vocab::record_system(municipality)),
        ),
        ("_include".to_string(), "CarePlan:goal".to_string()),
        ("_include".to_string(), "CarePlan:encounter".to_string()),
        ("_include".to_string(), "CarePlan:subject".to_string()),
        (
            "_count".to_string(),
            state.config.search.max_count.to_string(),
        ),
    ];
    let bundle = state
        .engine
        .search_request(&ctx.access, "CarePlan", &pairs, false, &ctx.base)
        .await?;
    let bundle: Value = serde_json::from_str(&bundle).unwrap_or(Value::Null);
    let courses = flows::courses(&bundle, from_ms, to_ms, now);
    let target = state.config.console.discharge_target;
    let w = &kpi["dischargedWithin24h"];
    let g = &kpi["goals"];
    Ok(html! {
        h2 { (l.t("Nøgletal", "Key figures")) " · " (municipality) " · " (from) " – " (to) }
        dl.tiles #kpis data-municipality=(municipality) {
            (kpi_tile(&kpi, l.t("Udskrevet inden for 24 timer", "Discharged within 24 hours"), "dischargedWithin24h.rate",
                w["rate"].as_f64().map_or_else(|| "–".into(), |r| format!("{} %", l.num(r * 100.0, 1))),
                Some(format!("{}/{}", w["numerator"], w["denominator"]))))
            (kpi_tile(&kpi, l.t("Timer fra klar til udskrivning (median)", "Hours ready to discharge (median)"), "readyToDischargeHours.median",
                fmt_opt(l, &kpi["readyToDischargeHours"]["median"], 1),
                Some(format!("p90 {} · n {}", fmt_opt(l, &kpi["readyToDischargeHours"]["p90"], 1), kpi["readyToDischargeHours"]["n"]))))
            (kpi_tile(&kpi, l.t("Opholdsdage (median)", "Stay days (median)"), "temporaryStayDays.median",
                fmt_opt(l, &kpi["temporaryStayDays"]["median"], 1),
                Some(format!("p90 {} · n {}", fmt_opt(l, &kpi["temporaryStayDays"]["p90"], 1), kpi["temporaryStayDays"]["n"]))))
            (kpi_tile(&kpi, l.t("Mål opnået", "Goals achieved"), "goals.achieved",
                g["achieved"].to_string(), Some(format!("{} {}", l.t("af", "of"), g["total"]))))
            (kpi_tile(&kpi, l.t("Indlæggelser under forløb", "Admissions during courses"), "readmissionsDuringCourse",
                kpi["readmissionsDuringCourse"].to_string(), None))
            (kpi_tile(&kpi, l.t("Udskrivningsnotater med advarsler", "Discharge notes with warnings"), "dischargeNotesWithWarnings",
                kpi["dischargeNotesWithWarnings"].to_string(), None))
        }
        div.charts {
            (view::bars(l, &format!("{} ({} {} %)", l.t("Udskrevet inden for 24 timer pr. måned, %", "Discharged within 24 hours per month, %"), l.t("mål", "target"), l.num(target * 100.0, 0)),
                "chart-rate", &monthly, 100.0, Some((target * 100.0, format!("{} {} %", l.t("mål", "target"), l.num(target * 100.0, 0))))))
            (view::bars(l, l.t("Timer fra klar til udskrivning (antal ophold)", "Hours from ready to discharge (stays)"), "chart-ready", &hour_bars, hour_max, None))
            (view::bars(l, l.t("Opholdets længde i dage (antal ophold)", "Length of stay in days (stays)"), "chart-stay", &day_bars, day_max, None))
            (view::hbars(l, l.t("Aktive forløb pr. fase", "Active courses by phase"), "chart-phases", &phases))
        }
        h2 { (l.t("Målopfyldelse pr. faggruppe", "Goal attainment per discipline")) }
        @if courses.by_discipline.is_empty() {
            p { (l.t("Ingen mål i perioden.", "No goals in the period.")) }
        } @else {
            table #goals-by-discipline {
                thead { tr {
                    th scope="col" { (l.t("Faggruppe", "Discipline")) }
                    th.num scope="col" { (l.t("Opnået", "Achieved")) }
                    th.num scope="col" { (l.t("Ikke opnået", "Not achieved")) }
                    th.num scope="col" { (l.t("I gang", "In progress")) }
                    th.num scope="col" { (l.t("Andet", "Other")) }
                    th scope="col" { (l.t("Andel opnået", "Share achieved")) }
                } }
                tbody {
                    @for (d, a) in &courses.by_discipline {
                        @let share = if a.total() == 0 { 0.0 } else { a.achieved as f64 / a.total() as f64 };
                        tr {
                            th scope="row" { @if d.is_empty() { (l.t("(ingen)", "(none)")) } @else { (d) } }
                            td.num { (a.achieved) } td.num { (a.not_achieved) } td.num { (a.in_progress) } td.num { (a.other) }
                            td {
                                svg width="120" height="14" viewBox="0 0 120 14" role="img" aria-label={ (l.num(share * 100.0, 0)) " %" } {
                                    rect x="0" y="2" width="120" height="10" fill="#dfe5eb" {}
                                    rect.bar.good x="0" y="2" width=(120.0 * share) height="10" {}
                                }
                                " " (l.num(share * 100.0, 0)) " %"
                            }
                        }
                    }
                }
            }
        }
        h2 { (l.t("Ophold der venter efter klar til udskrivning", "Stays waiting past ready for discharge")) }
        @if courses.waiting.is_empty() {
            p #waiting-none { (l.t("Ingen venter.", "Nobody is waiting.")) }
        } @else {
            table #waiting {
                thead { tr {
                    th scope="col" { (l.t("Borger (CPR)", "Citizen (CPR)")) }
                    th scope="col" { (l.t("Forløb", "Course")) }
                    th scope="col" { (l.t("Klar siden", "Ready since")) }
                    th.num scope="col" { (l.t("Timer", "Hours")) }
                } }
                tbody {
                    @for wt in &courses.waiting {
                        tr { td { (wt.masked_cpr) } td { (wt.record) } td { (wt.ready) } td.num { (l.num(wt.hours, 0)) } }
                    }
                }
            }
        }
        @if courses.truncated {
            p.notice { (l.t("Kun de første forløb er talt med (søgningens første side).", "Only the first courses are counted (the search's first page).")) }
        }
    })
}

fn phase_label(l: Lang, code: &str) -> &'static str {
    match code {
        "assessment" => l.t("Udredning", "Assessment"),
        "goal-setting" => l.t("Målsætning", "Goal-setting"),
        "intervention" => l.t("Indsats", "Intervention"),
        "follow-up" => l.t("Opfølgning", "Follow-up"),
        _ => l.t("Afsluttet", "Completed"),
    }
}

// ---------------------------------------------------------------------------------------------
// Outbox

fn status_label(l: Lang, s: JobStatus) -> &'static str {
    match s {
        JobStatus::Pending => l.t("Venter", "Pending"),
        JobStatus::InFlight => l.t("Under afsendelse", "In flight"),
        JobStatus::Delivered => l.t("Leveret", "Delivered"),
        JobStatus::Dead => l.t("Død", "Dead"),
        JobStatus::Discarded => l.t("Kasseret", "Discarded"),
    }
}

fn breaker_label(l: Lang, b: u8) -> (&'static str, &'static str) {
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
fn receiver_outcome(l: Lang, text: &str) -> Markup {
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

async fn act(
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

// ---------------------------------------------------------------------------------------------
// System

/// One sample of the Prometheus text: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| {
                (
                    k.trim_start_matches(',').to_string(),
                    v.trim_end_matches('"').to_string(),
                )
            })
            .collect();
        out.push((name.to_string(), labels, value));
    }
    out
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

pub async fn system(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: RequestContext,
) -> HttpResponse {
    if let Some(refused) = admins_only(&state, &req, &ctx) {
        return refused;
    }
    let l = lang(&req);
    let store = state.engine.store();
    let ready = !matches!(
        super::health::readiness(&state).await,
        super::health::Readiness::Unavailable(_)
    );
    state.forwarder.count_outbox_jobs().await;
    let text = state.metrics.render();
    let all = samples(&text);
    let started = chrono::DateTime::parse_from_rfc3339(&state.started)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let uptime_s = ((chrono::Utc::now().timestamp_millis() - started) as f64 / 1000.0).max(1.0);
    // Requests and mean latency per route.
    let mut routes: std::collections::BTreeMap<String, (f64, f64, f64, f64)> = Default::default();
    for (name, labels, v) in &all {
        let route = label(labels, "route").to_string();
        match name.as_str() {
            "sektorbro_http_requests_total" => {
                let e = routes.entry(route).or_default();
                e.0 += v;
                if label(labels, "status").starts_with('5') {
                    e.3 += v;
                }
            }
            "sektorbro_http_request_duration_seconds_sum" => {
                routes.entry(route).or_default().1 += v
            }
            "sektorbro_http_request_duration_seconds_count" => {
                routes.entry(route).or_default().2 += v
            }
            _ => {}
        }
    }
    // Hit rates of every cache that counts hits and misses.
    let mut caches: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for (name, labels, v) in &all {
        let key = |kind: &str| {
            let base = name
                .trim_end_matches("_total")
                .trim_end_matches(kind)
                .trim_end_matches('_');
            let which = label(labels, "cache");
            if which.is_empty() {
                base.to_string()
            } else {
                format!("{base} {which}")
            }
        };
        if name.ends_with("hits_total") {
            caches.entry(key("hits")).or_default().0 += v;
        } else if name.ends_with("misses_total") {
            caches.entry(key("misses")).or_default().1 += v;
        }
    }
    let main = html! {
        h2 { (l.t("Tilstand", "Health")) }
        dl.tiles {
            div { dt { "/healthz" } dd.status-ok #health { "ok" } }
            div { dt { "/readyz" } dd #ready class=(if ready { "status-ok" } else { "status-bad" }) {
                (if ready { l.t("klar", "ready") } else { l.t("ikke klar", "not ready") }) " "
                small { (store.backend().name()) }
            } }
            div { dt { (l.t("Oppe siden", "Up since")) } dd { small { (state.started) } } }
        }
        h2 { (l.t("Forespørgsler", "Requests")) }
        table #requests {
            thead { tr {
                th scope="col" { "Route" }
                th.num scope="col" { (l.t("Antal", "Count")) }
                th.num scope="col" { (l.t("Pr. minut", "Per minute")) }
                th.num scope="col" { (l.t("Gns. ms", "Mean ms")) }
                th.num scope="col" { "5xx" }
            } }
            tbody {
                @for (route, (n, sum, count, errors)) in &routes {
                    @if *n > 0.0 {
                        tr {
                            th scope="row" { code { (route) } }
                            td.num { (n) }
                            td.num { (l.num(n / uptime_s * 60.0, 1)) }
                            td.num { (if *count > 0.0 { l.num(sum / count * 1000.0, 1) } else { "–".into() }) }
                            td.num { (errors) }
                        }
                    }
                }
            }
        }
        h2 { (l.t("Cache-træfrate", "Cache hit rates")) }
        @if caches.is_empty() {
            p { (l.t("Ingen caches har talt endnu.", "No cache has counted yet.")) }
        } @else {
            table #caches {
                thead { tr {
                    th scope="col" { "Cache" }
                    th.num scope="col" { (l.t("Træf", "Hits")) }
                    th.num scope="col" { (l.t("Forbi", "Misses")) }
                    th.num scope="col" { (l.t("Træfrate", "Hit rate")) }
                } }
                tbody {
                    @for (c, (h, m)) in &caches {
                        tr {
                            th scope="row" { code { (c) } }
                            td.num { (h) } td.num { (m) }
                            td.num { (if h + m > 0.0 { format!("{} %", l.num(h / (h + m) * 100.0, 1)) } else { "–".into() }) }
                        }
                    }
                }
            }
        }
    };
    framed(&state, &req, Some(&ctx), "System", Nav::System, 200, main)
}

// ---------------------------------------------------------------------------------------------
// Audit

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
            "Patient",
            &[
                ("identifier".to_string(), format!("{}|{cpr}", vocab::CPR)),
                ("_elements".to_string(), "id".to_string()),
            ],
            false,
            &ctx.base,
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
        .search_request(&ctx.access, "AuditEvent", &pairs, false, &ctx.base)
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
fn who(ev: &Value) -> String {
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
fn what(ev: &Value) -> String {
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
