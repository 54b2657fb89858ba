-- How far the audit journal's segments have been copied into audit_log (issue 19,
-- docs/audit.md "The journal"). Records of reads, searches, refusals and forwarding attempts are
-- appended to a segment file before their response leaves; the ingester copies them into
-- audit_log and, in the same transaction, moves the segment's end_offset past them, so a crash
-- at any point neither loses nor repeats a record. A segment all of whose records are copied is
-- marked done (in a synced commit) before its file is deleted, then its row goes too.
CREATE TABLE audit_journal (
    segment TEXT PRIMARY KEY,
    end_offset BIGINT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
