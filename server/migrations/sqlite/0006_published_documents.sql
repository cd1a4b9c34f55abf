-- Documents the server publishes to every device, read-only (the campaign: docs/data-model.md). They belong to no
-- collector, carry no insight and keep no per-device sync state: they are small, and a phone syncs them afresh.
CREATE TABLE published_documents (
    doc_id   TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    bytes    BLOB NOT NULL
);
