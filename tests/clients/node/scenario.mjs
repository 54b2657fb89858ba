// The client scenario with fhir-kit-client: how a JavaScript/TypeScript integration calls the
// gateway. Run by tests/clients/run.sh against a freshly started gateway.
//
// Every response body is recorded (method, url, status, Content-Type, body) to the file named by
// SEKTORBRO_RECORD; run.sh then parses each with fhirclient's strict R4 models (strict.py).
import { appendFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { Client } from 'fhir-kit-client';

const BASE = process.env.SEKTORBRO_FHIR_BASE; // http://127.0.0.1:PORT/fhir
const RECORD = process.env.SEKTORBRO_RECORD;

// fhir-kit-client calls the global fetch; record what comes back before the client reads it.
const realFetch = globalThis.fetch;
globalThis.fetch = async (request, init) => {
  const response = await realFetch(request, init);
  const body = await response.clone().text();
  appendFileSync(RECORD, `${JSON.stringify({
    method: request.method ?? init?.method ?? 'GET',
    url: request.url ?? String(request),
    status: response.status,
    contentType: response.headers.get('content-type'),
    body,
  })}\n`);
  return response;
};

const client = new Client({ baseUrl: BASE, bearerToken: process.env.SEKTORBRO_DEV_TOKEN });
const CPR = 'urn:oid:1.2.208.176.1.2';
const CITIZEN = '0101453333'; // fictitious
const statusOf = (resource) => Client.httpFor(resource).response.status;
/** The HTTP status of a refused request (fhir-kit-client throws with `response.status`). */
async function refusal(promise) {
  try {
    await promise;
  } catch (e) {
    return e.response.status;
  }
  assert.fail('the request was accepted');
}

const results = { passed: 0, failed: 0 };
async function step(name, fn) {
  try {
    const out = await fn();
    results.passed += 1;
    console.log(`ok   fhir-kit-client: ${name}`);
    return out;
  } catch (e) {
    results.failed += 1;
    console.log(`FAIL fhir-kit-client: ${name}\n${e.stack}\n${JSON.stringify(e.response?.data ?? '')}`);
    return undefined;
  }
}

const patient = {
  resourceType: 'Patient',
  identifier: [{ system: CPR, value: CITIZEN }],
  name: [{ family: 'Larsen', given: ['Inge'] }],
  birthDate: '1945-03-03',
};

await step('capabilities', async () => {
  const cs = await client.capabilityStatement();
  assert.equal(cs.fhirVersion, '4.0.1');
  const careplan = cs.rest[0].resource.find((r) => r.type === 'CarePlan');
  assert.ok(careplan.interaction.some((i) => i.code === 'patch'), 'PATCH is declared');
});

await step('SMART discovery', async () => {
  // Races .well-known/smart-configuration, the CapabilityStatement's oauth-uris and OpenID's
  // configuration; the gateway publishes the first two (tests/clients/gateway.toml's issuer).
  const auth = await client.smartAuthMetadata();
  assert.equal(auth.tokenUrl?.href, 'https://login.sektorbro.test/realms/clients/token');
});

const created = await step('create, and conditional create with If-None-Exist', async () => {
  const first = await client.create({ resourceType: 'Patient', body: patient });
  assert.equal(statusOf(first), 201);
  // fhir-kit-client has no conditional-create helper: the header goes in options.headers.
  const options = { headers: { 'If-None-Exist': `identifier=${CPR}|${CITIZEN}` } };
  const again = await client.create({ resourceType: 'Patient', body: patient, options });
  assert.equal(statusOf(again), 200);
  assert.equal(again.id, first.id);
  return first;
});
if (!created) process.exit(1);

await step('read, vread, update with If-Match', async () => {
  const read = await client.read({ resourceType: 'Patient', id: created.id });
  const v1 = await client.vread({ resourceType: 'Patient', id: created.id, version: '1' });
  assert.deepEqual(read, v1);
  const body = { ...read, gender: 'female' };
  const ifMatch = (v) => ({ headers: { 'If-Match': `W/"${v}"` } });
  const v2 = await client.update({ resourceType: 'Patient', id: created.id, body, options: ifMatch(1) });
  assert.equal(v2.meta.versionId, '2');
  assert.equal(Client.httpFor(v2).response.headers.get('etag'), 'W/"2"');
  const stale = client.update({ resourceType: 'Patient', id: created.id, body, options: ifMatch(1) });
  assert.equal(await refusal(stale), 412);
});

const tx = await step('transaction with urn:uuid references', async () => {
  const goalUrn = 'urn:uuid:0d6a8f2c-3b7e-4c11-9d2a-5e8f1a2b3c4d';
  const bundle = await client.transaction({
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: goalUrn,
          resource: {
            resourceType: 'Goal', lifecycleStatus: 'active',
            description: { text: 'Cook a meal' }, subject: { reference: `Patient/${created.id}` },
          },
          request: { method: 'POST', url: 'Goal' },
        },
        {
          resource: {
            resourceType: 'CarePlan', status: 'active', intent: 'plan', title: 'Everyday skills',
            subject: { reference: `Patient/${created.id}` }, goal: [{ reference: goalUrn }],
          },
          request: { method: 'POST', url: 'CarePlan' },
        },
      ],
    },
  });
  assert.equal(bundle.type, 'transaction-response');
  const [goal, plan] = bundle.entry.map((e) => e.response.location.split('/_history')[0]);
  const stored = await client.request(plan);
  assert.equal(stored.goal[0].reference, goal);
  return { goalId: goal.split('/')[1], planId: plan.split('/')[1] };
});

