-- People: accounts, separate from devices. The email is stored trimmed and lower-cased, so it is unique however it
-- was typed. `scope` is a JSON list of {"set", "code", "generation"} (the generation's id when it was granted), or
-- NULL for everything; kept as text so both backends read and write it with the same statements.
CREATE TABLE people (
    id           UUID PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('collector', 'coordinator', 'analyst', 'board', 'admin')),
    scope        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at  TIMESTAMPTZ
);

-- An API token belongs to a person (their role and scope are read from `people` at every request) or, with no
-- person, to a service account that keeps its own role.
ALTER TABLE api_tokens
    ALTER COLUMN role DROP NOT NULL,
    ADD COLUMN person_id UUID REFERENCES people (id),
    ADD COLUMN expires_at TIMESTAMPTZ,
    ADD CONSTRAINT api_tokens_person_or_role CHECK ((person_id IS NULL) <> (role IS NULL));
CREATE INDEX api_tokens_person ON api_tokens (person_id);
