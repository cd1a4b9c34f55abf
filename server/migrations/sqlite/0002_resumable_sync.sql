-- Resumable sync (docs/sync-protocol.md).

-- Automerge's sync state per (device, document): the heads both sides are known to share. A reconnect starts from
-- them instead of from nothing.
CREATE TABLE sync_states (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    doc_id     TEXT NOT NULL REFERENCES documents (doc_id),
    state      BLOB NOT NULL,
    PRIMARY KEY (device_id, doc_id)
);

-- Each collector's writes are numbered in commit order (the collector's row is updated in every write, so its writes
-- serialise). A phone tells the server how far it has seen in its handshake; what changed while it was away is a
-- range query.
ALTER TABLE collectors ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN last_device_id TEXT;
CREATE INDEX documents_by_collector_seq ON documents (collector_id, change_seq);
