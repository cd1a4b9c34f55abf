//! Invitation codes: short enough to type from a printed card, random enough that guessing one is hopeless, stored
//! only as a hash keyed with the server's invitation secret. Also the validity syntax of `grapevine invite create
//! --expires` and the enrol link a QR code carries.
//!
//! A code has 50 bits: enough against guessing over the network (each address has a budget), not enough against a
//! stolen copy of the database, where a plain SHA-256 of every possible code is a few days of GPU time. So a code is
//! stored as HMAC-SHA256 under a secret kept in a file outside the database (`InvitationSecret`): a copy of the
//! database alone yields no code. Invitations made before the secret existed keep their plain SHA-256 hash (it cannot
//! be re-keyed without the code) and are redeemable until they expire, are used up or are revoked.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::Sha256;

use crate::auth::hash_token;
use crate::store::{CodeHashes, Store};

/// The characters a code is made of: digits and capital letters without 0/O and 1/I, which people misread. 32 of
/// them, so each character carries 5 bits.
pub const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Characters in a code: 50 bits, shown in groups of four (`HNLY-7K4Q-PX`).
pub const CODE_LENGTH: usize = 10;

/// A new random code, grouped for people to read and type.
#[must_use]
pub fn new_code() -> String {
    let mut rng = rand::rng();
    let compact: String =
        (0..CODE_LENGTH).map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())])).collect();
    group(&compact)
}

fn group(compact: &str) -> String {
    let chars: Vec<char> = compact.chars().collect();
    chars.chunks(4).map(|chunk| chunk.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// A code as typed, reduced to the form that is hashed: upper case, without dashes or white space.
#[must_use]
pub fn normalise_code(typed: &str) -> String {
    typed.chars().filter(|c| *c != '-' && !c.is_whitespace()).flat_map(char::to_uppercase).collect()
}

/// The hash invitations made before the invitation secret were stored under (SHA-256 of the normalised code, hex).
#[must_use]
pub fn legacy_hash_code(typed: &str) -> String {
    hash_token(&normalise_code(typed))
}

/// The file name of the invitation secret when no path is given: beside the SQLite database, or in
/// `grapevine-data/` (where the default SQLite database lives) for PostgreSQL.
pub const SECRET_FILE_NAME: &str = "invitation-secret";

/// The meaning of a fingerprint: a fixed message the secret signs, so two nodes can tell whether their secrets agree
/// without either revealing its own.
const FINGERPRINT_MESSAGE: &[u8] = b"grapevine invitation secret fingerprint v1";

/// The server secret invitation codes are hashed with (HMAC-SHA256). It lives in a file outside the database; every
/// node and every command that creates or redeems invitations must read the same one. `Debug` never shows it.
#[derive(Clone)]
pub struct InvitationSecret {
    key: [u8; 32],
}

impl fmt::Debug for InvitationSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("InvitationSecret([redacted])")
    }
}

