"""The client scenario with fhirpy (sync client): how a Python integration calls the gateway.

Run by tests/clients/run.sh against a freshly started gateway. Every answer also goes through
strict.check_response (fhirclient's strict R4 models) via requests' response hook.
"""

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

import strict
from steps import BASE, TOKEN, Skip, finish, step

CPR = "urn:oid:1.2.208.176.1.2"
CITIZEN = "0101451111"  # fictitious


def client(**headers):
    """A fhirpy client; headers FHIR needs per request (If-Match, If-None-Exist) go in
    extra_headers, which is fhirpy's way to send them."""
    return SyncFHIRClient(
        BASE,
        authorization=f"Bearer {TOKEN}",
        extra_headers=headers or None,
        requests_config={"hooks": {"response": [strict.check_response]}, "timeout": 30},
    )


fhir = client()
step = step("fhirpy")


@step
def capabilities():
    cs = fhir.execute("metadata", method="get")
    assert cs.resourceType == "CapabilityStatement" and cs.fhirVersion == "4.0.1"
    types = {r.type for r in cs.rest[0].resource}
    assert {"Patient", "CarePlan", "Goal"} <= types, types


def new_patient():
    return {
        "resourceType": "Patient",
        "identifier": [{"system": CPR, "value": CITIZEN}],
        "name": [{"family": "Jensen", "given": ["Ebba"]}],
        "birthDate": "1945-01-01",
    }


@step
def create_patient():
    fields = {k: v for k, v in new_patient().items() if k != "resourceType"}
    patient = fhir.resource("Patient", **fields)
    patient.save()
    assert patient.id and patient.meta.versionId == "1"
    return patient


@step
def conditional_create(patient):
    # fhirpy's get_or_create sends the criteria as the POST's query string (Aidbox's convention).
    # FHIR's conditional create is the If-None-Exist header, so the gateway refuses the query
    # string with 400 rather than silently creating a duplicate.
    try:
        fhir.resources("Patient").search(identifier=f"{CPR}|{CITIZEN}").get_or_create(
            fhir.resource("Patient", identifier=[{"system": CPR, "value": CITIZEN}])
        )
        raise AssertionError("a create with search parameters in its query string was accepted")
    except OperationOutcome as e:
        assert strict.LAST["status"] == 400, strict.LAST["status"]
        assert "If-None-Exist" in str(e), e
    # The standard way: the header, through fhirpy's extra_headers. It finds the Patient (200).
    conditional = client(**{"If-None-Exist": f"identifier={CPR}|{CITIZEN}"})
    same = conditional.execute("Patient", method="post", data=new_patient())
    assert strict.LAST["status"] == 200 and same["id"] == patient.id, (strict.LAST, same)
    # fhirpy's count() adds Aidbox's _totalMethod, an unknown search parameter: the gateway
    # refuses those (400) unless the client asks for FHIR's lenient handling.
    lenient = client(Prefer="handling=lenient")
    assert lenient.resources("Patient").search(identifier=f"{CPR}|{CITIZEN}").count() == 1


@step
def read_vread_update_with_if_match(patient):
    current = fhir.reference("Patient", patient.id).to_resource()
    assert current.get_by_path(["name", 0, "family"]) == "Jensen"
    v1 = fhir.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert v1.meta.versionId == "1"
    current["telecom"] = [{"system": "phone", "value": "+4512345678"}]
    # The resource is saved through a client that sends If-Match with the version it read.
    if_match_v1 = client(**{"If-Match": 'W/"1"'})
    v2 = if_match_v1.resource("Patient", **current.serialize())
    v2.save()
    assert v2.meta.versionId == "2", v2.meta
    try:  # a stale version is refused
        if_match_v1.resource("Patient", **current.serialize()).save()
        raise AssertionError("an update with a stale If-Match was accepted")
    except Exception:  # fhirpy raises MultipleResourcesFound for any 412
        assert strict.LAST["status"] == 412, strict.LAST["status"]


@step
def transaction_with_urn_uuid(patient):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6b4b7a1e-2f0a-4f39-9a35-0c6a1d2e9f01",
                "resource": {
                    "resourceType": "Goal",
                    "lifecycleStatus": "active",
                    "description": {"text": "Walk to the shop"},
                    "subject": {"reference": f"Patient/{patient.id}"},
                },
                "request": {"method": "POST", "url": "Goal"},
            },
            {
                "resource": {
                    "resourceType": "CarePlan",
                    "status": "active",
                    "intent": "plan",
                    "title": "Rehabilitation",
                    "subject": {"reference": f"Patient/{patient.id}"},
                    "goal": [{"reference": "urn:uuid:6b4b7a1e-2f0a-4f39-9a35-0c6a1d2e9f01"}],
                },
                "request": {"method": "POST", "url": "CarePlan"},
            },
        ],
    }
    answer = fhir.execute("", method="post", data=bundle)
    assert answer.type == "transaction-response"
    statuses = [e.response.status for e in answer.entry]
    assert all(s.startswith("201") for s in statuses), statuses
    goal_id = answer.entry[0].response.location.split("/")[1]
    location = answer.entry[1].response.location.rsplit("/_history", 1)[0]
    plan = fhir.reference(reference=location).to_resource()
    assert plan.goal[0].reference == f"Goal/{goal_id}", plan.goal
    return plan


