-- The spine: collectors and their devices, API tokens, insight documents, the relational insight table and the daily
-- roll-up. Times are RFC 3339 text; days are ISO 8601 dates (the collector's local calendar day).

-- Facts about this database. `storage_id` names its lineage: it is announced to phones in the sync handshake, and
-- a restore from backup gives the database a new one, so phones know to re-offer everything the restore lost.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('storage_id', lower(hex(randomblob(16))));

CREATE TABLE collectors (
    id          TEXT PRIMARY KEY,          -- UUID
    label       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE devices (
    id            TEXT PRIMARY KEY,        -- UUID
    collector_id  TEXT NOT NULL REFERENCES collectors (id),
    label         TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,    -- SHA-256 of the bearer token, hex; the token itself is never stored
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('analyst', 'board')),
    label       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

-- One Automerge document per insight, stored as chunks: a snapshot and the changes appended since. `version` counts
-- writes; a writer names the version it loaded, so two writers never overwrite each other.
CREATE TABLE documents (
    doc_id        TEXT PRIMARY KEY,        -- base58check, as automerge-repo spells it
    collector_id  TEXT NOT NULL REFERENCES collectors (id),
    version       INTEGER NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE document_chunks (
    doc_id  TEXT NOT NULL REFERENCES documents (doc_id),
    seq     INTEGER NOT NULL,              -- the document version that wrote it
    bytes   BLOB NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

-- What the server extracted from each document, and what it decided.
CREATE TABLE insights (
    id                  TEXT PRIMARY KEY,  -- the insight's UUID (equal to its document's id)
    doc_id              TEXT NOT NULL UNIQUE REFERENCES documents (doc_id),
    collector_id        TEXT NOT NULL REFERENCES collectors (id),
    device_id           TEXT NOT NULL REFERENCES devices (id),
    captured_at         TEXT,
    captured_day        TEXT,
    campaign            TEXT,
    category            TEXT,
    text                TEXT,
    feeling_safe        INTEGER,
    channel             TEXT,
    lat                 REAL,
    lon                 REAL,
    accuracy_m          REAL,
    picked_area_code    TEXT,
    status              TEXT NOT NULL CHECK (status IN ('filed', 'outside_coverage', 'rejected')),
    area_code           TEXT,
    reject_code         TEXT,
    reject_message      TEXT,
    processed_at        TEXT NOT NULL
);

-- Counted insights per area, day and category, maintained in the same transaction as `insights`. Every insight also
-- counts under the category '*' (all categories), so totals per area read one row per area and period.
-- `area_code` is '' for insights outside every area.
CREATE TABLE rollup_daily (
    area_code         TEXT NOT NULL,
    day               TEXT NOT NULL,
    category          TEXT NOT NULL,
    n_insights        INTEGER NOT NULL,
    feeling_safe_sum  INTEGER NOT NULL,
    feeling_safe_n    INTEGER NOT NULL,
    PRIMARY KEY (area_code, day, category)
);

-- Covering, for "every area over a period" (read from the all-categories rows, category '*').
CREATE INDEX rollup_daily_by_day ON rollup_daily (category, day, area_code, n_insights);

-- The same counts per calendar month (`month` is its first day), maintained beside the daily table, so a period of
-- whole months reads a few thousand rows however many insights there are.
CREATE TABLE rollup_monthly (
    area_code         TEXT NOT NULL,
    month             TEXT NOT NULL,
    category          TEXT NOT NULL,
    n_insights        INTEGER NOT NULL,
    feeling_safe_sum  INTEGER NOT NULL,
    feeling_safe_n    INTEGER NOT NULL,
    PRIMARY KEY (area_code, month, category)
);

CREATE INDEX rollup_monthly_by_month ON rollup_monthly (category, month, area_code, n_insights);
