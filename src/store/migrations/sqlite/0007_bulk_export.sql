-- Bulk Data exports (issue 16 item 8; docs/bulk.md): one row per kick-off, durable so that an
-- export survives a restart. The caller's rights are kept as they were at kick-off (client id,
-- kind, organizations, granted scopes), so the job exports exactly what that caller could search.
-- The NDJSON files live in `[bulk] export_dir`/<id>/; `output` lists them once the job is done.
CREATE TABLE bulk_jobs (
    id            TEXT   PRIMARY KEY,
    client_id     TEXT   NOT NULL,
    client_kind   TEXT   NOT NULL,
    -- JSON array of `system|value` organization identifiers.
    organizations TEXT   NOT NULL,
    scopes        TEXT   NOT NULL,
    -- The kick-off request as the client sent it (the manifest's `request`).
    request       TEXT   NOT NULL,
    -- JSON: level (system, patient, group), group id, types, since, type filters.
    spec          TEXT   NOT NULL,
    -- accepted, in-progress, completed, failed
    status        TEXT   NOT NULL,
    progress      TEXT   NOT NULL,
    created_ms    BIGINT NOT NULL,
    -- When the current (or last) run began: the manifest's transactionTime.
    transaction_ms BIGINT,
    finished_ms   BIGINT,
    -- Files and row gone after this instant (finished_ms + retention_secs).
    expires_ms    BIGINT,
    -- JSON array of {type, file, count}; JSON array of OperationOutcome issues for a failure.
    output        TEXT,
    error         TEXT,
    attempts      BIGINT NOT NULL,
    -- The instance running it and until when; an expired lease lets another instance take over.
    lease_owner   TEXT,
    lease_until   BIGINT
);
CREATE INDEX bulk_jobs_status ON bulk_jobs (status, created_ms);
CREATE INDEX bulk_jobs_client ON bulk_jobs (client_id, status);
