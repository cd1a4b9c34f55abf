-- Invitation codes are hashed with the server's invitation secret (HMAC-SHA256, a file outside the database) from
-- now on, so a copy of the database yields no code (server/src/invitations.rs). Invitations made before keep the
-- plain SHA-256 of their code: it cannot be re-keyed without the code, which is not stored. They stay redeemable
-- until they expire, are used up or are revoked; `grapevine invite list` marks them. New rows always name their
-- scheme; the default only describes the rows that were here before.
ALTER TABLE invitations ADD COLUMN code_hash_scheme TEXT NOT NULL DEFAULT 'sha256'
    CHECK (code_hash_scheme IN ('sha256', 'hmac-sha256'));

-- The fingerprint of the secret is recorded in `meta` (key 'invitation_secret_fingerprint') on first use, so a node
-- started with another secret, or without one, is refused instead of answering every code "unknown".
