-- Messages to forward and their delivery state (the durable outbox). A row is inserted in the
-- same transaction as whatever produced the message, and workers claim rows with a lease.
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    message_id       TEXT    NOT NULL UNIQUE,
    destination      TEXT    NOT NULL,
    -- Hash of (destination, citizen): messages with the same key are delivered in id order.
    ordering_key     TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    -- pending | in-flight | delivered | dead | discarded
    status           TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL,
    next_attempt_at  BIGINT  NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    created_at       BIGINT  NOT NULL,
    last_attempt_at  BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    receiver_outcome TEXT,
    delivered_at     BIGINT
);
CREATE INDEX outbox_claim ON outbox (destination, status, id);
CREATE INDEX outbox_order ON outbox (ordering_key, status, id);
