-- The audit trail in compact rows (issue #19): one row per audited attempt, rendered as an IHE BALP
-- AuditEvent when read or searched (`/fhir/AuditEvent/{seq}`). Sizes are bounded by the writer
-- (`audit::compact`): path segments, the query (`audit.max_query_bytes`) and the failure text are
-- cut. `chain_pos` and `hash` are set when the row is sealed into the hash chain (the sealer, or
-- verify reading them back); rows not yet sealed have neither.
CREATE TABLE audit_log (
    seq         BIGSERIAL PRIMARY KEY,
    recorded_ms BIGINT   NOT NULL,
    -- the interaction: a restful-interaction code, `$name` for an operation, or our own code
    kind        TEXT     NOT NULL,
    action      TEXT     NOT NULL,
    outcome     SMALLINT NOT NULL,
    status      SMALLINT,
    -- who: the client id, its kind, how it authenticated, the organizations it acts for
    -- (newline-separated)
    client      TEXT,
    client_kind TEXT,
    auth        TEXT,
    orgs        TEXT,
    peer        TEXT,
    -- what: the resource type and the resource (`Type/id[/_history/v]`)
    rtype       TEXT,
    entity      TEXT,
    -- which citizen: `Patient/id`, or `system|value` of a person identifier (CPR)
    patient     TEXT,
    query       TEXT,
    query_len   BIGINT,
    request_id  TEXT,
    failure     TEXT,
    -- a forwarding attempt (JSON: message id, destination, URL, attempt, result)
    forward     TEXT,
    chain_pos   BIGINT,
    hash        TEXT
);
CREATE INDEX audit_log_time ON audit_log (recorded_ms);
CREATE INDEX audit_log_patient ON audit_log (patient) WHERE patient IS NOT NULL;
CREATE INDEX audit_log_entity ON audit_log (entity) WHERE entity IS NOT NULL;
CREATE INDEX audit_log_client ON audit_log (client) WHERE client IS NOT NULL;
CREATE UNIQUE INDEX audit_log_chain ON audit_log (chain_pos) WHERE chain_pos IS NOT NULL;
CREATE INDEX audit_log_unsealed ON audit_log (seq) WHERE chain_pos IS NULL;
-- Where the chain starts after retention pruned its beginning: the position and hash of the
-- last pruned row, which the first kept row chains to.
CREATE TABLE audit_anchor (
    id        SMALLINT NOT NULL PRIMARY KEY,
    chain_pos BIGINT   NOT NULL,
    hash      TEXT     NOT NULL,
    pruned_ms BIGINT   NOT NULL
);