impl InvitationSecret {
    /// A new random secret (256 bits).
    #[must_use]
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        InvitationSecret { key }
    }

    fn mac(&self, message: &[u8]) -> [u8; 32] {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// The hash a code is stored and looked up under: HMAC-SHA256 of its normalised form, hex.
    #[must_use]
    pub fn hash_code(&self, typed: &str) -> String {
        hex(&self.mac(normalise_code(typed).as_bytes()))
    }

    /// Both hashes a typed code may be stored under: keyed, and the legacy plain SHA-256.
    #[must_use]
    pub fn code_hashes(&self, typed: &str) -> CodeHashes {
        CodeHashes { keyed: self.hash_code(typed), legacy: legacy_hash_code(typed) }
    }

    /// A short public name for the secret (16 hex digits), recorded in the database so a node with another secret,
    /// or none, is refused at start instead of answering every code "unknown".
    #[must_use]
    pub fn fingerprint(&self) -> String {
        hex(&self.mac(FINGERPRINT_MESSAGE)[..8])
    }

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let mut key = [0u8; 32];
        for (at, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[at * 2..at * 2 + 2], 16).ok()?;
        }
        Some(InvitationSecret { key })
    }

    /// Reads the secret at `path`: `None` if there is no file.
    ///
    /// # Errors
    /// The file cannot be read or does not hold a secret.
    pub fn read(path: &Path) -> Result<Option<Self>, InvitationSecretError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(InvitationSecretError::Unreadable { path: path.to_owned(), source }),
        };
        warn_if_readable_by_others(path);
        InvitationSecret::parse(&text)
            .map(Some)
            .ok_or_else(|| InvitationSecretError::Malformed { path: path.to_owned() })
    }

    /// Writes the secret to a new file at `path` (mode 0600), creating its directory; never replaces a file that is
    /// there (a second process starting at the same moment reads the first one's). Returns the secret the file holds.
    fn create(self, path: &Path) -> Result<Self, InvitationSecretError> {
        let unreadable = |source| InvitationSecretError::Unreadable { path: path.to_owned(), source };
        let written = write_private(path, &self).map_err(unreadable)?;
        // A hard link fails if the name exists: the file appears whole, and only once.
        match std::fs::hard_link(&written, path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&written);
                tracing::info!(path = %path.display(), "created a new invitation secret; back it up (docs/operations.md)");
                Ok(self)
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&written);
                InvitationSecret::read(path)?.ok_or_else(|| InvitationSecretError::Malformed { path: path.to_owned() })
            }
            Err(source) => {
                let _ = std::fs::remove_file(&written);
                Err(unreadable(source))
            }
        }
    }

    /// Writes the secret to `path`, replacing whatever file is there, whole or not at all.
    fn replace(&self, path: &Path) -> Result<(), InvitationSecretError> {
        let unreadable = |source| InvitationSecretError::Unreadable { path: path.to_owned(), source };
        let written = write_private(path, self).map_err(unreadable)?;
        std::fs::rename(&written, path).map_err(unreadable)
    }
}

/// Writes the secret to a new private file beside `path` (flushed to disk) and returns its name.
fn write_private(path: &Path, secret: &InvitationSecret) -> std::io::Result<PathBuf> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut name = path.file_name().unwrap_or_else(|| SECRET_FILE_NAME.as_ref()).to_owned();
    name.push(format!(".new-{}", uuid::Uuid::new_v4().simple()));
    let written = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&written)?;
    file.write_all(format!("{}\n", hex(&secret.key)).as_bytes())?;
    file.sync_all()?;
    Ok(written)
}

/// A secret others may read is a secret others may copy: said once at start, so the operator can tighten it.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the invitation secret is readable by other users; make it private (chmod 600)"
                );
            }
        }
    }
}

/// Why the invitation secret could not be used; the server and the invitation commands refuse to go on.
#[derive(Debug, thiserror::Error)]
pub enum InvitationSecretError {
    #[error("{}", missing_message(path, recorded, *open))]
    Missing { path: PathBuf, recorded: String, open: i64 },
    #[error(
        "the invitation secret {} (fingerprint {found}) is not the one this database's invitations are made with \
         (fingerprint {recorded}): every node and every `grapevine invite` command must use the same secret file \
         (--invitation-secret or GRAPEVINE_INVITATION_SECRET; docs/operations.md, \"The invitation secret\")",
        path.display()
    )]
    Mismatch { path: PathBuf, found: String, recorded: String },
    #[error("the invitation secret {} cannot be read or written: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{} is not an invitation secret (expected 64 hexadecimal characters on one line)", path.display())]
    Malformed { path: PathBuf },
    #[error(
        "{0} invitation(s) made with the current secret are still open and would stop working with a new one: \
         revoke them first (`grapevine invite list`, `grapevine invite revoke`)"
    )]
    StillOpen(i64),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

