//! Building FHIR HTTP responses: content type, ETag, Last-Modified, Location, and the one place
//! where a [`FhirError`] becomes an HTTP response.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};

use super::context::{PreferReturn, RequestContext};
use crate::engine::Written;
use crate::error::FhirError;
use fhir_core::fhir::outcome::{operation_outcome, Issue};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

impl ResponseError for FhirError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A 503 (busy, a statement timeout, an upstream down) says when to retry: 1 s, or 5 s after
    /// a statement timeout, which a prompt retry would likely meet again.
    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.content_type(FHIR_JSON);
        if self.status == 503 {
            let timeout = self.issues.iter().any(|i| i.code == "timeout");
            res.insert_header((header::RETRY_AFTER, if timeout { "5" } else { "1" }));
        }
        res.body(self.outcome().to_string())
    }
}

/// Header naming the lookup caches whose answer was served past its TTL (the upstream failed),
/// e.g. `X-Sektorbro-Stale-Lookup: patients`.
pub const STALE_LOOKUP: &str = "x-sektorbro-stale-lookup";

/// Mark a response as built from a stale lookup of `cache` (`patients`, `organizations`, …):
/// [`STALE_LOOKUP`] plus the standard `Warning: 110` for caches and proxies that know it.
/// Handlers that used a [`crate::lookup::Lookup`] with `stale: true` call this.
pub fn mark_stale(res: &mut HttpResponseBuilder, cache: &str) {
    if let Ok(v) = HeaderValue::from_str(cache) {
        res.append_header((STALE_LOOKUP, v));
    }
    res.insert_header((header::WARNING, "110 - \"Response is stale\""));
}

/// `Last-Modified` value (RFC 7231 date) for epoch milliseconds.
pub fn http_date(ms: i64) -> String {
    // actix's HttpDate formats with a fixed layout, several times faster than a chrono pattern.
    let secs = u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    header::HttpDate::from(time).to_string()
}

/// 200 with a JSON body.
pub fn ok_json(body: String) -> HttpResponse {
    HttpResponse::Ok().content_type(FHIR_JSON).body(body)
}

/// Add the version headers of a stored resource.
pub fn version_headers(b: &mut HttpResponseBuilder, version: i64, last_updated_ms: i64) {
    b.insert_header((header::ETAG, format!("W/\"{version}\"")));
    if last_updated_ms > 0 {
        b.insert_header((header::LAST_MODIFIED, http_date(last_updated_ms)));
    }
}

/// The answer to a create/update, honouring `Prefer: return=`.
pub fn written(ctx: &RequestContext, w: &Written) -> HttpResponse {
    let status = StatusCode::from_u16(w.status).unwrap_or(StatusCode::OK);
    let mut b = HttpResponse::build(status);
    version_headers(&mut b, w.version, w.last_updated_ms);
    let location = format!("{}/{}/{}/_history/{}", ctx.base(), w.rtype, w.id, w.version);
    if let Ok(v) = HeaderValue::from_str(&location) {
        b.insert_header((header::LOCATION, v.clone()));
        if w.status == 201 {
            b.insert_header((header::CONTENT_LOCATION, v));
        }
    }
    b.extensions_mut()
        .insert(crate::api::audit::AuditEntity(format!(
            "{}/{}/_history/{}",
            w.rtype, w.id, w.version
        )));
    match ctx.prefer_return.unwrap_or(PreferReturn::Representation) {
        PreferReturn::Minimal => b.finish(),
        PreferReturn::OperationOutcome => {
            let verb = match (w.status, w.matched_existing) {
                (_, true) => "matched an existing resource; nothing was written",
                (201, _) => "created",
                _ => "updated",
            };
            let msg = format!("{}/{} version {} {verb}", w.rtype, w.id, w.version);
            b.content_type(FHIR_JSON)
                .body(operation_outcome(&[Issue::information("informational", msg)]).to_string())
        }
        PreferReturn::Representation => match &w.content {
            Some(c) => b.content_type(FHIR_JSON).body(c.clone()),
            None => b.finish(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    /// Issue 20, item 3: a statement stopped by the statement timeout is a 503 that says when to
    /// retry, with an OperationOutcome of code `timeout`; the database is not "busy".
    #[test]
    fn a_statement_timeout_is_503_with_retry_after() {
        let res = FhirError::from(StoreError::Timeout).error_response();
        assert_eq!(res.status().as_u16(), 503);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "5");
        let busy = FhirError::from(StoreError::Busy).error_response();
        assert_eq!(busy.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let e = FhirError::from(StoreError::Timeout);
        assert_eq!(e.issues[0].code, "timeout");
        assert!(e.issues[0].diagnostics.contains("statement_timeout_ms"));
    }

    #[test]
    fn http_dates_are_rfc_7231() {
        assert_eq!(super::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            super::http_date(1_700_000_000_999),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }
}
