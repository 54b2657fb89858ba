-- Report facts (issue #21, Speed): one row per municipal care record, keyed by its course
-- CarePlan, with the compact facts the KL Gateway reports read (`store/report_facts.rs`,
-- `report/facts.rs`). `parts` is the record's part system (every other resource of the record
-- has an identifier in it); `citizen` the course CarePlan's Patient id; `live` 0 once the
-- CarePlan is deleted or no longer a course; `facts` NULL while stale (not known to match the
-- resources), `stamp` counts the times the row was made stale.
CREATE TABLE report_facts (
    plan_id      TEXT NOT NULL PRIMARY KEY,
    municipality TEXT NOT NULL,
    parts        TEXT NOT NULL,
    citizen      TEXT NOT NULL,
    live         SMALLINT NOT NULL,
    stamp        BIGINT NOT NULL,
    kind         TEXT,
    facts        TEXT
);
CREATE INDEX report_facts_order ON report_facts (municipality, citizen, plan_id);
CREATE INDEX report_facts_parts ON report_facts (parts);
-- The records stored before: a stale row for each course CarePlan (an identifier whose system is
-- a municipality's care-record system, `http://sektorbro.dk/fhir/NamingSystem/care-record/{code}`,
-- 50 characters and the code). The gateway fills in their facts in the background at start, and
-- a report rebuilds what is still stale from the resources.
INSERT INTO report_facts (plan_id, municipality, parts, citizen, live, stamp, kind, facts)
SELECT i.res_id, substr(i.system, 51), i.system || '/' || i.value, COALESCE(r.citizen, ''), 1, 0, NULL, NULL
FROM search_index i JOIN resources r ON r.res_type = 'CarePlan' AND r.id = i.res_id AND r.deleted = 0
WHERE i.res_type = 'CarePlan' AND i.param = 'identifier' AND i.value <> ''
  AND substr(i.system, 1, 50) = 'http://sektorbro.dk/fhir/NamingSystem/care-record/'
  AND length(i.system) > 50 AND instr(substr(i.system, 51), '/') = 0
ON CONFLICT (plan_id) DO NOTHING;
