//! Writing Bundles as JSON text with stored resources spliced in verbatim, so a search page or
//! history page never parses and re-serializes the resources it returns.

use serde_json::{json, Value};

use crate::store::StoredResource;
use fhir_core::fhir::instant;

/// One Bundle entry: its JSON fields (`fullUrl`, `search`, `request`, `response`…) and the
/// resource as stored JSON text.
#[derive(Debug, Clone)]
pub struct BundleEntry {
    pub fields: Value,
    pub resource: Option<String>,
}

/// Serialize `head` (a Bundle without `entry`) with `entries` appended.
pub fn write(head: Value, entries: Vec<BundleEntry>) -> String {
    let mut out = head.to_string();
    if entries.is_empty() {
        return out;
    }
    out.pop(); // the closing '}' of the head object
    out.push_str(",\"entry\":[");
    for (n, entry) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let fields = entry.fields.to_string();
        match entry.resource {
            Some(resource) => {
                if fields.len() > 2 {
                    out.push_str(&fields[..fields.len() - 1]);
                    out.push_str(",\"resource\":");
                } else {
                    out.push_str("{\"resource\":");
                }
                out.push_str(&resource);
                out.push('}');
            }
            None => out.push_str(&fields),
        }
    }
    out.push_str("]}");
    out
}

/// `W/"n"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// A history entry for one stored version.
pub fn history_entry(base: &str, r: &StoredResource) -> BundleEntry {
    let method = if r.method.is_empty() {
        "PUT"
    } else {
        r.method.as_str()
    };
    let url = if method == "POST" {
        r.rtype.clone()
    } else {
        format!("{}/{}", r.rtype, r.id)
    };
    let status = match (r.deleted, r.version) {
        (true, _) => "204 No Content",
        (false, 1) => "201 Created",
        _ => "200 OK",
    };
    BundleEntry {
        fields: json!({
            "fullUrl": format!("{base}/{}/{}", r.rtype, r.id),
            "request": {"method": method, "url": url},
            "response": {
                "status": status,
                "etag": etag(r.version),
                "lastModified": instant(r.last_updated_ms),
            },
        }),
        resource: if r.deleted { None } else { r.content.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_spliced_into_valid_json() {
        let text = write(
            json!({"resourceType": "Bundle", "type": "searchset"}),
            vec![
                BundleEntry {
                    fields: json!({"fullUrl": "x"}),
                    resource: Some("{\"resourceType\":\"Patient\"}".into()),
                },
                BundleEntry {
                    fields: json!({}),
                    resource: Some("{\"resourceType\":\"Goal\"}".into()),
                },
                BundleEntry {
                    fields: json!({"response": {"status": "204 No Content"}}),
                    resource: None,
                },
            ],
        );
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["entry"][0]["resource"]["resourceType"], "Patient");
        assert_eq!(v["entry"][0]["fullUrl"], "x");
        assert_eq!(v["entry"][1]["resource"]["resourceType"], "Goal");
        assert_eq!(v["entry"][2]["response"]["status"], "204 No Content");
        assert_eq!(write(json!({"a": 1}), vec![]), "{\"a\":1}");
    }
}
