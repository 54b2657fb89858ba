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

mod audit_page;
mod flows_page;
mod outbox_page;
pub mod session;
mod system_page;
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
use crate::store::{DeadAction, JobStatus};
use view::{encode, is_admin, Bar, Frame, Lang, Nav};

pub use audit_page::audit;
pub use flows_page::flows;
pub use outbox_page::{outbox, outbox_discard, outbox_retry};
pub use system_page::system;

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