await step('chained search with _include', async () => {
  const bundle = await client.search({
    resourceType: 'CarePlan',
    searchParams: { 'patient.identifier': `${CPR}|${CITIZEN}`, _include: 'CarePlan:goal' },
  });
  const modes = bundle.entry.map((e) => `${e.resource.resourceType}:${e.search.mode}`).sort();
  assert.deepEqual(modes, ['CarePlan:match', 'Goal:include']);
});

await step('paging with nextPage', async () => {
  for (let n = 0; n < 4; n += 1) {
    await client.create({
      resourceType: 'Goal',
      body: {
        resourceType: 'Goal', lifecycleStatus: 'proposed',
        description: { text: `Goal ${n}` }, subject: { reference: `Patient/${created.id}` },
      },
    });
  }
  const ids = new Set();
  let page = await client.search({
    resourceType: 'Goal', searchParams: { subject: `Patient/${created.id}`, _count: 2 },
  });
  let pages = 0;
  while (page) {
    pages += 1;
    (page.entry ?? []).forEach((e) => ids.add(e.resource.id));
    page = await client.nextPage({ bundle: page }); // undefined after the last page
  }
  assert.equal(pages, 3);
  assert.equal(ids.size, 5);
});

await step('history', async () => {
  const history = await client.history({ resourceType: 'Patient', id: created.id });
  assert.equal(history.type, 'history');
  assert.deepEqual(history.entry.map((e) => e.resource.meta.versionId), ['2', '1']);
});

await step('$validate', async () => {
  const outcome = await client.operation({
    resourceType: 'Patient', name: '$validate',
    input: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: patient }] },
  });
  assert.equal(outcome.resourceType, 'OperationOutcome');
  assert.ok(!outcome.issue.some((i) => i.severity === 'error'), JSON.stringify(outcome));
});

await step('_summary and _elements', async () => {
  const bundle = await client.search({
    resourceType: 'CarePlan', searchParams: { _id: tx.planId, _elements: 'title' },
  });
  const plan = bundle.entry[0].resource;
  assert.equal(plan.title, 'Everyday skills');
  assert.equal(plan.intent, 'plan'); // mandatory elements come back with what was asked for
  assert.ok(plan.meta.tag.some((t) => t.code === 'SUBSETTED'));
  const count = await client.search({
    resourceType: 'Goal', searchParams: { subject: `Patient/${created.id}`, _summary: 'count' },
  });
  assert.equal(count.total, 5);
  assert.equal(count.entry, undefined);
});

await step('PATCH with JSON Patch', async () => {
  const patched = await client.patch({
    resourceType: 'CarePlan', id: tx.planId,
    jsonPatch: [
      { op: 'test', path: '/status', value: 'active' },
      { op: 'replace', path: '/title', value: 'Everyday skills at home' },
    ],
    options: { headers: { 'If-Match': 'W/"1"' } },
  });
  assert.equal(patched.title, 'Everyday skills at home');
  assert.equal(patched.meta.versionId, '2');
  const failing = client.patch({
    resourceType: 'CarePlan', id: tx.planId,
    jsonPatch: [{ op: 'test', path: '/status', value: 'draft' }],
  });
  assert.equal(await refusal(failing), 422);
});

await step('delete, then 410 Gone', async () => {
  await client.delete({ resourceType: 'Goal', id: tx.goalId });
  assert.equal(await refusal(client.read({ resourceType: 'Goal', id: tx.goalId })), 410);
});

console.log(`fhir-kit-client: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
