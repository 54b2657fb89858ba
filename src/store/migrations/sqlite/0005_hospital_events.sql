-- MedCom HospitalNotification messages received (issue #21): one row per message, idempotent per
-- sender (the sender's SOR code and the message's Bundle.id). `citizen` is a hash of the
-- citizen's person identifier (no CPR in plain text in a key column). The events of a citizen
-- are read in time order, for the care course's hospital events and for counting admissions
-- during a course (readmissions).
CREATE TABLE hospital_events (
    sender       TEXT   NOT NULL,
    message_id   TEXT   NOT NULL,
    citizen      TEXT   NOT NULL,
    -- MedCom activity code (admit-inpatient, discharge-emergency-home, cancel-admit-inpatient …)
    event        TEXT   NOT NULL,
    -- When it happened (Provenance.occurredDateTime), milliseconds since the epoch, and as sent.
    event_ms     BIGINT NOT NULL,
    event_time   TEXT   NOT NULL,
    hospital_sor TEXT   NOT NULL,
    hospital     TEXT   NOT NULL,
    encounter    TEXT   NOT NULL,
    -- The MessageHeader a cancel or revise message refers to (Provenance.entity.what), if any.
    refers_to    TEXT,
    header_id    TEXT   NOT NULL,
    received_ms  BIGINT NOT NULL,
    PRIMARY KEY (sender, message_id)
);
CREATE INDEX hospital_events_citizen ON hospital_events (citizen, event_ms);
