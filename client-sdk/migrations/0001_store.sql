-- The phone's store: each insight's Automerge document, plus what the phone last learned about it.

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE insights (
    doc_id          TEXT PRIMARY KEY,       -- base58check; the same 16 bytes as insight_id
    insight_id      TEXT NOT NULL UNIQUE,
    captured_at     TEXT NOT NULL,
    category        TEXT NOT NULL,
    text            TEXT NOT NULL,
    doc             BLOB NOT NULL,          -- Automerge save()
    status          TEXT NOT NULL DEFAULT 'captured'
                    CHECK (status IN ('captured', 'stored', 'filed', 'outside_coverage', 'rejected')),
    area_code       TEXT,
    area_name       TEXT,
    reject_code     TEXT,
    reject_message  TEXT,
    dirty           INTEGER NOT NULL DEFAULT 1,  -- 1 while the server may lack a local change
    seq             INTEGER NOT NULL             -- capture order
);

CREATE INDEX insights_to_sync ON insights (dirty, status);
