-- KPI facts (issue #18): the values the care-flow figures need, kept in `search_index` beside a
-- care record's CarePlans, Encounters and Goals so that the KPI statements never read the
-- resources' JSON (`store/kpis.rs`, `facts`). The gateway writes them with each new version; this
-- derives them once for what was stored before, with the same JSON paths the statements used.
-- The resources concerned have an identifier of a municipality's care records.
CREATE TEMPORARY TABLE kpi_care_records AS
SELECT DISTINCT r.res_type, r.id, r.content::jsonb AS doc
FROM search_index i JOIN resources r ON r.res_type = i.res_type AND r.id = i.res_id AND r.deleted = 0
WHERE i.res_type IN ('CarePlan', 'Encounter', 'Goal') AND i.param = 'identifier'
  AND i.system LIKE 'http://sektorbro.dk/fhir/NamingSystem/care-record/%';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT res_type, id, 'kpi:start', '', doc #>> '{period,start}' FROM kpi_care_records
WHERE res_type IN ('CarePlan', 'Encounter') AND jsonb_typeof(doc #> '{period,start}') = 'string';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT res_type, id, 'kpi:end', '', doc #>> '{period,end}' FROM kpi_care_records
WHERE res_type IN ('CarePlan', 'Encounter') AND jsonb_typeof(doc #> '{period,end}') = 'string';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT res_type, id, 'kpi:achievement', '', doc #>> '{achievementStatus,coding,0,code}' FROM kpi_care_records
WHERE res_type = 'Goal' AND jsonb_typeof(doc #> '{achievementStatus,coding,0,code}') = 'string';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT res_type, id, 'kpi:phase', '', v #>> '{}' FROM (
  SELECT k.res_type, k.id, (SELECT e -> 'valueCode' FROM jsonb_array_elements(k.doc -> 'extension') WITH ORDINALITY AS x(e, n)
     WHERE e ->> 'url' = 'http://sektorbro.dk/fhir/StructureDefinition/rehab-phase' ORDER BY n LIMIT 1) AS v
  FROM kpi_care_records k
  WHERE k.res_type = 'CarePlan' AND jsonb_typeof(k.doc -> 'extension') = 'array'
) f WHERE jsonb_typeof(v) = 'string';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT res_type, id, 'kpi:ready', '', v #>> '{}' FROM (
  SELECT k.res_type, k.id, (SELECT e -> 'valueDateTime' FROM jsonb_array_elements(k.doc -> 'extension') WITH ORDINALITY AS x(e, n)
     WHERE e ->> 'url' = 'http://sektorbro.dk/fhir/StructureDefinition/ready-for-discharge' ORDER BY n LIMIT 1) AS v
  FROM kpi_care_records k
  WHERE k.res_type = 'Encounter' AND jsonb_typeof(k.doc -> 'extension') = 'array'
) f WHERE jsonb_typeof(v) = 'string';
DROP TABLE kpi_care_records;
