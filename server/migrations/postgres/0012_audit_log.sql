-- The audit trail (docs/audit.md): one hash chain of entries, appended under the advisory lock of the audit chain
-- (every node takes it) and never changed. `detail` is the canonical JSON text the entry's hash was taken over, kept
-- as text so it reads back byte for byte (jsonb would re-spell it).
CREATE TABLE audit_log (
    seq         bigint PRIMARY KEY CHECK (seq >= 1),
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    role        text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('allowed', 'refused', 'failed')),
    client_addr text,
    request_id  text,
    detail      text NOT NULL,
    prev_hash   bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea NOT NULL CHECK (length(hash) = 32)
);

-- `audit list --actor`, `--action`, `--since/--until`, each read in seq order.
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- Append-only: no statement changes or removes an entry, TRUNCATE included.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: an entry cannot be %', lower(TG_OP) || 'd'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
