-- The analyst's workbench (docs/workbench.md): insights numbered in the order they arrived, the phone's UTC offset
-- kept beside `captured_at`, full-text search, the analysts' triage, and the key collector pseudonyms are made with.

-- `seq` numbers insights in the order the server first stored them; a list pages newest first by it, and an edit
-- keeps it (the upsert leaves it), so pages never shift under an analyst. Existing insights are numbered in the
-- order they were processed.
ALTER TABLE insights ADD COLUMN seq BIGINT;
UPDATE insights SET seq = numbered.n
    FROM (SELECT id, row_number() OVER (ORDER BY processed_at, id) AS n FROM insights) AS numbered
    WHERE numbered.id = insights.id;
CREATE SEQUENCE insights_seq OWNED BY insights.seq;
SELECT setval('insights_seq', COALESCE((SELECT MAX(seq) FROM insights), 0) + 1, false);
ALTER TABLE insights ALTER COLUMN seq SET DEFAULT nextval('insights_seq');
ALTER TABLE insights ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX insights_by_seq ON insights (seq);

-- `timestamptz` keeps the instant but not the offset the phone wrote it with. The offset is kept here, in minutes;
-- the server fills it for insights stored before this migration from their documents when it starts (NULL until
-- then, read as UTC).
ALTER TABLE insights ADD COLUMN captured_offset_minutes SMALLINT;

-- Full-text search over the text: English stemming, and every word as typed ('simple'), so Welsh is found by its
-- words.
ALTER TABLE insights ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('english', COALESCE(text, '')) || to_tsvector('simple', COALESCE(text, ''))
) STORED;
CREATE INDEX insights_search ON insights USING gin (search);

-- Triage: the analysts' own, never written into a collector's document. `version` counts writes; a write names the
-- version it read, so two analysts never overwrite each other unseen. No row means state 'new', version 0.
CREATE TABLE triage (
    insight_id  UUID PRIMARY KEY REFERENCES insights (id),
    state       TEXT NOT NULL CHECK (state IN ('new', 'reviewed', 'actioned', 'not_actionable')),
    version     BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT NOT NULL
);
CREATE INDEX triage_by_state ON triage (state);

-- Notes are appended, never edited, so two analysts' notes never conflict.
CREATE TABLE triage_notes (
    insight_id  UUID NOT NULL REFERENCES insights (id),
    at          TIMESTAMPTZ NOT NULL,
    author      TEXT NOT NULL,
    text        TEXT NOT NULL
);
CREATE INDEX triage_notes_by_insight ON triage_notes (insight_id, at);

CREATE TABLE triage_tags (
    insight_id  UUID NOT NULL REFERENCES insights (id),
    tag         TEXT NOT NULL,
    PRIMARY KEY (insight_id, tag)
);
CREATE INDEX triage_tags_by_tag ON triage_tags (tag, insight_id);

-- An insight linked to a priority (an area and a category), for "you said, we did".
CREATE TABLE insight_priorities (
    insight_id  UUID NOT NULL REFERENCES insights (id),
    priority    TEXT NOT NULL,            -- SET:AREA:CATEGORY
    PRIMARY KEY (insight_id, priority)
);

-- Collector pseudonyms are HMAC-SHA256 of the collector's id under this key: the same for all of a collector's
-- insights and devices on every node, and no way back to the collector without the database.
INSERT INTO meta (key, value)
    VALUES ('pseudonym_key', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
