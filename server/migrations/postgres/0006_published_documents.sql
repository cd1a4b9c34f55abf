-- As server/migrations/sqlite/0006_published_documents.sql.
CREATE TABLE published_documents (
    doc_id   TEXT PRIMARY KEY,
    version  BIGINT NOT NULL,
    bytes    BYTEA NOT NULL
);
