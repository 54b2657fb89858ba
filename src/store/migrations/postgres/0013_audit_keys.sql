-- Who and what an audit row concerns, for `AuditEvent?patient=` and `?entity=` (issue 19,
-- docs/audit.md "Finding a citizen's records"). The two B-tree indexes on audit_log's patient and
-- entity columns put each record's keys at a random place in trees as large as the trail: about a
-- page written per key, most of an audited read's cost. The search's `LIKE` on versioned
-- entities could not use them either. Instead, `src/store/audit_log/keys.rs` copies the keys of
-- rows already in the hash chain into audit_keys in sorted runs, by levels: level 1 takes the
-- newest rows a few thousand at a time, and a level that outgrows its size is moved into the
-- next one, in key order. Each level is a contiguous range of the primary key, so a move writes
-- each page of the levels it touches once, not once per key. Rows past the mark (and rows not
-- yet sealed) are searched in audit_log itself.
DROP INDEX audit_log_patient;
DROP INDEX audit_log_entity;
CREATE TABLE audit_keys (
    level SMALLINT NOT NULL,
    -- a 64-bit hash (FNV-1a) of a `Type/id` without version: a row's entity, and its patient
    -- when that is a reference. The search checks the row's columns too, so a collision costs a
    -- look at one more row, never a wrong match.
    ref   BIGINT   NOT NULL,
    seq   BIGINT   NOT NULL,
    PRIMARY KEY (level, ref, seq)
);
-- Per level: how many keys it holds, and whether it is being moved into the next level.
CREATE TABLE audit_key_levels (
    level    SMALLINT NOT NULL PRIMARY KEY,
    entries  BIGINT   NOT NULL,
    draining SMALLINT NOT NULL
);
-- The chain position up to which rows' keys are in audit_keys.
CREATE TABLE audit_key_mark (
    id   SMALLINT NOT NULL PRIMARY KEY,
    upto BIGINT   NOT NULL
);
INSERT INTO audit_key_mark (id, upto) VALUES (1, 0);
