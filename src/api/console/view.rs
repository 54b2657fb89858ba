//! The console's HTML: the page frame, SVG charts and small pieces, written with maud (every
//! value is escaped by the template; nothing is pasted in as raw HTML).

use actix_web::http::header::{HeaderValue, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use maud::{html, Markup, DOCTYPE};

use crate::auth::{Caller, ClientKind};
use fhir_core::fhir::outcome::Issue;

/// Scripts and styles from the gateway only, no inline code, forms posted back here only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's language: Danish by default, English by choice (a cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Da,
    En,
}

impl Lang {
    pub fn t(self, da: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Da => da,
            Lang::En => en,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Da => "da",
            Lang::En => "en",
        }
    }

    /// A number with the language's decimal mark.
    pub fn num(self, x: f64, decimals: usize) -> String {
        let s = format!("{x:.decimals$}");
        match self {
            Lang::Da => s.replace('.', ","),
            Lang::En => s,
        }
    }
}

/// Which page the frame marks as current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Flows,
    Outbox,
    System,
    Audit,
    None,
}

pub struct Frame<'a> {
    pub lang: Lang,
    pub title: &'a str,
    pub nav: Nav,
    pub caller: Option<&'a Caller>,
    /// The CSRF token of the session (the sign-out form).
    pub csrf: Option<&'a str>,
    /// This page's path and query, where the language switch returns to.
    pub here: &'a str,
}

pub fn is_admin(caller: Option<&Caller>) -> bool {
    caller.is_some_and(|c| c.client.kind == ClientKind::Admin)
}

/// `s` percent-encoded for a URL path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn page(f: &Frame, main: Markup) -> Markup {
    let l = f.lang;
    let admin = is_admin(f.caller);
    let item = |nav: Nav, href: &'static str, label: &'static str| {
        html! { li { a href=(href) aria-current=[(f.nav == nav).then_some("page")] { (label) } } }
    };
    let other = match l {
        Lang::Da => Lang::En,
        Lang::En => Lang::Da,
    };
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (f.title) " · Sektorbro" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { (l.t("Spring til indhold", "Skip to content")) }
                header {
                    span.brand { "Sektorbro" }
                    @if f.caller.is_some() {
                        nav aria-label=(l.t("Sider", "Pages")) {
                            ul {
                                (item(Nav::Flows, "/console/flows", l.t("Forløb", "Flows")))
                                @if admin {
                                    (item(Nav::Outbox, "/console/outbox", l.t("Udbakke", "Outbox")))
                                    (item(Nav::System, "/console/system", "System"))
                                    (item(Nav::Audit, "/console/audit", l.t("Adgangslog", "Audit")))
                                }
                            }
                        }
                    }
                    div.who {
                        a href={ "/console/language?set=" (other.code()) "&back=" (encode(f.here)) }
                            lang=(other.code()) {
                            (l.t("English", "Dansk"))
                        }
                        @if let Some(c) = f.caller {
                            span data-client=(c.client.id) {
                                (l.t("Logget ind som ", "Signed in as ")) strong { (c.client.id) }
                                " (" (c.client.kind.as_str()) ")"
                            }
                            form method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                                button.secondary type="submit" { (l.t("Log ud", "Sign out")) }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (f.title) }
                    (main)
                }
            }
        }
    }
}

/// An HTML answer with the console's CSP.
pub fn respond(status: u16, markup: Markup) -> HttpResponse {
    let mut res = HttpResponse::build(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    )
    .body(markup.into_string());
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    res
}

/// The problems of a refused request, as the API would list them in an OperationOutcome.
pub fn issues(l: Lang, list: &[Issue]) -> Markup {
    html! {
        div.error role="alert" {
            p { strong { (l.t("Det kunne ikke lade sig gøre:", "That could not be done:")) } }
            ul {
                @for i in list {
                    li {
                        (i.diagnostics)
                        @if let Some(x) = &i.expression { " (" code { (x) } ")" }
                    }
                }
            }
        }
    }
}

