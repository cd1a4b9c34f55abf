-- Invitations; as server/migrations/sqlite/0005_invitations.sql (read its notes), with PostgreSQL's types.
CREATE TABLE invitations (
    id          UUID PRIMARY KEY,
    label       TEXT NOT NULL,
    code_hash   TEXT NOT NULL UNIQUE,
    uses        BIGINT NOT NULL CHECK (uses > 0),
    uses_left   BIGINT NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses),
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

ALTER TABLE devices ADD COLUMN invitation_id UUID REFERENCES invitations (id);
