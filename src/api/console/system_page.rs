//! `GET /console/system` (administrators): health, readiness, request rates and latencies,
//! cache hit rates, read from the gateway's own metrics.

use super::*;

/// One sample of the Prometheus text: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

pub(super) fn samples(text: &str) -> Vec<Sample> {
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

pub(super) fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
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
        crate::api::health::readiness(&state).await,
        crate::api::health::Readiness::Unavailable(_)
    );
    state.forwarder.count_outbox_jobs().await;
    let text = state.metrics.render();
    let all = samples(&text);
    let started = fhir_core::fhir::datetime::full_date_time(&state.started)
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
