//! The one table of what the gateway serves over HTTP. Each row is one method on one route, with
//! its handler, who may call it, how it is audited and what the CapabilityStatement says about
//! it. The actix routes (`api::routes`, `admin::scope`), the metrics route label, the audit
//! interaction, the open paths, `Allow` headers and the CapabilityStatement are all read off this
//! table, so they cannot disagree; `tests/api/operations.rs` holds the claims to the behaviour.

use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::{web, Route};

use super::fhir::{
    bulk, bundle, crud, history, measure, metadata, process_message, search, share, validate,
};
use super::{admin, console, health, kpis, municipal, reports, smart};
use crate::audit::Interaction;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone, without credentials: health, metrics, the CapabilityStatement, SMART discovery.
    /// Not audited (it touches no citizen's data).
    Open,
    /// Any authenticated client; the engine applies its scopes and tenancy.
    Client,
    /// Administrator clients only (`admin::admins_only`).
    Admin,
}

/// How a request on a route is recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAs {
    Read,
    Vread,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    SearchType,
    Create,
    Update,
    Patch,
    Delete,
    /// A Bundle posted to the base: the handler says which (transaction unless it says batch).
    TransactionOrBatch,
    /// A FHIR operation, by its name without `$`.
    Operation(&'static str),
    CareRecordPost,
    CareRecordGet,
    DischargeNotePost,
    /// An administrator's action, by its name.
    Admin(&'static str),
    /// Not audited (the open routes).
    Not,
}

impl AuditAs {
    /// The audit interaction; `hint` is what a handler said (a Bundle's transaction or batch).
    pub fn interaction(self, hint: Option<Interaction>) -> Option<Interaction> {
        Some(match self {
            AuditAs::Read => Interaction::Read,
            AuditAs::Vread => Interaction::Vread,
            AuditAs::HistoryInstance => Interaction::HistoryInstance,
            AuditAs::HistoryType => Interaction::HistoryType,
            AuditAs::HistorySystem => Interaction::HistorySystem,
            AuditAs::SearchType => Interaction::SearchType,
            AuditAs::Create => Interaction::Create,
            AuditAs::Update => Interaction::Update,
            AuditAs::Patch => Interaction::Patch,
            AuditAs::Delete => Interaction::Delete,
            AuditAs::TransactionOrBatch => hint.unwrap_or(Interaction::Transaction),
            AuditAs::Operation(name) => Interaction::Operation(name.to_string()),
            AuditAs::CareRecordPost => Interaction::CareRecordPost,
            AuditAs::CareRecordGet => Interaction::CareRecordGet,
            AuditAs::DischargeNotePost => Interaction::DischargeNotePost,
            AuditAs::Admin(name) => Interaction::Operation(format!("admin {name}")),
            AuditAs::Not => return None,
        })
    }
}

/// What the CapabilityStatement says about a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// A type-level or instance-level interaction (`CapabilityStatement.rest.resource.interaction`).
    Type(&'static str),
    /// System-level interactions (`CapabilityStatement.rest.interaction`).
    System(&'static [&'static str]),
    /// An operation on every type (`rest.resource.operation`), or on the types listed.
    TypeOperation {
        name: &'static str,
        definition: &'static str,
        types: Option<&'static [&'static str]>,
    },
    /// A system-level operation (`rest.operation`).
    SystemOperation {
        name: &'static str,
        definition: &'static str,
    },
    /// Not FHIR REST (health, metrics, admin, municipal endpoints), or the statement itself.
    None,
}

/// One method on one route.
pub struct Operation {
    pub method: Method,
    /// The actix route pattern, which is also the metrics label and the audit's route.
    pub route: &'static str,
    /// Attaches the handler to a route already guarded by `method`.
    pub handler: fn(Route) -> Route,
    pub caller: Caller,
    pub audit: AuditAs,
    pub capability: Capability,
}

pub const VALIDATE: &str = "http://hl7.org/fhir/OperationDefinition/Resource-validate";
pub const PROCESS_MESSAGE: &str =
    "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message";
pub const PATIENT_SHARE: &str = "http://sektorbro.dk/fhir/OperationDefinition/Patient-share";
pub const EVALUATE_MEASURE: &str =
    "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure";

macro_rules! op {
    ($method:ident $route:literal => $handler:path, $caller:ident, $audit:expr, $cap:expr) => {
        Operation {
            method: Method::$method,
            route: $route,
            handler: |r| r.to($handler),
            caller: Caller::$caller,
            audit: $audit,
            capability: $cap,
        }
    };
}

