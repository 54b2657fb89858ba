-- Message ids are unique per sender, not across the gateway (issue 20): two tenants may use the
-- same Bundle.id, and neither may learn of the other's message through it. `sender` is the
-- organization (`system|value`) that submitted the message, '' for administrators and the
-- messages queued before senders were recorded. SQLite cannot drop a column's UNIQUE, so the
-- table is rebuilt with its rows and ids.
CREATE TABLE outbox_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    sender           TEXT    NOT NULL DEFAULT '',
    message_id       TEXT    NOT NULL,
    destination      TEXT    NOT NULL,
    ordering_key     TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    last_attempt_at  INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    receiver_outcome TEXT,
    delivered_at     INTEGER,
    UNIQUE (sender, message_id)
);
INSERT INTO outbox_new (id, sender, message_id, destination, ordering_key, payload, status,
    attempts, next_attempt_at, lease_owner, lease_until, created_at, last_attempt_at, last_status,
    last_error, receiver_outcome, delivered_at)
SELECT id, '', message_id, destination, ordering_key, payload, status, attempts, next_attempt_at,
    lease_owner, lease_until, created_at, last_attempt_at, last_status, last_error,
    receiver_outcome, delivered_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_claim ON outbox (destination, status, id);
CREATE INDEX outbox_order ON outbox (ordering_key, status, id);
CREATE INDEX outbox_message ON outbox (message_id);
