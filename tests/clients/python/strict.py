"""Every response body the gateway sends must parse with fhirclient's strict R4 models.

`check_response` is a `requests` response hook: fhirpy (sync client) and fhirclient both talk
through `requests`, so the scenarios install it once and every answer is checked, including error
OperationOutcomes and Bulk Data NDJSON files. `check_recorded` does the same for the bodies the
Node scenario recorded.
"""

import json
import sys

from fhirclient.models.fhirelementfactory import FHIRElementFactory


class NotStrictR4(AssertionError):
    pass


def parse_resource(obj, where):
    """Parse one resource with the strict R4 model of its type (raises on unknown, missing
    mandatory or wrongly typed elements)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("resourceType"), str):
        raise NotStrictR4(f"{where}: not a FHIR resource: {str(obj)[:200]}")
    rtype = obj["resourceType"]
    try:
        model = FHIRElementFactory.instantiate(rtype, obj)
    except Exception as e:  # FHIRValidationError and the TypeErrors the models raise
        raise NotStrictR4(f"{where}: {rtype} does not parse with fhirclient's R4 model: {e}") from e
    if getattr(model, "resource_type", None) != rtype:
        raise NotStrictR4(f"{where}: {rtype} is not an R4 resource type")
    return model


def check_body(content_type, text, where, url=""):
    """Parse a response body by its media type; returns how many resources it held."""
    media = (content_type or "").split(";")[0].strip().lower()
    if not text.strip():
        return 0
    if url.split("?")[0].endswith("/.well-known/smart-configuration") and media == "application/json":
        check_smart_configuration(json.loads(text), where)  # SMART's JSON, not a FHIR resource
        return 0
    if media == "application/fhir+ndjson":
        lines = [line for line in text.splitlines() if line.strip()]
        for n, line in enumerate(lines, 1):
            parse_resource(json.loads(line), f"{where} line {n}")
        return len(lines)
    if media in ("application/fhir+json", "application/json"):
        body = json.loads(text)
        if isinstance(body, dict) and "resourceType" not in body and "transactionTime" in body:
            check_bulk_manifest(body, where)  # the one JSON answer that is not a resource
            return 0
        parse_resource(body, where)
        return 1
    raise NotStrictR4(f"{where}: unexpected Content-Type {content_type!r}")


def check_smart_configuration(c, where):
    """SMART discovery (App Launch 2.x, Backend Services): the fields a backend client reads."""
    for key in ("token_endpoint", "grant_types_supported", "capabilities"):
        if key not in c:
            raise NotStrictR4(f"{where}: SMART configuration without {key}")


def check_bulk_manifest(m, where):
    """A Bulk Data complete-status manifest (Bulk Data Access IG 2.0): its required fields, and
    the OperationOutcomes its error files point at are checked when they are fetched."""
    for key, typ in (("transactionTime", str), ("request", str), ("requiresAccessToken", bool),
                     ("output", list), ("error", list)):
        if not isinstance(m.get(key), typ):
            raise NotStrictR4(f"{where}: Bulk Data manifest without {key} ({typ.__name__})")
    for o in m["output"] + m["error"]:
        if not (isinstance(o.get("type"), str) and isinstance(o.get("url"), str)):
            raise NotStrictR4(f"{where}: Bulk Data manifest output without type and url: {o}")


CHECKED = {"responses": 0}
# The last answer seen, for the few statuses a client does not surface (410 after a delete).
LAST = {}


def check_response(response, *args, **kwargs):
    """requests hook: parse the body, fail the scenario if it is not strict R4."""
    where = f"{response.request.method} {response.url} -> {response.status_code}"
    check_body(response.headers.get("Content-Type"), response.text, where, response.url)
    CHECKED["responses"] += 1
    LAST["status"] = response.status_code
    LAST["headers"] = response.headers
    return response


def check_recorded(path):
    """Check the bodies a scenario recorded as JSON lines of {method, url, status, contentType, body}."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            where = f"{rec['method']} {rec['url']} -> {rec['status']}"
            check_body(rec["contentType"], rec["body"], where, rec["url"])
            n += 1
    return n


if __name__ == "__main__":
    total = check_recorded(sys.argv[1])
    print(f"strict R4 models: {total} recorded responses parsed")