/// Every route, in the order actix matches them (a literal segment before `{id}`).
pub fn table() -> &'static [Operation] {
    static TABLE: OnceLock<Vec<Operation>> = OnceLock::new();
    TABLE.get_or_init(|| {
        use AuditAs as A;
        use Capability as C;
        vec![
            op!(GET "/healthz" => health::healthz, Open, A::Not, C::None),
            op!(GET "/readyz" => health::readyz, Open, A::Not, C::None),
            op!(GET "/metrics" => health::metrics, Open, A::Not, C::None),
            op!(GET "/.well-known/smart-configuration" => smart::configuration_handler, Open, A::Not, C::None),
            op!(GET "/admin/caches" => admin::list, Admin, A::Admin("get caches"), C::None),
            op!(DELETE "/admin/caches/{cache}" => admin::invalidate, Admin, A::Admin("delete caches/{cache}"), C::None),
            op!(GET "/admin/caches/{cache}/lookup" => admin::lookup, Admin, A::Admin("get caches/{cache}/lookup"), C::None),
            op!(GET "/admin/outbox" => admin::outbox_list, Admin, A::Admin("get outbox"), C::None),
            op!(GET "/admin/outbox/{message_id}" => admin::outbox_job, Admin, A::Admin("get outbox/{message_id}"), C::None),
            op!(POST "/admin/outbox/{message_id}/retry" => admin::outbox_retry, Admin, A::Admin("post outbox/{message_id}/retry"), C::None),
            op!(POST "/admin/outbox/{message_id}/discard" => admin::outbox_discard, Admin, A::Admin("post outbox/{message_id}/discard"), C::None),
            op!(POST "/municipal/v1/care-records" => municipal::post, Client, A::CareRecordPost, C::None),
            op!(GET "/municipal/v1/care-records/{id}" => municipal::get, Client, A::CareRecordGet, C::None),
            // Hospital events are the record's citizen's data: audited as a read of the record.
            op!(GET "/municipal/v1/care-records/{id}/hospital-events" => municipal::get_hospital_events, Client, A::CareRecordGet, C::None),
            op!(POST "/municipal/v1/discharge-notes" => municipal::post_discharge_note, Client, A::DischargeNotePost, C::None),
            op!(GET "/municipal/v1/reports/kl-gateway" => reports::kl_gateway, Client, A::Operation("kl-gateway-report"), C::None),
            op!(GET "/municipal/v1/kpis" => kpis::kpis, Client, A::Operation("kpis"), C::None),
            // The console (`api/console/`): its own sign-in and files are open; its pages take the
            // session cookie instead of a bearer token (`api::observe`).
            op!(GET "/console" => console::index, Open, A::Not, C::None),
            op!(GET "/console/static/{file}" => console::asset, Open, A::Not, C::None),
            op!(GET "/console/language" => console::language, Open, A::Not, C::None),
            op!(GET "/console/sign-in" => console::sign_in_form, Open, A::Not, C::None),
            op!(POST "/console/sign-in" => console::sign_in, Open, A::Not, C::None),
            op!(POST "/console/sign-out" => console::sign_out, Open, A::Not, C::None),
            op!(GET "/console/flows" => console::flows, Client, A::Operation("console-flows"), C::None),
            op!(GET "/console/outbox" => console::outbox, Client, A::Operation("console-outbox"), C::None),
            op!(POST "/console/outbox/{message_id}/retry" => console::outbox_retry, Client, A::Admin("post outbox/{message_id}/retry"), C::None),
            op!(POST "/console/outbox/{message_id}/discard" => console::outbox_discard, Client, A::Admin("post outbox/{message_id}/discard"), C::None),
            op!(GET "/console/system" => console::system, Client, A::Operation("console-system"), C::None),
            op!(GET "/console/audit" => console::audit, Client, A::Operation("console-audit"), C::None),
            op!(GET "/fhir/metadata" => metadata::metadata, Open, A::Not, C::None),
            op!(GET "/fhir/.well-known/smart-configuration" => smart::configuration_handler, Open, A::Not, C::None),
            op!(POST "/fhir" => bundle::transaction_or_batch, Client, A::TransactionOrBatch, C::System(&["transaction", "batch"])),
            op!(POST "/fhir/" => bundle::transaction_or_batch, Client, A::TransactionOrBatch, C::System(&["transaction", "batch"])),
            op!(GET "/fhir/_history" => history::system, Client, A::HistorySystem, C::System(&["history-system"])),
            op!(POST "/fhir/$validate" => validate::system, Client, A::Operation("validate"),
                C::SystemOperation { name: "validate", definition: VALIDATE }),
            op!(POST "/fhir/$process-message" => process_message::post, Client, A::Operation("process-message"),
                C::SystemOperation { name: "process-message", definition: PROCESS_MESSAGE }),
            // Bulk Data export (docs/bulk.md): literal segments, so before `/fhir/{type}/{id}`.
            op!(GET "/fhir/$export" => bulk::system, Client, A::Operation("export"),
                C::SystemOperation { name: "export", definition: crate::bulk::EXPORT }),
            op!(GET "/fhir/$export-status/{job}" => bulk::status, Client, A::Operation("export-status"), C::None),
            op!(DELETE "/fhir/$export-status/{job}" => bulk::cancel, Client, A::Operation("export-cancel"), C::None),
            op!(GET "/fhir/$export-file/{job}/{file}" => bulk::download, Client, A::Operation("export-file"), C::None),
            op!(GET "/fhir/Patient/$export" => bulk::patient, Client, A::Operation("export"),
                C::TypeOperation { name: "export", definition: crate::bulk::PATIENT_EXPORT, types: Some(&["Patient"]) }),
            op!(GET "/fhir/Group/{id}/$export" => bulk::group, Client, A::Operation("export"),
                C::TypeOperation { name: "export", definition: crate::bulk::GROUP_EXPORT, types: Some(&["Group"]) }),
            op!(POST "/fhir/{type}/$validate" => validate::by_type, Client, A::Operation("validate"),
                C::TypeOperation { name: "validate", definition: VALIDATE, types: None }),
            op!(GET "/fhir/Measure/{id}/$evaluate-measure" => measure::evaluate, Client, A::Operation("evaluate-measure"),
                C::TypeOperation { name: "evaluate-measure", definition: EVALUATE_MEASURE, types: Some(&["Measure"]) }),
            op!(GET "/fhir/{type}" => search::search, Client, A::SearchType, C::Type("search-type")),
            op!(POST "/fhir/{type}" => crud::create, Client, A::Create, C::Type("create")),
            op!(PUT "/fhir/{type}" => crud::conditional_update, Client, A::Update, C::None),
            op!(DELETE "/fhir/{type}" => crud::conditional_delete, Client, A::Delete, C::None),
            op!(POST "/fhir/{type}/_search" => search::search_post, Client, A::SearchType, C::None),
            op!(GET "/fhir/{type}/_history" => history::by_type, Client, A::HistoryType, C::Type("history-type")),
            op!(GET "/fhir/{type}/{id}" => crud::read, Client, A::Read, C::Type("read")),
            op!(PUT "/fhir/{type}/{id}" => crud::update, Client, A::Update, C::Type("update")),
            op!(PATCH "/fhir/{type}/{id}" => crud::patch, Client, A::Patch, C::Type("patch")),
            op!(DELETE "/fhir/{type}/{id}" => crud::delete, Client, A::Delete, C::Type("delete")),
            op!(GET "/fhir/{type}/{id}/_history" => history::instance, Client, A::HistoryInstance, C::Type("history-instance")),
            op!(POST "/fhir/{type}/{id}/$share" => share::post, Client, A::Operation("share"),
                C::TypeOperation { name: "share", definition: PATIENT_SHARE, types: Some(&["Patient"]) }),
            op!(GET "/fhir/{type}/{id}/_history/{vid}" => crud::vread, Client, A::Vread, C::Type("vread")),
        ]
    })
}

