-- Edits and withdrawals (docs/data-model.md). The status may now be 'withdrawn' (the server's confirmation), and two
-- flags say what the phone itself did: `withdrawn` (the person took it back) and `local_change` (an edit or a
-- withdrawal the server has not confirmed yet). SQLite cannot change a CHECK constraint in place: the table is
-- rebuilt.

CREATE TABLE insights_rebuilt (
    doc_id          TEXT PRIMARY KEY,
    insight_id      TEXT NOT NULL UNIQUE,
    captured_at     TEXT NOT NULL,
    category        TEXT NOT NULL,
    text            TEXT NOT NULL,
    doc             BLOB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'captured'
                    CHECK (status IN ('captured', 'stored', 'filed', 'outside_coverage', 'rejected', 'withdrawn')),
    area_code       TEXT,
    area_name       TEXT,
    reject_code     TEXT,
    reject_message  TEXT,
    dirty           INTEGER NOT NULL DEFAULT 1,
    seq             INTEGER NOT NULL,
    sync_state      BLOB,
    withdrawn       INTEGER NOT NULL DEFAULT 0,  -- 1 once the person withdrew it on this phone
    local_change    INTEGER NOT NULL DEFAULT 0   -- 1 while an edit or withdrawal has not reached the server
);
INSERT INTO insights_rebuilt (doc_id, insight_id, captured_at, category, text, doc, status, area_code, area_name,
        reject_code, reject_message, dirty, seq, sync_state)
    SELECT doc_id, insight_id, captured_at, category, text, doc, status, area_code, area_name, reject_code,
        reject_message, dirty, seq, sync_state
    FROM insights;
DROP TABLE insights;
ALTER TABLE insights_rebuilt RENAME TO insights;
CREATE INDEX insights_to_sync ON insights (dirty, status);
