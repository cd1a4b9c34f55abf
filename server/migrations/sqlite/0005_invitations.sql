-- Invitations (docs/operations.md, "Onboarding phones"): a code an admin prints on a card, good for a number of
-- enrolments until it expires. Each enrolment takes one use and makes a new collector with one device. Only the
-- code's hash is stored.
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,          -- UUID
    label       TEXT NOT NULL,             -- the cohort, e.g. "Hanley barbers"
    code_hash   TEXT NOT NULL UNIQUE,      -- SHA-256 of the normalised code, hex
    uses        INTEGER NOT NULL CHECK (uses > 0),
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses),
    expires_at  TEXT NOT NULL,             -- RFC 3339, UTC
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

-- The invitation a device enrolled with (NULL for `grapevine device add`).
ALTER TABLE devices ADD COLUMN invitation_id TEXT REFERENCES invitations (id);
