"""The client scenario with fhirclient (SMART on FHIR's Python client, strict R4 models), and a
Bulk Data export followed to the end.

Run by tests/clients/run.sh against a freshly started gateway. Every answer also goes through
strict.check_response via the hook on fhirclient's requests session.
"""

import time
import uuid
from urllib.parse import urljoin

from fhirclient import client
from fhirclient.models.bundle import Bundle
from fhirclient.models.careplan import CarePlan
from fhirclient.models.goal import Goal
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException
from requests import HTTPError

import strict
from steps import BASE, TOKEN, Skip, finish, step

CPR = "urn:oid:1.2.208.176.1.2"
CITIZEN = "0101452222"  # fictitious

smart = client.FHIRClient(settings={"app_id": "sektorbro-client-tests", "api_base": BASE})
server = smart.server
# fhirclient signs requests only after a SMART launch; a backend service with a token it got
# elsewhere sets the header on the client's requests session, which every call goes through.
server.session.headers["Authorization"] = f"Bearer {TOKEN}"
server.session.hooks["response"].append(strict.check_response)
step = step("fhirclient")


@step
def capabilities():
    cs = server.capabilityStatement  # parsed into the strict CapabilityStatement model
    assert cs.fhirVersion == "4.0.1"
    # fhirclient read the SMART oauth-uris extension from the statement's security.
    assert server.auth is not None and server.auth.auth_type == "oauth2", server.auth
    # A backend service finds its token endpoint in SMART discovery (open, no token needed).
    smart_config = server.session.get(f"{BASE}/.well-known/smart-configuration").json()
    assert smart_config["token_endpoint"] == "https://login.sektorbro.test/realms/clients/token"
    assert "client_credentials" in smart_config["grant_types_supported"]
    return cs


@step
def create_read_update(cs):
    patient = Patient(
        {
            "identifier": [{"system": CPR, "value": CITIZEN}],
            "name": [{"family": "Nielsen", "given": ["Karl"]}],
            "birthDate": "1945-02-02",
        }
    )
    created = Patient(patient.create(server))
    read = Patient.read(created.id, server)
    assert read.name[0].family == "Nielsen" and read.meta.versionId == "1"
    read.gender = "male"
    updated = Patient(read.update())
    assert updated.meta.versionId == "2" and updated.gender == "male"
    return updated


@step
def transaction_with_urn_uuid(patient):
    goal_ref = f"urn:uuid:{uuid.uuid4()}"
    tx = Bundle(
        {
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": goal_ref,
                    "resource": {
                        "resourceType": "Goal",
                        "lifecycleStatus": "active",
                        "description": {"text": "Dress without help"},
                        "subject": {"reference": f"Patient/{patient.id}"},
                    },
                    "request": {"method": "POST", "url": "Goal"},
                },
                {
                    "resource": {
                        "resourceType": "CarePlan",
                        "status": "active",
                        "intent": "plan",
                        "subject": {"reference": f"Patient/{patient.id}"},
                        "goal": [{"reference": goal_ref}],
                    },
                    "request": {"method": "POST", "url": "CarePlan"},
                },
            ],
        }
    )
    answer = Bundle(tx.create(server))
    assert answer.type == "transaction-response"
    return [e.response.location.split("/_history")[0] for e in answer.entry]


@step
def chained_search_with_include(locations):
    search = CarePlan.where({"patient.identifier": f"{CPR}|{CITIZEN}"}).include("goal")
    bundle = next(search.perform_iter(server))
    found = {f"{e.resource.resource_type}/{e.resource.id}": e.search.mode for e in bundle.entry}
    assert found == {locations[0]: "include", locations[1]: "match"}, found