/// The distinct route patterns, in table order.
pub fn route_patterns() -> impl Iterator<Item = &'static str> {
    let mut seen = Vec::new();
    table()
        .iter()
        .filter(move |o| {
            let new = !seen.contains(&o.route);
            seen.push(o.route);
            new
        })
        .map(|o| o.route)
}

/// The rows of one route pattern.
pub fn rows(route: &str) -> impl Iterator<Item = &'static Operation> + '_ {
    table().iter().filter(move |o| o.route == route)
}

/// The row for a method on a route pattern; HEAD is a GET without its body.
pub fn find(route: &str, method: &Method) -> Option<&'static Operation> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    rows(route).find(|o| o.method == method)
}

/// The methods a route answers, for `Allow` (HEAD wherever GET, and OPTIONS).
pub fn allow(route: &str) -> String {
    let mut methods: Vec<&str> = rows(route).map(|o| o.method.as_str()).collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.push("OPTIONS");
    methods.join(", ")
}

/// A route pattern split into segments, `None` for a `{placeholder}`.
type Segments = Vec<Option<&'static str>>;

fn segments(route: &'static str) -> Segments {
    route
        .split('/')
        .skip(1)
        .map(|s| (!s.starts_with('{')).then_some(s))
        .collect()
}

/// The route pattern a path matches (as actix's `match_pattern` names it; a test holds the two
/// equal), or `"unmatched"`. Paths are compared segment by segment against patterns prepared
/// once, without regular expressions: this runs on every request.
pub fn route_label(path: &str) -> &'static str {
    /// The table's patterns, and where `api::routes` registers the early patterns among them
    /// (before the first FHIR route with a placeholder).
    type Table = (Vec<(&'static str, Segments)>, usize);
    static PATTERNS: OnceLock<Table> = OnceLock::new();
    let (patterns, early_at) = PATTERNS.get_or_init(|| {
        let all: Vec<_> = route_patterns().map(|r| (r, segments(r))).collect();
        let at = all
            .iter()
            .position(|(r, _)| r.starts_with("/fhir") && r.contains('{'))
            .unwrap_or(all.len());
        (all, at)
    });
    let Some(rest) = path.strip_prefix('/') else {
        return "unmatched";
    };
    // Only patterns of as many segments can match: a length compare skips most of them.
    let count = rest.bytes().filter(|b| *b == b'/').count() + 1;
    let first = |table: &[(&'static str, Segments)]| {
        table.iter().find_map(|(route, pattern)| {
            let matches = pattern.len() == count
                && rest.split('/').zip(pattern).all(|(got, want)| match want {
                    Some(lit) => got == *lit,
                    None => !got.is_empty(),
                });
            matches.then_some(*route)
        })
    };
    if let Some(route) = first(&patterns[..*early_at]) {
        return route;
    }
    // The read and search routes next, as actix tries them (`early_patterns`): a FHIR path
    // whose type and id do not start with `_`, `$` or `.` is theirs, without comparing it with
    // the two dozen patterns of the same length before them in the table.
    let narrowed = |s: &str| !s.is_empty() && !s.starts_with(['_', '$', '.']);
    if let Some(tail) = rest.strip_prefix("fhir/") {
        let [(read, _), (search, _)] = early_patterns();
        match tail.split_once('/') {
            Some((t, id)) if narrowed(t) && narrowed(id) && !id.contains('/') => return read,
            None if narrowed(tail) => return search,
            _ => {}
        }
    }
    first(&patterns[*early_at..]).unwrap_or("unmatched")
}

/// The hot routes' patterns as registered with actix ahead of the rest (`api::routes`), with
/// their placeholders narrowed to what a FHIR type or id can be: neither starts with `_`, `$`
/// or `.`, so no literal route (`_history`, `_search`, `$validate`, `.well-known`…) can match
/// them and they need not wait behind every other pattern. Actix tries a pattern with
/// placeholders as a regular expression, one after another in registration order: a read
/// behind fifteen of them spent a tenth of its time in routing. Paths these do not match
/// still reach the route's resource in the table's order.
pub fn early_patterns() -> [(&'static str, &'static str); 2] {
    /// A placeholder segment that cannot start with `_`, `$` or `.`.
    macro_rules! narrowed {
        ($name:literal) => {
            concat!("{", $name, r":[^/_$.][^/]*}")
        };
    }
    [
        (
            "/fhir/{type}/{id}",
            concat!("/fhir/", narrowed!("type"), "/", narrowed!("id")),
        ),
        ("/fhir/{type}", concat!("/fhir/", narrowed!("type"))),
    ]
}

/// Whether anyone may call `path` without credentials.
pub fn open_path(path: &str) -> bool {
    route_is_open(route_label(path))
}

/// Whether anyone may call a route pattern (as [`route_label`] names it) without credentials.
pub fn route_is_open(route: &str) -> bool {
    rows(route).any(|o| o.caller == Caller::Open)
}

/// The actix routes of one pattern: each row's method (and HEAD for GET) with its handler.
pub fn actix_routes(route: &str) -> Vec<Route> {
    let mut out = Vec::new();
    for o in rows(route) {
        out.push((o.handler)(web::method(o.method.clone())));
        if o.method == Method::GET {
            out.push((o.handler)(web::method(Method::HEAD)));
        }
    }
    out
}
