//! `GET /console/flows`: the care-flow KPIs of a municipality and period, with charts.

use super::*;
use crate::report::flows;
use fhir_core::fhir::ResourceType;

pub(super) fn date(s: &str) -> Option<chrono::NaiveDate> {
    fhir_core::fhir::datetime::full_date(s)
}

pub(super) fn ms(d: chrono::NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

pub(super) fn fmt_opt(l: Lang, v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |x| l.num(x, decimals))
}

/// One key figure; `data-value` holds the KPI API's JSON value (the browser tests compare it).
pub(super) fn kpi_tile(
    kpi: &Value,
    label: &str,
    key: &str,
    shown: String,
    note: Option<String>,
) -> Markup {
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

pub(super) async fn flows_body(
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
        .search_request(
            &ctx.access,
            ResourceType::CARE_PLAN,
            &pairs,
            false,
            ctx.base(),
        )
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

pub(super) fn phase_label(l: Lang, code: &str) -> &'static str {
    match code {
        "assessment" => l.t("Udredning", "Assessment"),
        "goal-setting" => l.t("Målsætning", "Goal-setting"),
        "intervention" => l.t("Indsats", "Intervention"),
        "follow-up" => l.t("Opfølgning", "Follow-up"),
        _ => l.t("Afsluttet", "Completed"),
    }
}
