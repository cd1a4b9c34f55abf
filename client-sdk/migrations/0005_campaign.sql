-- Documents the server publishes (the campaign: categories in English and Welsh, prompts, areas to pick), kept so
-- the app renders its capture form offline. Read-only on the phone: only a sync writes them.
CREATE TABLE published (
    doc_id  TEXT PRIMARY KEY,
    doc     BLOB NOT NULL
);
