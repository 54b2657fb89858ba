-- The KPI table (issue #18): one row per care course, temporary stay, care-record Goal,
-- discharge note and Patient with a CPR number (its hashed citizen key), holding the values the
-- care-flow figures need (`store/kpis.rs`). The gateway writes a resource's row with each of its versions, in the same transaction, and removes it
-- with a deletion. It replaces the `kpi:*` rows of `search_index` (migration 0008), which are
-- dropped: the table is the one source of these facts. The rows of the resources stored before
-- are derived after this script by the gateway's own code (`kpis::backfill`), in the same
-- transaction.
CREATE TABLE kpi_facts (
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    municipality TEXT    NOT NULL,
    record       TEXT    NOT NULL,
    owner        TEXT,
    citizen      TEXT,
    lo           BIGINT,
    hi           BIGINT,
    start_at     TEXT,
    end_at       TEXT,
    start_ms     BIGINT,
    ready_ms     BIGINT,
    end_ms       BIGINT,
    code         TEXT,
    subject      TEXT,
    warnings     BIGINT,
    PRIMARY KEY (res_type, res_id)
);
-- Courses and notes by period; stays by municipality.
CREATE INDEX kpi_facts_period ON kpi_facts (municipality, kind, lo);
-- The Goals of a set of records.
CREATE INDEX kpi_facts_record ON kpi_facts (municipality, kind, record);
DELETE FROM search_index WHERE res_type IN ('CarePlan', 'Encounter', 'Goal')
  AND param IN ('kpi:start', 'kpi:end', 'kpi:ready', 'kpi:phase', 'kpi:achievement');
