-- The spine, as on SQLite (server/migrations/sqlite/0001_spine.sql), with PostgreSQL's own types.

-- Facts about this database. `storage_id` names its lineage: it is announced to phones in the sync handshake, and
-- a restore from backup gives the database a new one, so phones know to re-offer everything the restore lost.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('storage_id', replace(gen_random_uuid()::text, '-', ''));

CREATE TABLE collectors (
    id          UUID PRIMARY KEY,
    label       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id            UUID PRIMARY KEY,
    collector_id  UUID NOT NULL REFERENCES collectors (id),
    label         TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,    -- SHA-256 of the bearer token, hex; the token itself is never stored
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ
);

CREATE TABLE api_tokens (
    id          UUID PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('analyst', 'board')),
    label       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

-- One Automerge document per insight, stored as chunks; `version` counts writes (optimistic concurrency).
CREATE TABLE documents (
    doc_id        TEXT PRIMARY KEY,
    collector_id  UUID NOT NULL REFERENCES collectors (id),
    version       BIGINT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE document_chunks (
    doc_id  TEXT NOT NULL REFERENCES documents (doc_id),
    seq     BIGINT NOT NULL,
    bytes   BYTEA NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

CREATE TABLE insights (
    id                  UUID PRIMARY KEY,
    doc_id              TEXT NOT NULL UNIQUE REFERENCES documents (doc_id),
    collector_id        UUID NOT NULL REFERENCES collectors (id),
    device_id           UUID NOT NULL REFERENCES devices (id),
    captured_at         TIMESTAMPTZ,
    captured_day        DATE,              -- the collector's local calendar day
    campaign            TEXT,
    category            TEXT,
    text                TEXT,
    feeling_safe        SMALLINT,
    channel             TEXT,
    lat                 DOUBLE PRECISION,
    lon                 DOUBLE PRECISION,
    accuracy_m          DOUBLE PRECISION,
    picked_area_code    TEXT,
    status              TEXT NOT NULL CHECK (status IN ('filed', 'outside_coverage', 'rejected')),
    area_code           TEXT,
    reject_code         TEXT,
    reject_message      TEXT,
    processed_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE rollup_daily (
    area_code         TEXT NOT NULL,       -- '' for outside every area
    day               DATE NOT NULL,
    category          TEXT NOT NULL,
    n_insights        BIGINT NOT NULL,
    feeling_safe_sum  BIGINT NOT NULL,
    feeling_safe_n    BIGINT NOT NULL,
    PRIMARY KEY (area_code, day, category)
);

-- For "every area over a period" (read from the all-categories rows, category '*'). Unlike SQLite's, these indexes
-- leave the counters out: a counter in an index makes every increment a non-HOT update, which bloats the index with
-- a new entry per insight. Roll-up rows are updated in place constantly, so they get room for HOT updates and eager
-- autovacuum.
CREATE INDEX rollup_daily_by_day ON rollup_daily (category, day, area_code);
ALTER TABLE rollup_daily SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

-- The same counts per calendar month (`month` is its first day), maintained beside the daily table, so a period of
-- whole months reads a few thousand rows however many insights there are.
CREATE TABLE rollup_monthly (
    area_code         TEXT NOT NULL,
    month             DATE NOT NULL,
    category          TEXT NOT NULL,
    n_insights        BIGINT NOT NULL,
    feeling_safe_sum  BIGINT NOT NULL,
    feeling_safe_n    BIGINT NOT NULL,
    PRIMARY KEY (area_code, month, category)
);

CREATE INDEX rollup_monthly_by_month ON rollup_monthly (category, month, area_code);
ALTER TABLE rollup_monthly SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
