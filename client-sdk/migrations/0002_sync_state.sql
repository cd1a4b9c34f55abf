-- Automerge's sync state per document (the heads this phone and the server are known to share), so a reconnect
-- resumes instead of starting over.
ALTER TABLE insights ADD COLUMN sync_state BLOB;
