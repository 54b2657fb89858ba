-- Message ids are unique per sender, not across the gateway (issue 20): two tenants may use the
-- same Bundle.id, and neither may learn of the other's message through it. `sender` is the
-- organization (`system|value`) that submitted the message, '' for administrators and the
-- messages queued before senders were recorded.
ALTER TABLE outbox ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox DROP CONSTRAINT outbox_message_id_key;
ALTER TABLE outbox ADD CONSTRAINT outbox_sender_message_id_key UNIQUE (sender, message_id);
CREATE INDEX outbox_message ON outbox (message_id);
