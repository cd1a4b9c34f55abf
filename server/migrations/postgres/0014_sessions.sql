-- Signing in with a browser (docs/web.md). Times here are whole seconds since 1970 (UTC), on both backends, so the
-- same statements compare them; every secret is stored as its SHA-256, never itself.

-- A local account's password, as an argon2id PHC string; NULL until the person sets one through a link.
ALTER TABLE people ADD COLUMN password_hash TEXT;

-- One-time links to set a password: valid until `expires_at`, used once.
CREATE TABLE password_links (
    token_hash  TEXT PRIMARY KEY,
    person_id   UUID NOT NULL REFERENCES people (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

-- Browser sessions: the cookie holds the id, this table its hash. A session is live while not ended, before
-- `expires_at` (its absolute lifetime) and within the idle timeout of `last_seen_at`; its person is joined at every
-- request, so disabling them ends it on every node.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    person_id     UUID NOT NULL REFERENCES people (id),
    method        TEXT NOT NULL CHECK (method IN ('password', 'oidc')),
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    csrf_secret   BYTEA NOT NULL,
    ended_at      BIGINT
);
CREATE INDEX sessions_person ON sessions (person_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Failed password sign-ins per account (the email as typed, normalised), for the per-account limit on every node.
CREATE TABLE sign_in_failures (
    email  TEXT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_email ON sign_in_failures (email, at);

-- OpenID Connect sign-ins begun and not yet finished, keyed by the hash of their `state`: any node can finish one
-- another began; each is taken once.
CREATE TABLE sign_in_states (
    state_hash     TEXT PRIMARY KEY,
    nonce          TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    return_to      TEXT NOT NULL,
    expires_at     BIGINT NOT NULL
);
