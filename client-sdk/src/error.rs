//! The SDK's one error type. Where the server gave a stable code, it is kept: an app branches on `code()`, never on
//! message text.

use grapevine_sync_proto::session::ProtocolError;
use grapevine_sync_proto::{ErrorCode, InvalidInsight};

#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The draft breaks a rule; nothing was stored. The error names the field.
    #[error("invalid insight: {0}")]
    Invalid(#[from] InvalidInsight),
    /// The server refused the request or closed the connection with an error.
    #[error("the server refused: {message} ({code})")]
    Server { code: String, message: String },
    /// The server could not be reached, or the connection dropped.
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// The server broke the protocol (or spoke a version this SDK does not).
    #[error("sync protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server stopped answering before the sync finished. Nothing is lost; sync again.
    #[error("sync timed out: {0}")]
    Timeout(String),
    /// The local store failed.
    #[error("local store: {0}")]
    Storage(String),
    /// This phone holds no insight with this id.
    #[error("no insight {0} on this phone")]
    NotFound(uuid::Uuid),
    /// The insight was withdrawn; it can no longer be edited.
    #[error("insight {0} was withdrawn and cannot be edited")]
    Withdrawn(uuid::Uuid),
    /// A certificate the app gave to trust could not be read, or TLS could not be set up.
    #[error("certificate: {0}")]
    Certificate(String),
    /// There is no device token: enrol with an invitation code first, or give a token.
    #[error("this phone is not enrolled: enrol with an invitation code, or give a device token")]
    NotEnrolled,
    /// The store was there but is empty or damaged: it is refused rather than started afresh, which would lose its
    /// insights and enrolment without a word. Nothing was changed.
    #[error(
        "the store at {path} cannot be opened: {reason}. Nothing was changed; restore it from a backup, or move it \
         aside to start a new, empty store (and enrol again)"
    )]
    StoreDamaged { path: String, reason: String },
}

impl SdkError {
    /// The stable code, where there is one.
    #[must_use]
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SdkError::Invalid(invalid) => Some(invalid.code),
            SdkError::Server { code, .. } => ErrorCode::parse(code),
            SdkError::Protocol(error) => Some(error.code),
            SdkError::NotFound(_) => Some(ErrorCode::InsightNotFound),
            SdkError::Withdrawn(_) => Some(ErrorCode::InsightWithdrawn),
            SdkError::NotEnrolled => Some(ErrorCode::NotEnrolled),
            SdkError::StoreDamaged { .. } => Some(ErrorCode::StoreDamaged),
            SdkError::Network(_) | SdkError::Timeout(_) | SdkError::Storage(_) | SdkError::Certificate(_) => None,
        }
    }
}

impl From<sqlx::Error> for SdkError {
    fn from(error: sqlx::Error) -> Self {
        SdkError::Storage(error.to_string())
    }
}

/// An error with every cause it wraps, outermost first: "error sending request" alone does not say that the server's
/// certificate was not trusted.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