@step
def paging(patient):
    for n in range(4):
        Goal(
            {
                "lifecycleStatus": "proposed",
                "description": {"text": f"Goal {n}"},
                "subject": {"reference": f"Patient/{patient.id}"},
            }
        ).create(server)
    # perform_resources_iter follows the next links; 2 per page.
    search = Goal.where({"subject": f"Patient/{patient.id}", "_count": "2"})
    pages = list(search.perform_iter(server))
    goals = [e.resource for page in pages for e in page.entry]
    assert len(pages) == 3 and len({g.id for g in goals}) == 5, (len(pages), len(goals))


@step
def elements_and_summary(locations):
    plan_id = locations[1].split("/")[1]
    for extra in ({"_elements": "status,subject"}, {"_summary": "true"}, {"_summary": "data"}):
        bundle = next(CarePlan.where({"_id": plan_id, **extra}).perform_iter(server))
        plan = bundle.entry[0].resource  # a strict CarePlan: intent (1..1) is there
        assert plan.intent == "plan" and plan.status == "active"
    read = CarePlan.read_from(f"CarePlan/{plan_id}?_elements=status", server)
    assert read.intent == "plan" and any(t.code == "SUBSETTED" for t in read.meta.tag)


@step
def delete_then_gone(locations):
    goal = Goal.read_from(locations[0], server)
    goal.delete()
    try:
        Goal.read_from(locations[0], server)
        raise AssertionError("a deleted resource is still read")
    except HTTPError as e:
        assert e.response.status_code == 410, e.response.status_code
    except FHIRNotFoundException as e:
        raise AssertionError("a deleted resource answers 404, not 410") from e


@step
def bulk_export(cs):
    """Bulk Data Access IG 2.0: kick-off with Prefer: respond-async, poll Content-Location,
    fetch every output file with the same authorization."""
    ops = {op.name for op in (cs.rest[0].operation or [])}
    if "export" not in ops:
        raise Skip("the CapabilityStatement declares no $export operation")
    http = server.session  # carries the token and the strict-model hook
    kick = http.get(
        f"{BASE}/$export",
        params={"_type": "Patient,CarePlan,Goal", "_outputFormat": "application/fhir+ndjson"},
        headers={"Accept": "application/fhir+json", "Prefer": "respond-async"},
    )
    assert kick.status_code == 202, (kick.status_code, kick.text)
    status_url = urljoin(f"{BASE}/", kick.headers["Content-Location"])  # absolute per the IG
    deadline = time.monotonic() + 120
    while True:
        poll = http.get(status_url, headers={"Accept": "application/json"})
        if poll.status_code != 202:
            break
        assert time.monotonic() < deadline, "the export did not finish within 120 s"
        time.sleep(min(float(poll.headers.get("Retry-After", "1")), 2.0))
    assert poll.status_code == 200, (poll.status_code, poll.text)
    manifest = poll.json()
    assert "$export" in manifest["request"] and manifest["requiresAccessToken"] is True, manifest
    counts = {}
    for out in manifest["output"]:
        f = http.get(out["url"], headers={"Accept": "application/fhir+ndjson"})
        assert f.status_code == 200, (f.status_code, out)
        lines = [line for line in f.text.splitlines() if line.strip()]
        assert all(f'"resourceType":"{out["type"]}"' in line.replace(" ", "") for line in lines)
        counts[out["type"]] = counts.get(out["type"], 0) + len(lines)
    assert counts.get("Patient", 0) >= 1 and counts.get("CarePlan", 0) >= 1, counts
    # Tell the server the client is done with the files (the IG's delete request): 202.
    done = http.delete(status_url)
    assert done.status_code == 202, done.status_code


if __name__ == "__main__":
    cs = capabilities()
    patient = create_read_update(cs)
    if patient is None:
        raise SystemExit("fhirclient: the first create failed; nothing else can run")
    locations = transaction_with_urn_uuid(patient)
    chained_search_with_include(locations)
    paging(patient)
    elements_and_summary(locations)
    delete_then_gone(locations)
    bulk_export(cs)
    finish("fhirclient", strict.CHECKED["responses"])
