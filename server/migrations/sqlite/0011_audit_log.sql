-- The audit trail (docs/audit.md): one hash chain of entries, appended under the write lock and never changed.
-- `at` is text in one fixed-width form (RFC 3339, UTC, six fractional digits), so its text order is its time order;
-- `detail` is the canonical JSON the entry's hash was taken over.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY CHECK (seq >= 1),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('allowed', 'refused', 'failed')),
    client_addr TEXT,
    request_id  TEXT,
    detail      TEXT NOT NULL,
    prev_hash   BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash        BLOB NOT NULL CHECK (length(hash) = 32)
);

-- `audit list --actor`, `--action`, `--since/--until`, each read in seq order.
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- Append-only: no statement changes or removes an entry.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: an entry cannot be updated');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: an entry cannot be deleted');
END;