fn missing_message(path: &Path, recorded: &str, open: i64) -> String {
    let remedy = if open > 0 {
        format!(
            "{open} invitation(s) made with it are still open and no code of theirs can be checked without it. Copy \
             the secret file here from another node or from its backup, or give its path with --invitation-secret \
             (GRAPEVINE_INVITATION_SECRET); if it is lost, revoke those invitations and run \
             `grapevine invite new-secret`"
        )
    } else {
        "no invitation made with it is open. Copy the secret file here from another node or from its backup, or \
         give its path with --invitation-secret (GRAPEVINE_INVITATION_SECRET); to start over with a new secret, run \
         `grapevine invite new-secret` and copy it to every node"
            .to_owned()
    };
    format!(
        "the invitation secret {} is missing, but this database's invitations are made with a secret (fingerprint \
         {recorded}): {remedy} (docs/operations.md, \"The invitation secret\")",
        path.display()
    )
}

/// Where the invitation secret is when no path is given: beside a SQLite database file, else
/// `grapevine-data/invitation-secret` in the working directory.
#[must_use]
pub fn default_secret_path(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|file| !file.is_empty() && !file.starts_with(':'));
    match file.map(Path::new).and_then(Path::parent) {
        Some(directory) => directory.join(SECRET_FILE_NAME),
        None => Path::new("grapevine-data").join(SECRET_FILE_NAME),
    }
}

/// The invitation secret at `path` (or the default for the database), checked against the fingerprint the database
/// recorded. On a database that has none recorded, a missing file is created (0600) and its fingerprint recorded.
/// A missing file on a database that has one, or another secret than the one recorded, is refused: codes hashed
/// with the recorded secret would otherwise all be answered "unknown".
///
/// # Errors
/// See `InvitationSecretError`.
pub async fn open_secret(
    path: Option<&Path>,
    database_url: &str,
    store: &dyn Store,
) -> Result<InvitationSecret, InvitationSecretError> {
    let path = path.map_or_else(|| default_secret_path(database_url), Path::to_path_buf);
    let secret = match InvitationSecret::read(&path)? {
        Some(secret) => secret,
        None => {
            if let Some(recorded) = store.invitation_secret_fingerprint().await? {
                let open = store.open_keyed_invitations(time::OffsetDateTime::now_utc()).await?;
                return Err(InvitationSecretError::Missing { path, recorded, open });
            }
            InvitationSecret::generate().create(&path)?
        }
    };
    let found = secret.fingerprint();
    let recorded = store.claim_invitation_secret(&found).await?;
    if recorded != found {
        return Err(InvitationSecretError::Mismatch { path, found, recorded });
    }
    Ok(secret)
}

/// Makes a new invitation secret at `path` (or the default for the database), replacing the old one, and records it.
/// Refused while an invitation made with the current secret is open: its code would stop working.
///
/// # Errors
/// An open invitation, a file that cannot be written, or the store fails.
pub async fn new_secret(
    path: Option<&Path>,
    database_url: &str,
    store: &dyn Store,
) -> Result<(PathBuf, InvitationSecret), InvitationSecretError> {
    let path = path.map_or_else(|| default_secret_path(database_url), Path::to_path_buf);
    let open = store.open_keyed_invitations(time::OffsetDateTime::now_utc()).await?;
    if open > 0 {
        return Err(InvitationSecretError::StillOpen(open));
    }
    let secret = InvitationSecret::generate();
    secret.replace(&path)?;
    store.replace_invitation_secret(&secret.fingerprint()).await?;
    Ok((path, secret))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Parses a validity such as `14d`, `2w`, `12h` or `30m` (a whole number and a unit: minutes, hours, days, weeks).
///
/// # Errors
/// A sentence saying what was expected.
pub fn parse_validity(text: &str) -> Result<Duration, String> {
    let expected = || format!("'{text}' is not a validity; expected e.g. 30m, 12h, 14d or 2w");
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let unit_secs = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(expected()),
    };
    if number == 0 {
        return Err(format!("'{text}' would expire at once; give a validity above zero"));
    }
    number.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(expected)
}

/// The link a phone's camera opens to enrol: `grapevine://enrol?server=<URL>&code=<CODE>`, the server's HTTP
/// address percent-encoded.
#[must_use]
pub fn enrol_link(server_url: &str, code: &str) -> String {
    format!("grapevine://enrol?server={}&code={}", percent_encode(server_url), percent_encode(code))
}