/// One bar of a chart.
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    /// Shown on focus and in the table (the value with its unit or count).
    pub text: String,
    pub class: &'static str,
}

/// A vertical bar chart, values from 0 to `max`, with an optional dashed target line and its
/// label; the same figures as a table for screen readers and keyboard users.
pub fn bars(
    l: Lang,
    caption: &str,
    id: &str,
    bars: &[Bar],
    max: f64,
    target: Option<(f64, String)>,
) -> Markup {
    let (w, h, left, bottom, top) = (480.0, 220.0, 40.0, 40.0, 12.0);
    let plot_h = h - bottom - top;
    let n = bars.len().max(1) as f64;
    let slot = (w - left - 8.0) / n;
    let bw = (slot * 0.7).max(2.0);
    let max = if max > 0.0 { max } else { 1.0 };
    let y = |v: f64| top + plot_h * (1.0 - (v / max).clamp(0.0, 1.0));
    html! {
        figure id=(id) {
            figcaption { (caption) }
            svg viewBox={ "0 0 " (w) " " (h) } width="100%" role="img" aria-label=(caption) {
                line.axis x1=(left) y1=(top) x2=(left) y2=(h - bottom) {}
                line.axis x1=(left) y1=(h - bottom) x2=(w - 4.0) y2=(h - bottom) {}
                text x=(left - 4.0) y=(top + 4.0) text-anchor="end" { (l.num(max, if max < 10.0 { 1 } else { 0 })) }
                text x=(left - 4.0) y=(h - bottom) text-anchor="end" { "0" }
                @for (i, b) in bars.iter().enumerate() {
                    @let x = left + 4.0 + slot * i as f64;
                    @if let Some(v) = b.value {
                        rect class={ "bar " (b.class) } x=(x) y=(y(v)) width=(bw) height=((h - bottom - y(v)).max(0.5))
                            data-value={ (b.label) ": " (b.text) } {
                            title { (b.label) ": " (b.text) }
                        }
                    }
                    text x=(x + bw / 2.0) y=(h - bottom + 14.0) text-anchor="middle" { (b.label) }
                }
                @if let Some((t, label)) = &target {
                    line.target x1=(left) y1=(y(*t)) x2=(w - 4.0) y2=(y(*t)) {}
                    text x=(w - 6.0) y=(y(*t) - 4.0) text-anchor="end" { (label) }
                }
            }
            details {
                summary { (l.t("Tal", "Figures")) }
                table {
                    tbody {
                        @for b in bars {
                            tr { th scope="row" { (b.label) } td.num { (b.text) } }
                        }
                    }
                }
            }
        }
    }
}

/// A horizontal bar chart (a funnel, or parts of a whole).
pub fn hbars(l: Lang, caption: &str, id: &str, bars: &[Bar]) -> Markup {
    let row = 26.0;
    let (w, left) = (480.0, 150.0);
    let h = row * bars.len().max(1) as f64 + 8.0;
    let max = bars
        .iter()
        .filter_map(|b| b.value)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    html! {
        figure id=(id) {
            figcaption { (caption) }
            svg viewBox={ "0 0 " (w) " " (h) } width="100%" role="img" aria-label=(caption) {
                @for (i, b) in bars.iter().enumerate() {
                    @let y = 4.0 + row * i as f64;
                    @let v = b.value.unwrap_or(0.0);
                    text x=(left - 6.0) y=(y + 16.0) text-anchor="end" { (b.label) }
                    rect class={ "bar " (b.class) } x=(left) y=(y + 3.0) width=(((w - left - 60.0) * v / max).max(0.5)) height=(row - 8.0)
                        data-value={ (b.label) ": " (b.text) } {
                        title { (b.label) ": " (b.text) }
                    }
                    text x=(left + (w - left - 60.0) * v / max + 6.0) y=(y + 16.0) { (b.text) }
                }
            }
            details {
                summary { (l.t("Tal", "Figures")) }
                table {
                    tbody {
                        @for b in bars {
                            tr { th scope="row" { (b.label) } td.num { (b.text) } }
                        }
                    }
                }
            }
        }
    }
}
