//! The one table of stable, machine-readable error codes.
//!
//! The same code travels in the sync protocol's `error` frames, in the server's rejection of an insight (written back
//! into the insight's document), in the HTTP API's error bodies and in the SDK's error enum. Codes never change meaning
//! once released; new ones are appended.

use std::fmt;

/// A stable error code. `as_str` is the wire spelling; `Display` prints the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // The insight itself.
    InsightMalformed,
    InsightSchemaUnsupported,
    InsightIdMismatch,
    InsightCapturedAtInvalid,
    InsightCampaignUnknown,
    InsightCategoryUnknown,
    InsightTextEmpty,
    InsightTextTooLong,
    InsightTextControlCharacter,
    InsightFeelingSafeOutOfRange,
    InsightLocationInvalid,
    InsightAreaUnknown,
    InsightPostcodeUnknown,
    InsightChannelUnknown,
    // Authentication and authorisation.
    Unauthorized,
    Forbidden,
    DeviceRevoked,
    // Enrolment with an invitation code.
    InvitationUnknown,
    InvitationExpired,
    InvitationUsedUp,
    InvitationRevoked,
    // The sync protocol.
    ProtocolViolation,
    ProtocolVersionUnsupported,
    FrameTooLarge,
    RateLimited,
    IdleTimeout,
    DocumentUnavailable,
    DocumentReadOnly,
    // The HTTP API.
    InvalidQuery,
    InvalidRequest,
    AreaNotFound,
    Internal,
    // The SDK, on the phone.
    InsightNotFound,
    InsightWithdrawn,
    NotEnrolled,
}

impl ErrorCode {
    /// Every code, for documentation and for round-trip tests.
    pub const ALL: [ErrorCode; 35] = [
        ErrorCode::InsightMalformed,
        ErrorCode::InsightSchemaUnsupported,
        ErrorCode::InsightIdMismatch,
        ErrorCode::InsightCapturedAtInvalid,
        ErrorCode::InsightCampaignUnknown,
        ErrorCode::InsightCategoryUnknown,
        ErrorCode::InsightTextEmpty,
        ErrorCode::InsightTextTooLong,
        ErrorCode::InsightTextControlCharacter,
        ErrorCode::InsightFeelingSafeOutOfRange,
        ErrorCode::InsightLocationInvalid,
        ErrorCode::InsightAreaUnknown,
        ErrorCode::InsightPostcodeUnknown,
        ErrorCode::InsightChannelUnknown,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::DeviceRevoked,
        ErrorCode::InvitationUnknown,
        ErrorCode::InvitationExpired,
        ErrorCode::InvitationUsedUp,
        ErrorCode::InvitationRevoked,
        ErrorCode::ProtocolViolation,
        ErrorCode::ProtocolVersionUnsupported,
        ErrorCode::FrameTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::IdleTimeout,
        ErrorCode::DocumentUnavailable,
        ErrorCode::DocumentReadOnly,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidRequest,
        ErrorCode::AreaNotFound,
        ErrorCode::Internal,
        ErrorCode::InsightNotFound,
        ErrorCode::InsightWithdrawn,
        ErrorCode::NotEnrolled,
    ];

    /// The wire spelling, `snake_case`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InsightMalformed => "insight_malformed",
            ErrorCode::InsightSchemaUnsupported => "insight_schema_unsupported",
            ErrorCode::InsightIdMismatch => "insight_id_mismatch",
            ErrorCode::InsightCapturedAtInvalid => "insight_captured_at_invalid",
            ErrorCode::InsightCampaignUnknown => "insight_campaign_unknown",
            ErrorCode::InsightCategoryUnknown => "insight_category_unknown",
            ErrorCode::InsightTextEmpty => "insight_text_empty",
            ErrorCode::InsightTextTooLong => "insight_text_too_long",
            ErrorCode::InsightTextControlCharacter => "insight_text_control_character",
            ErrorCode::InsightFeelingSafeOutOfRange => "insight_feeling_safe_out_of_range",
            ErrorCode::InsightLocationInvalid => "insight_location_invalid",
            ErrorCode::InsightAreaUnknown => "insight_area_unknown",
            ErrorCode::InsightPostcodeUnknown => "insight_postcode_unknown",
            ErrorCode::InsightChannelUnknown => "insight_channel_unknown",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::DeviceRevoked => "device_revoked",
            ErrorCode::InvitationUnknown => "invitation_unknown",
            ErrorCode::InvitationExpired => "invitation_expired",
            ErrorCode::InvitationUsedUp => "invitation_used_up",
            ErrorCode::InvitationRevoked => "invitation_revoked",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::ProtocolVersionUnsupported => "protocol_version_unsupported",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::DocumentUnavailable => "document_unavailable",
            ErrorCode::DocumentReadOnly => "document_read_only",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::AreaNotFound => "area_not_found",
            ErrorCode::Internal => "internal",
            ErrorCode::InsightNotFound => "insight_not_found",
            ErrorCode::InsightWithdrawn => "insight_withdrawn",
            ErrorCode::NotEnrolled => "not_enrolled",
        }
    }

    /// Parses the wire spelling; `None` for a code this version does not know (a newer server's).
    #[must_use]
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|known| known.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate spelling {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }
}