fn percent_encode(text: &str) -> String {
    use std::fmt::Write;
    text.bytes().fold(String::with_capacity(text.len()), |mut out, byte| {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_from_the_unambiguous_alphabet_and_differ() {
        let code = new_code();
        assert_eq!(code.len(), CODE_LENGTH + 2, "{code}");
        assert_eq!(code.matches('-').count(), 2);
        let compact = normalise_code(&code);
        assert_eq!(compact.len(), CODE_LENGTH);
        assert!(compact.bytes().all(|byte| CODE_ALPHABET.contains(&byte)), "{code}");
        assert!(!compact.contains(['0', 'O', '1', 'I']));
        assert_ne!(new_code(), new_code());
    }

    #[test]
    fn case_dashes_and_spaces_do_not_matter() {
        assert_eq!(normalise_code("hnly-7k4q-px"), "HNLY7K4QPX");
        assert_eq!(normalise_code(" HNLY 7K4Q\tPX "), "HNLY7K4QPX");
        let secret = InvitationSecret::generate();
        assert_eq!(secret.hash_code("hnly 7k4q-px"), secret.hash_code("HNLY-7K4Q-PX"));
        assert_ne!(secret.hash_code("HNLY-7K4Q-PX"), secret.hash_code("HNLY-7K4Q-PY"));
        assert_eq!(legacy_hash_code("hnly 7k4q-px"), legacy_hash_code("HNLY-7K4Q-PX"));
    }

    #[test]
    fn a_keyed_hash_is_not_the_sha256_of_the_code_and_depends_on_the_secret() {
        let (first, second) = (InvitationSecret::generate(), InvitationSecret::generate());
        let code = new_code();
        assert_ne!(first.hash_code(&code), legacy_hash_code(&code));
        assert_ne!(first.hash_code(&code), second.hash_code(&code));
        assert_ne!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.fingerprint().len(), 16);
        // RFC 4231 test case 2: the keyed hash is HMAC-SHA256 as everyone else computes it.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let jefe = InvitationSecret { key };
        assert_eq!(
            hex(&jefe.mac(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(format!("{first:?}"), "InvitationSecret([redacted])");
    }

    #[test]
    fn a_secret_file_is_private_read_back_whole_and_never_replaced_by_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(SECRET_FILE_NAME);
        assert!(InvitationSecret::read(&path).unwrap().is_none());
        let made = InvitationSecret::generate().create(&path).unwrap();
        let read = InvitationSecret::read(&path).unwrap().unwrap();
        assert_eq!(read.fingerprint(), made.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let raced = InvitationSecret::generate().create(&path).unwrap();
        assert_eq!(raced.fingerprint(), made.fingerprint(), "a second creator reads the first one's secret");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file is left");
        std::fs::write(&path, "not a secret\n").unwrap();
        let error = InvitationSecret::read(&path).unwrap_err();
        assert!(error.to_string().contains("is not an invitation secret"), "{error}");
    }

    #[test]
    fn the_secret_lives_beside_a_sqlite_database_by_default() {
        assert_eq!(default_secret_path("sqlite:///srv/gv/grapevine.db"), Path::new("/srv/gv/invitation-secret"));
        assert_eq!(
            default_secret_path("sqlite://grapevine-data/grapevine.db?mode=rwc"),
            Path::new("grapevine-data/invitation-secret")
        );
        assert_eq!(default_secret_path("sqlite::memory:"), Path::new("grapevine-data/invitation-secret"));
        assert_eq!(default_secret_path("postgres://u@h/db"), Path::new("grapevine-data/invitation-secret"));
    }

    #[test]
    fn validities_read_minutes_hours_days_and_weeks() {
        assert_eq!(parse_validity("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_validity("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_validity("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_validity("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "d", "14", "14y", "-1d", "1.5d", "0d"] {
            assert!(parse_validity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_enrol_link_encodes_the_server_address() {
        assert_eq!(
            enrol_link("https://grapevine.example.org:8443/x", "HNLY-7K4Q-PX"),
            "grapevine://enrol?server=https%3A%2F%2Fgrapevine.example.org%3A8443%2Fx&code=HNLY-7K4Q-PX"
        );
    }
}
