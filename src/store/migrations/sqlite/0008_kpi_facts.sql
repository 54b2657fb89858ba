-- KPI facts (issue #18): the values the care-flow figures need, kept in `search_index` beside a
-- care record's CarePlans, Encounters and Goals so that the KPI statements never read the
-- resources' JSON (`store/kpis.rs`, `facts`). The gateway writes them with each new version; this
-- derives them once for what was stored before, with the same JSON paths the statements used.
-- The resources concerned have an identifier of a municipality's care records.
CREATE TEMPORARY TABLE kpi_care_records AS
SELECT DISTINCT i.res_type, i.res_id FROM search_index i
WHERE i.res_type IN ('CarePlan', 'Encounter', 'Goal') AND i.param = 'identifier'
  AND i.system LIKE 'http://sektorbro.dk/fhir/NamingSystem/care-record/%';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT r.res_type, r.id, 'kpi:start', '', json_extract(r.content, '$.period.start')
FROM resources r JOIN kpi_care_records k ON k.res_type = r.res_type AND k.res_id = r.id
WHERE r.res_type IN ('CarePlan', 'Encounter') AND r.deleted = 0
  AND json_type(r.content, '$.period.start') = 'text';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT r.res_type, r.id, 'kpi:end', '', json_extract(r.content, '$.period.end')
FROM resources r JOIN kpi_care_records k ON k.res_type = r.res_type AND k.res_id = r.id
WHERE r.res_type IN ('CarePlan', 'Encounter') AND r.deleted = 0
  AND json_type(r.content, '$.period.end') = 'text';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT r.res_type, r.id, 'kpi:achievement', '', json_extract(r.content, '$.achievementStatus.coding[0].code')
FROM resources r JOIN kpi_care_records k ON k.res_type = r.res_type AND k.res_id = r.id
WHERE r.res_type = 'Goal' AND r.deleted = 0
  AND json_type(r.content, '$.achievementStatus.coding[0].code') = 'text';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT res_type, id, 'kpi:phase', '', v FROM (
  SELECT r.res_type, r.id, (SELECT json_extract(e.value, '$.valueCode') FROM json_each(r.content, '$.extension') e
     WHERE json_extract(e.value, '$.url') = 'http://sektorbro.dk/fhir/StructureDefinition/rehab-phase' LIMIT 1) AS v,
    (SELECT json_type(e.value, '$.valueCode') FROM json_each(r.content, '$.extension') e
     WHERE json_extract(e.value, '$.url') = 'http://sektorbro.dk/fhir/StructureDefinition/rehab-phase' LIMIT 1) AS t
  FROM resources r JOIN kpi_care_records k ON k.res_type = r.res_type AND k.res_id = r.id
  WHERE r.res_type = 'CarePlan' AND r.deleted = 0
) WHERE t = 'text';
INSERT INTO search_index (res_type, res_id, param, system, value)
SELECT res_type, id, 'kpi:ready', '', v FROM (
  SELECT r.res_type, r.id, (SELECT json_extract(e.value, '$.valueDateTime') FROM json_each(r.content, '$.extension') e
     WHERE json_extract(e.value, '$.url') = 'http://sektorbro.dk/fhir/StructureDefinition/ready-for-discharge' LIMIT 1) AS v,
    (SELECT json_type(e.value, '$.valueDateTime') FROM json_each(r.content, '$.extension') e
     WHERE json_extract(e.value, '$.url') = 'http://sektorbro.dk/fhir/StructureDefinition/ready-for-discharge' LIMIT 1) AS t
  FROM resources r JOIN kpi_care_records k ON k.res_type = r.res_type AND k.res_id = r.id
  WHERE r.res_type = 'Encounter' AND r.deleted = 0
) WHERE t = 'text';
DROP TABLE kpi_care_records;
