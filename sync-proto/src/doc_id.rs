//! Document identifiers as automerge-repo spells them: 16 bytes (a UUID), base58check-encoded (Bitcoin alphabet, the
//! first four bytes of a double SHA-256 as the checksum).

use std::fmt;
use std::str::FromStr;

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
    fn an_insight_names_its_document() {
        let insight_id = Uuid::new_v4();
        assert_eq!(DocumentId::for_insight(insight_id).as_uuid(), insight_id);
    }
}
