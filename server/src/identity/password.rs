//! Local accounts' passwords: the rules a new one must meet, and argon2id hashing.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`): the parameters travel with each hash, so they can
//! be raised later and old hashes still verify. The rules follow NCSC and NIST SP 800-63B: a length floor, no
//! composition rules, and a refusal of the passwords people most often choose.

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use grapevine_sync_proto::ErrorCode;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// The fewest characters a password may have.
pub const MIN_CHARS: usize = 12;
/// The most: argon2 takes any length, but a megabyte "password" is a way to make the server work, not a password.
pub const MAX_CHARS: usize = 128;

/// The 30,000 passwords people choose most often, lower-cased, one a line: the `passwords` frequency list of Dropbox's
/// zxcvbn 4.4.2 (MIT licence; see `common-passwords.LICENCE`).
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| COMMON_PASSWORDS.lines().collect());

/// Why a new password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRefusal {
    #[error("a password must be between {MIN_CHARS} and {MAX_CHARS} characters long")]
    Length,
    #[error("that password is one of the most common and easy to guess; choose another")]
    Common,
}

impl PasswordRefusal {
    #[must_use]
    pub fn code(self) -> ErrorCode {
        match self {
            PasswordRefusal::Length => ErrorCode::PasswordTooShort,
            PasswordRefusal::Common => ErrorCode::PasswordTooCommon,
        }
    }
}

/// Whether `password` may be chosen. Common means: on the list as typed (case aside), on the list once the digits and
/// symbols around it are taken off (`Liverpool2024!` is `liverpool`), or one character repeated.
///
/// # Errors
/// Too short, too long, or too common.
pub fn check_new(password: &SecretString) -> Result<(), PasswordRefusal> {
    let password = password.expose_secret();
    let n_chars = password.chars().count();
    if !(MIN_CHARS..=MAX_CHARS).contains(&n_chars) {
        return Err(PasswordRefusal::Length);
    }
    let lower = password.to_lowercase();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let one_character = lower.chars().all(|c| Some(c) == lower.chars().next());
    if one_character || COMMON.contains(lower.as_str()) || COMMON.contains(core) {
        return Err(PasswordRefusal::Common);
    }
    Ok(())
}

/// The argon2id hash of `password` with a fresh random salt, as a PHC string.
///
/// # Errors
/// Hashing failed (it does not, for a password within `MAX_CHARS`).
pub fn hash(password: &SecretString) -> anyhow::Result<String> {
    let mut salt = [0_u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("a password salt: {error}"))?;
    let hashed = Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))?;
    Ok(hashed.to_string())
}

/// Whether `password` is the one `phc` was made from. A stored hash that cannot be read matches nothing.
#[must_use]
pub fn verify(password: &SecretString, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::error!("a stored password hash cannot be read; that account cannot sign in with a password");
        return false;
    };
    Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok()
}

/// Does the work of a verification for an account that has no password (or does not exist), so the time a refusal
/// takes does not tell which.
pub fn verify_nothing(password: &SecretString) {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        hash(&SecretString::from("a password no account has, hashed once")).unwrap_or_default()
    });
    let _ = verify(password, &DUMMY);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text)
    }

    #[test]
    fn a_long_uncommon_password_is_taken_and_verifies() {
        let password = secret("grapevine heard it at the barber's");
        assert_eq!(check_new(&password), Ok(()));
        let phc = hash(&password).unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify(&password, &phc));
        assert!(!verify(&secret("grapevine heard it at the barbers"), &phc));
        assert_ne!(hash(&password).unwrap(), phc, "each hash has its own salt");
    }

    #[test]
    fn length_is_counted_in_characters_within_bounds() {
        assert_eq!(check_new(&secret("short pass")), Err(PasswordRefusal::Length));
        assert_eq!(check_new(&secret("ŵŷâêîôûŵŷâê")), Ok(()), "12 characters, more bytes");
        assert_eq!(check_new(&secret(&"long enough? ".repeat(20))), Err(PasswordRefusal::Length));
    }

    #[test]
    fn common_passwords_are_refused_however_dressed() {
        for common in ["password1234", "Liverpool2024!", "123456789012", "aaaaaaaaaaaa", "qwertyuiop12", "!!Football!!11"] {
            assert_eq!(check_new(&secret(common)), Err(PasswordRefusal::Common), "{common}");
            assert_eq!(PasswordRefusal::Common.code(), ErrorCode::PasswordTooCommon);
        }
    }

    #[test]
    fn an_unreadable_stored_hash_matches_nothing() {
        assert!(!verify(&secret("anything at all here"), "not a phc string"));
        verify_nothing(&secret("anything at all here"));
    }
}
