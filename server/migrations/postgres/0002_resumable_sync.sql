-- Resumable sync (docs/sync-protocol.md); as server/migrations/sqlite/0002_resumable_sync.sql.

CREATE TABLE sync_states (
    device_id  UUID NOT NULL REFERENCES devices (id),
    doc_id     TEXT NOT NULL REFERENCES documents (doc_id),
    state      BYTEA NOT NULL,
    PRIMARY KEY (device_id, doc_id)
);

ALTER TABLE collectors ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN last_device_id UUID;
CREATE INDEX documents_by_collector_seq ON documents (collector_id, change_seq);
