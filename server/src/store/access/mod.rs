//! Who may do what: devices, invitations (and the invitation secret they are keyed with), API tokens, and the
//! lookup of a bearer token's holder. The trait, and the statements both backends run alike.

mod postgres;
mod sqlite;

use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiTokenInfo, Authenticated, CodeHashes, DeviceInfo, InvitationInfo, NewDevice, RedeemError, Revoked, Role,
};

// The statements both backends run as they are (`$n` parameters; see `store::sqlite`'s test of how SQLite binds them).

/// A collector's id if it exists (`$1` the id).
const COLLECTOR_BY_ID: &str = "SELECT id FROM collectors WHERE id = $1";

/// 1 if the device `$1` exists and is not revoked, else 0.
const LIVE_DEVICE_COUNT: &str = "SELECT COUNT(*) FROM devices WHERE id = $1 AND revoked_at IS NULL";

/// The id key the device `$1` enrolled with, if any.
const DEVICE_ID_KEY: &str = "SELECT id_key FROM devices WHERE id = $1";

/// Every invitation, newest first.
const INVITATIONS: &str = "SELECT id, label, uses, uses_left, expires_at, created_at, revoked_at, code_hash_scheme
    FROM invitations ORDER BY created_at DESC, id";

/// The invitation whose code hashes to `$1` under the invitation secret, or to `$2` as a plain SHA-256 when it was
/// stored that way: a legacy hash matches only an invitation stored that way, so a keyed hash can never be found by
/// it. A `WHERE` condition.
const BY_CODE_HASHES: &str =
    "(code_hash = $1 AND code_hash_scheme = 'hmac-sha256') OR (code_hash = $2 AND code_hash_scheme = 'sha256')";

/// Takes one use of the invitation `$1`.
const TAKE_INVITATION_USE: &str = "UPDATE invitations SET uses_left = uses_left - 1 WHERE id = $1";

/// The invitation secret's fingerprint, once recorded.
const INVITATION_SECRET_FINGERPRINT: &str = "SELECT value FROM meta WHERE key = 'invitation_secret_fingerprint'";

/// Records `$1` as the invitation secret's fingerprint unless one is recorded.
const CLAIM_INVITATION_SECRET: &str =
    "INSERT INTO meta (key, value) VALUES ('invitation_secret_fingerprint', $1) ON CONFLICT (key) DO NOTHING";

/// Records `$1` as the invitation secret's fingerprint, replacing any.
const REPLACE_INVITATION_SECRET: &str = "INSERT INTO meta (key, value) VALUES ('invitation_secret_fingerprint', $1)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Devices, invitations, the invitation secret and API tokens: who may sync, enrol and query.
/// Whether an invitation's `code_hash_scheme` is the plain SHA-256 of invitations made before the invitation secret.
fn is_legacy_scheme(code_hash_scheme: &str) -> bool {
    code_hash_scheme == "sha256"
}

#[async_trait::async_trait]
pub trait AccessStore: Send + Sync {
    /// Adds a device whose bearer token hashes to `token_hash`: to `collector` if given (which must exist), else to a
    /// new collector.
    async fn add_device(&self, label: &str, token_hash: &str, collector: Option<Uuid>) -> anyhow::Result<NewDevice>;

    /// Every device (of one collector, if given), oldest first.
    async fn devices(&self, collector: Option<Uuid>) -> anyhow::Result<Vec<DeviceInfo>>;

    /// Revokes a device: its token is refused from now on (`device_revoked`). Its documents stay.
    async fn revoke_device(&self, device_id: Uuid) -> anyhow::Result<Revoked>;

    /// Whether a device has been revoked (an unknown device counts as revoked): what an open connection re-checks.
    async fn device_revoked(&self, device_id: Uuid) -> anyhow::Result<bool>;

    /// Adds an invitation whose code hashes to `code_hash` under the invitation secret, good for `uses` enrolments
    /// until `expires_at`.
    async fn add_invitation(
        &self,
        label: &str,
        code_hash: &str,
        uses: i64,
        expires_at: OffsetDateTime,
    ) -> anyhow::Result<Uuid>;

    /// Every invitation, newest first.
    async fn invitations(&self) -> anyhow::Result<Vec<InvitationInfo>>;

    /// Revokes an invitation: its code enrols no one from now on. Devices it enrolled stay.
    async fn revoke_invitation(&self, id: Uuid) -> anyhow::Result<Revoked>;

    /// Redeems the invitation whose code hashes to `code_hashes` (the keyed hash, or the legacy one for an invitation
    /// stored that way) at `now`: takes one use and adds a new collector with one device (labelled `label`, or the
    /// invitation's label if empty) whose token hashes to `token_hash`, and which keeps the phone's `id_key` if it
    /// sent one, all in one transaction. Redemptions of one invitation serialise, so its last use goes to exactly one
    /// phone.
    async fn redeem_invitation(
        &self,
        code_hashes: &CodeHashes,
        label: &str,
        token_hash: &str,
        id_key: Option<&[u8; ID_KEY_BYTES]>,
        now: OffsetDateTime,
    ) -> Result<NewDevice, RedeemError>;

    /// The id key a device's phone sent when it enrolled: the one key whose ids (version 8) the device may create
    /// documents under (docs/sync-protocol.md, "Who may write a document"). `None` for a device registered by token.
    async fn device_id_key(&self, device_id: Uuid) -> anyhow::Result<Option<[u8; ID_KEY_BYTES]>>;

    /// Adds an API token with a role.
    async fn add_api_token(&self, role: Role, label: &str, token_hash: &str) -> anyhow::Result<Uuid>;

    /// The fingerprint of the invitation secret this database's invitations are hashed with, once one is recorded.
    async fn invitation_secret_fingerprint(&self) -> anyhow::Result<Option<String>>;

    /// Records `fingerprint` as the invitation secret's unless one is recorded already; returns the one recorded.
    async fn claim_invitation_secret(&self, fingerprint: &str) -> anyhow::Result<String>;

    /// Records `fingerprint` as the invitation secret's, replacing any (`grapevine invite new-secret`).
    async fn replace_invitation_secret(&self, fingerprint: &str) -> anyhow::Result<()>;

    /// How many invitations hashed with the invitation secret could still enrol a phone at `now` (not revoked, not
    /// expired, a use left).
    async fn open_keyed_invitations(&self, now: OffsetDateTime) -> anyhow::Result<i64>;

    /// Every API token, oldest first, with whose it is.
    async fn api_tokens(&self) -> anyhow::Result<Vec<ApiTokenInfo>>;

    /// Revokes an API token: every node refuses it from its next request on (each request looks the token up).
    async fn revoke_api_token(&self, id: Uuid) -> anyhow::Result<Revoked>;

    /// Who holds the token with this hash, if anyone (revoked API tokens hold nothing): a person's token with the
    /// person's role and scope as they are now, or why it is refused (a revoked device, an expired token, a disabled
    /// person).
    async fn authenticate(&self, token_hash: &str) -> anyhow::Result<Option<Authenticated>>;
}
