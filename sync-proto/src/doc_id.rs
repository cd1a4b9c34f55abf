//! Document identifiers as automerge-repo spells them: 16 bytes (a UUID), base58check-encoded (Bitcoin alphabet, the
//! first four bytes of a double SHA-256 as the checksum).

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use uuid::Uuid;

/// The identifier of one Automerge document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

/// A string that is not a base58check-encoded 16-byte identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a document id (base58check of 16 bytes)")]
pub struct InvalidDocumentId(pub String);

impl DocumentId {
    /// A fresh random identifier.
    #[must_use]
    pub fn random() -> Self {
        DocumentId(*Uuid::new_v4().as_bytes())
    }

    /// The document of one insight: its bytes are the insight's UUID, so the two can never disagree.
    #[must_use]
    pub fn for_insight(insight_id: Uuid) -> Self {
        DocumentId(*insight_id.as_bytes())
    }

    /// The same 16 bytes read as a UUID.
    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        Uuid::from_bytes(self.0)
    }

    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// The key a phone's store makes once and keeps across re-enrolments, so the ids of its insights name it: an
/// enrolled phone makes each insight id with [`bound_insight_id`], and the server lets a device create a document
/// under such an id only if the key it registered at enrolment made it ([`id_made_with`]). Someone who learns an id
/// before its owner syncs cannot store a document under it first (docs/sync-protocol.md, "Who may write a document").
pub const ID_KEY_BYTES: usize = 32;

/// How many of an id's 16 bytes are the keyed hash of the rest: 48 bits, so a squatter's chance that its own key
/// verifies a given id is one in 2^48.
const ID_TAG_BYTES: usize = 6;

fn id_tag(key: &[u8; ID_KEY_BYTES], body: &[u8]) -> [u8; ID_TAG_BYTES] {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(b"grapevine insight id v1");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut tag = [0u8; ID_TAG_BYTES];
    tag.copy_from_slice(&digest[..ID_TAG_BYTES]);
    tag
}

/// A new insight id made with a phone's id key: a version 8 UUID (RFC 9562) whose first 10 bytes come from `random`
/// (a fresh version 4 UUID: 74 random bits) and whose last 6 are their keyed hash.
#[must_use]
pub fn bound_insight_id(key: &[u8; ID_KEY_BYTES], random: Uuid) -> Uuid {
    let mut bytes = *random.as_bytes();
    // Version 8 in the high nibble of byte 6; the RFC variant (0b10) in the top bits of byte 8.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let tag = id_tag(key, &bytes[..16 - ID_TAG_BYTES]);
    bytes[16 - ID_TAG_BYTES..].copy_from_slice(&tag);
    Uuid::from_bytes(bytes)
}

/// An id key as it travels and is kept on the phone: 64 lower-case hex digits.
#[must_use]
pub fn id_key_to_hex(key: &[u8; ID_KEY_BYTES]) -> String {
    key.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An id key from its 64 hex digits (either case); `None` for anything else.
#[must_use]
pub fn id_key_from_hex(text: &str) -> Option<[u8; ID_KEY_BYTES]> {
    // Hex digits alone: `from_str_radix` would also take a sign ("+1").
    if text.len() != ID_KEY_BYTES * 2 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; ID_KEY_BYTES];
    for (at, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[at * 2..at * 2 + 2], 16).ok()?;
    }
    Some(key)
}

/// Whether an id claims to name the phone that made it (version 8). Version 4 ids (the JavaScript peers, phones
/// registered by token) claim nothing.
#[must_use]
pub fn id_is_bound(id: Uuid) -> bool {
    id.get_version_num() == 8
}

/// Whether `key` made this version 8 id.
#[must_use]
pub fn id_made_with(id: Uuid, key: &[u8; ID_KEY_BYTES]) -> bool {
    let bytes = id.as_bytes();
    id_is_bound(id) && id_tag(key, &bytes[..16 - ID_TAG_BYTES]) == bytes[16 - ID_TAG_BYTES..]
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl FromStr for DocumentId {
    type Err = InvalidDocumentId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = bs58::decode(text).with_check(None).into_vec().map_err(|_| InvalidDocumentId(text.to_owned()))?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| InvalidDocumentId(text.to_owned()))?;
        Ok(DocumentId(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_string_form() {
        for _ in 0..100 {
            let id = DocumentId::random();
            let text = id.to_string();
            assert_eq!(text.parse::<DocumentId>(), Ok(id));
        }
    }

    #[test]
    fn checksum_and_length_are_enforced() {
        let text = DocumentId::random().to_string();
        let mut tampered = text.clone().into_bytes();
        tampered[3] = if tampered[3] == b'2' { b'3' } else { b'2' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(tampered.parse::<DocumentId>().is_err());
        let eight_bytes = bs58::encode([1u8; 8]).with_check().into_string();
        assert!(eight_bytes.parse::<DocumentId>().is_err());
        assert!("not base58 0OIl".parse::<DocumentId>().is_err());
    }

    #[test]
    fn a_bound_id_is_made_with_its_key_alone() {
        let (ours, theirs) = ([7u8; ID_KEY_BYTES], [8u8; ID_KEY_BYTES]);
        for _ in 0..100 {
            let id = bound_insight_id(&ours, Uuid::new_v4());
            assert_eq!(id.get_version_num(), 8);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert!(id_is_bound(id));
            assert!(id_made_with(id, &ours));
            assert!(!id_made_with(id, &theirs), "another key does not verify it");
            let mut tampered = *id.as_bytes();
            tampered[0] ^= 1;
            assert!(!id_made_with(Uuid::from_bytes(tampered), &ours), "the tag covers the random bytes");
        }
        assert_eq!(id_key_from_hex(&id_key_to_hex(&ours)), Some(ours));
        assert_eq!(id_key_from_hex(&"AB".repeat(ID_KEY_BYTES)), Some([0xab; ID_KEY_BYTES]));
        for bad in ["", "ab", &"zz".repeat(ID_KEY_BYTES), &"é".repeat(ID_KEY_BYTES), &"+1".repeat(ID_KEY_BYTES)] {
            assert_eq!(id_key_from_hex(bad), None, "{bad:?}");
        }
        let plain = Uuid::new_v4();
        assert!(!id_is_bound(plain) && !id_made_with(plain, &ours), "a version 4 id claims nothing");
    }

    #[test]
    fn an_insight_names_its_document() {
        let insight_id = Uuid::new_v4();
        assert_eq!(DocumentId::for_insight(insight_id).as_uuid(), insight_id);
    }
}