@step
def chained_search_with_include(plan):
    found = (
        fhir.resources("CarePlan")
        .search(**{"patient.identifier": f"{CPR}|{CITIZEN}"})
        .include("CarePlan", "goal")
        .fetch_raw()
    )
    modes = sorted(e.search.mode for e in found.entry)
    assert modes == ["include", "match"], modes
    assert found.entry[0].resource.id == plan.id


@step
def paging(patient):
    for n in range(5):
        fhir.resource(
            "Goal",
            lifecycleStatus="proposed",
            description={"text": f"Goal {n}"},
            subject={"reference": f"Patient/{patient.id}"},
        ).save()
    # fhirpy follows the Bundle's next links while iterating; 2 per page means 3 pages.
    goals = list(fhir.resources("Goal").search(subject=f"Patient/{patient.id}").limit(2))
    assert len(goals) == 6, len(goals)
    assert len({g.id for g in goals}) == 6


@step
def history(patient):
    h = fhir.execute(f"Patient/{patient.id}/_history", method="get")
    assert h.type == "history"
    assert [e.resource.meta.versionId for e in h.entry] == ["2", "1"]


@step
def validate():
    ok = fhir.resources("Patient").execute(
        "$validate", data={"resourceType": "Patient", "birthDate": "1945-01-01"}
    )
    assert ok.resourceType == "OperationOutcome"
    assert not [i for i in ok.issue if i.severity in ("error", "fatal")], ok.issue
    try:
        bad = fhir.resources("Patient").execute(
            "$validate", data={"resourceType": "Patient", "birthDate": "1945-02-30"}
        )
    except OperationOutcome as e:  # a server may answer 422 as well as 200
        bad = e.resource
    assert [i for i in bad["issue"] if i["severity"] == "error"], bad


@step
def summary_and_elements(plan):
    # fhirpy's .elements() asks for _elements; the mandatory CarePlan.intent comes back too,
    # and the resource is tagged SUBSETTED, so strict models still accept it.
    sub = fhir.resources("CarePlan").search(_id=plan.id).elements("status", "subject").fetch()[0]
    assert sub.intent == "plan" and "title" not in sub
    assert any(t.code == "SUBSETTED" for t in sub.meta.tag), sub.meta
    summary = fhir.resources("CarePlan").search(_id=plan.id, _summary="true").fetch()[0]
    assert summary.status == "active" and summary.intent == "plan"
    assert any(t.code == "SUBSETTED" for t in summary.meta.tag), summary.meta


@step
def patch(plan):
    # fhirpy's patch() sends a partial resource (a merge patch), which FHIR R4 does not define;
    # the gateway takes JSON Patch, sent here with fhirpy's execute and the media type.
    patcher = client(**{"Content-Type": "application/json-patch+json"})
    patched = patcher.execute(
        f"CarePlan/{plan.id}",
        method="patch",
        data=[{"op": "replace", "path": "/title", "value": "Rehabilitation at home"}],
    )
    assert patched.title == "Rehabilitation at home"
    assert patched.meta.versionId == "2"


@step
def delete_then_gone(patient):
    goal = fhir.resource(
        "Goal",
        lifecycleStatus="proposed",
        description={"text": "To be deleted"},
        subject={"reference": f"Patient/{patient.id}"},
    )
    goal.save()
    goal.delete()
    try:
        fhir.reference("Goal", goal.id).to_resource()
        raise AssertionError("a deleted resource is still read")
    except ResourceNotFound:
        assert strict.LAST["status"] == 410, strict.LAST["status"]


if __name__ == "__main__":
    capabilities()
    patient = create_patient()
    if patient is None:
        raise SystemExit("fhirpy: the first create failed; nothing else can run")
    conditional_create(patient)
    read_vread_update_with_if_match(patient)
    plan = transaction_with_urn_uuid(patient)
    chained_search_with_include(plan)
    paging(patient)
    history(patient)
    validate()
    summary_and_elements(plan)
    patch(plan)
    delete_then_gone(patient)
    finish("fhirpy", strict.CHECKED["responses"])
