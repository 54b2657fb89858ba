-- Every version of every resource, in write order.
CREATE TABLE resource_versions (
    seq          BIGSERIAL PRIMARY KEY,
    res_type     TEXT     NOT NULL,
    id           TEXT     NOT NULL,
    version      BIGINT   NOT NULL,
    last_updated BIGINT   NOT NULL,
    deleted      SMALLINT NOT NULL,
    method       TEXT     NOT NULL,
    content      TEXT,
    UNIQUE (res_type, id, version)
);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);
CREATE INDEX resource_versions_type ON resource_versions (res_type, seq);

-- The current version of each resource id.
CREATE TABLE resources (
    res_type     TEXT     NOT NULL,
    id           TEXT     NOT NULL,
    version      BIGINT   NOT NULL,
    last_updated BIGINT   NOT NULL,
    deleted      SMALLINT NOT NULL,
    content      TEXT,
    created_seq  BIGINT   NOT NULL,
    PRIMARY KEY (res_type, id)
);
CREATE INDEX resources_order ON resources (res_type, created_seq);

-- Search values of current versions.
CREATE TABLE search_index (
    res_type TEXT   NOT NULL,
    res_id   TEXT   NOT NULL,
    param    TEXT   NOT NULL,
    system   TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    lo       BIGINT,
    hi       BIGINT,
    num      DOUBLE PRECISION
);
CREATE INDEX search_index_value ON search_index (res_type, param, value, system);
CREATE INDEX search_index_date ON search_index (res_type, param, lo, hi);
CREATE INDEX search_index_owner ON search_index (res_type, res_id, param);
