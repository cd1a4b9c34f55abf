-- The analyst's workbench (docs/workbench.md): insights numbered in the order they arrived, full-text search, the
-- analysts' triage, and the key collector pseudonyms are made with.

-- `seq` numbers insights in the order the server first stored them; a list pages newest first by it, and an edit
-- keeps it, so pages never shift under an analyst. Existing insights are numbered in the order they were processed.
-- (The table has no INTEGER PRIMARY KEY, so its rowids may be renumbered by VACUUM: they cannot serve.)
ALTER TABLE insights ADD COLUMN seq INTEGER;
UPDATE insights SET seq = (
    SELECT numbered.n FROM (
        SELECT id, row_number() OVER (ORDER BY processed_at, id) AS n FROM insights
    ) AS numbered WHERE numbered.id = insights.id
);
CREATE UNIQUE INDEX insights_by_seq ON insights (seq);

-- Full-text search over the text: English stemming (Porter), and words in any script found as typed (unicode61,
-- accents folded). External content keyed by `seq`; the store keeps it in step as it writes each insight.
CREATE VIRTUAL TABLE insights_fts USING fts5(
    text, content = 'insights', content_rowid = 'seq', tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO insights_fts (rowid, text) SELECT seq, text FROM insights WHERE text IS NOT NULL;

-- Triage: the analysts' own, never written into a collector's document. `version` counts writes; a write names the
-- version it read, so two analysts never overwrite each other unseen. No row means state 'new', version 0.
CREATE TABLE triage (
    insight_id  TEXT PRIMARY KEY REFERENCES insights (id),
    state       TEXT NOT NULL CHECK (state IN ('new', 'reviewed', 'actioned', 'not_actionable')),
    version     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL
);
CREATE INDEX triage_by_state ON triage (state);

-- Notes are appended, never edited, so two analysts' notes never conflict.
CREATE TABLE triage_notes (
    insight_id  TEXT NOT NULL REFERENCES insights (id),
    at          TEXT NOT NULL,
    author      TEXT NOT NULL,
    text        TEXT NOT NULL
);
CREATE INDEX triage_notes_by_insight ON triage_notes (insight_id, at);

CREATE TABLE triage_tags (
    insight_id  TEXT NOT NULL REFERENCES insights (id),
    tag         TEXT NOT NULL,
    PRIMARY KEY (insight_id, tag)
);
CREATE INDEX triage_tags_by_tag ON triage_tags (tag, insight_id);

-- An insight linked to a priority (an area and a category), for "you said, we did".
CREATE TABLE insight_priorities (
    insight_id  TEXT NOT NULL REFERENCES insights (id),
    priority    TEXT NOT NULL,            -- SET:AREA:CATEGORY
    PRIMARY KEY (insight_id, priority)
);

-- Collector pseudonyms are HMAC-SHA256 of the collector's id under this key: the same for all of a collector's
-- insights and devices on every node, and no way back to the collector without the database.
INSERT INTO meta (key, value) VALUES ('pseudonym_key', lower(hex(randomblob(32))));
