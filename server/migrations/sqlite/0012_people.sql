-- People: accounts, separate from devices. The email is stored trimmed and lower-cased, so it is unique however it
-- was typed. `scope` is a JSON list of {"set", "code", "generation"} (the generation's id when it was granted), or
-- NULL for everything.
CREATE TABLE people (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('collector', 'coordinator', 'analyst', 'board', 'admin')),
    scope        TEXT,
    created_at   TEXT NOT NULL,
    disabled_at  TEXT
);

-- An API token belongs to a person (their role and scope are read from `people` at every request) or, with no
-- person, to a service account that keeps its own role. SQLite cannot loosen a NOT NULL column in place, so the table
-- is rebuilt; every token keeps its id, hash and times.
CREATE TABLE api_tokens_with_people (
    id          TEXT PRIMARY KEY,
    role        TEXT CHECK (role IN ('analyst', 'board')),
    label       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    person_id   TEXT REFERENCES people (id),
    expires_at  TEXT,
    CHECK ((person_id IS NULL) <> (role IS NULL))
);
INSERT INTO api_tokens_with_people (id, role, label, token_hash, created_at, revoked_at)
    SELECT id, role, label, token_hash, created_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_with_people RENAME TO api_tokens;
CREATE INDEX api_tokens_person ON api_tokens (person_id);
