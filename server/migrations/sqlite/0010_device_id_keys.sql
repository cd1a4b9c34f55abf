-- A phone's id key, sent when it enrols: the ids of the insights it captures (version 8 UUIDs) are made with it, and
-- only the device holding the key may create documents under them (docs/sync-protocol.md, "Who may write a
-- document"). NULL for devices registered by token, and for devices enrolled before this migration.
ALTER TABLE devices ADD COLUMN id_key BLOB;
