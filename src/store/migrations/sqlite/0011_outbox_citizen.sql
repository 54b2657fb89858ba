-- The citizen a queued message is about (`system|value` of the person identifier, as the message
-- carries it), learned when the message is submitted: the forwarding worker names the citizen in
-- each delivery attempt's audit record without parsing the payload again. The payload holds the
-- same identifier, so the column adds no new personal data to the table. NULL for the messages
-- queued before it (the worker reads those from the payload, as it did).
ALTER TABLE outbox ADD COLUMN citizen TEXT;
