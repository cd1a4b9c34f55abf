-- Invitation codes hashed with the server's invitation secret; as server/migrations/sqlite/0009_invitation_secret.sql
-- (read its notes).
ALTER TABLE invitations ADD COLUMN code_hash_scheme TEXT NOT NULL DEFAULT 'sha256'
    CHECK (code_hash_scheme IN ('sha256', 'hmac-sha256'));
