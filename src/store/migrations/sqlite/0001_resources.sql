-- Every version of every resource, in write order.
CREATE TABLE resource_versions (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type     TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL,
    method       TEXT    NOT NULL,
    content      TEXT,
    UNIQUE (res_type, id, version)
);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);

-- The current version of each resource id.
CREATE TABLE resources (
    res_type     TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL,
    content      TEXT,
    created_seq  INTEGER NOT NULL,
    PRIMARY KEY (res_type, id)
);
CREATE INDEX resources_order ON resources (res_type, created_seq);

-- Search values of current versions.
CREATE TABLE search_index (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    system   TEXT NOT NULL,
    value    TEXT NOT NULL,
    lo       INTEGER,
    hi       INTEGER,
    num      REAL
);
CREATE INDEX search_index_value ON search_index (res_type, param, value, system);
CREATE INDEX search_index_date ON search_index (res_type, param, lo, hi);
CREATE INDEX search_index_owner ON search_index (res_type, res_id, param);
