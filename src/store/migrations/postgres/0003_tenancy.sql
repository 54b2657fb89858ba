-- Tenancy (issue #7). `owner` is the organization identifier (`system|value`) that owns a
-- resource id, set by the gateway on its first write and never changed. NULL: the gateway's own
-- (audit) or written before tenancy, visible to administrators only. `citizen` is the id of the
-- Patient the version is about, if any (grants name citizens).
ALTER TABLE resources ADD COLUMN owner TEXT;
ALTER TABLE resources ADD COLUMN citizen TEXT;
ALTER TABLE resource_versions ADD COLUMN owner TEXT;
ALTER TABLE resource_versions ADD COLUMN citizen TEXT;
CREATE INDEX resources_owner ON resources (owner, res_type);

-- What an owner has let another organization read: everything it owns about one citizen
-- (a discharge note addressed to a region, or an explicit share). Grants are never revoked by
-- a write to the resources: they only add.
CREATE TABLE access_grants (
    grantee    TEXT NOT NULL,
    owner      TEXT NOT NULL,
    citizen    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    granted_ms BIGINT NOT NULL,
    PRIMARY KEY (grantee, owner, citizen)
);
