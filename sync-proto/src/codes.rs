//! The one table of stable, machine-readable error codes.
//!
//! The same code travels in the sync protocol's `error` frames, in the server's rejection of an insight (written back
//! into the insight's document), in the HTTP API's error bodies and in the SDK's error enum. Codes never change meaning
//! once released; new ones are appended.

use std::fmt;

use crate::campaign::Bilingual;

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
    InsightCapturedAtImplausible,
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
    DocumentTooLarge,
    // The HTTP API.
    InvalidQuery,
    InvalidRequest,
    AreaNotFound,
    Internal,
    NotFound,
    MethodNotAllowed,
    // The SDK, on the phone.
    InsightNotFound,
    InsightWithdrawn,
    NotEnrolled,
    StoreDamaged,
    // People and their API tokens.
    /// A role that is not one of collector, coordinator, analyst, board, admin.
    RoleUnknown,
    /// A scope list with a part that is not `SET:CODE`.
    ScopeInvalid,
    /// A scope naming a boundary set, or an area of its newest generation, that does not exist.
    ScopeAreaUnknown,
    /// An email address that is empty, has no `@` or holds spaces.
    PersonEmailInvalid,
    /// An email address another person already has.
    PersonEmailTaken,
    /// No person has that email address.
    PersonUnknown,
    /// The person was disabled: their tokens are refused.
    PersonDisabled,
    /// The API token is past its expiry.
    TokenExpired,
    /// An expiry that is not `Nd` or `Nh` within the bounds.
    TokenExpiryInvalid,
    // Signing in with a browser.
    /// An email address and password that do not match an account.
    SignInRefused,
    /// A browser session that was signed out, timed out or reached its lifetime.
    SessionExpired,
    /// A form sent without the token of the session that showed it (or from another site).
    CsrfInvalid,
    /// A new password shorter than the minimum, or longer than the maximum.
    PasswordTooShort,
    /// A new password that is on the list of the most common passwords.
    PasswordTooCommon,
    /// A set-password link that is unknown, used already or expired.
    PasswordLinkInvalid,
    /// A return from the identity provider that no sign-in began here, used already or too late.
    SignInStateInvalid,
    /// The identity provider's answer could not be verified, or named no verified email address.
    IdentityRefused,
    /// Another analyst changed the insight's triage since the version the write names.
    TriageChanged,
    /// A triage write that is not one: an unknown state, an empty or overlong note, a bad tag or priority.
    TriageInvalid,
    /// An export with more rows than its format holds (XLSX: 1,048,575 rows under a header).
    ExportTooLarge,
}

impl ErrorCode {
    /// Every code, for documentation and for round-trip tests.
    pub const ALL: [ErrorCode; 60] = [
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
        ErrorCode::InsightCapturedAtImplausible,
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
        ErrorCode::DocumentTooLarge,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidRequest,
        ErrorCode::AreaNotFound,
        ErrorCode::Internal,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InsightNotFound,
        ErrorCode::InsightWithdrawn,
        ErrorCode::NotEnrolled,
        ErrorCode::StoreDamaged,
        ErrorCode::RoleUnknown,
        ErrorCode::ScopeInvalid,
        ErrorCode::ScopeAreaUnknown,
        ErrorCode::PersonEmailInvalid,
        ErrorCode::PersonEmailTaken,
        ErrorCode::PersonUnknown,
        ErrorCode::PersonDisabled,
        ErrorCode::TokenExpired,
        ErrorCode::TokenExpiryInvalid,
        ErrorCode::SignInRefused,
        ErrorCode::SessionExpired,
        ErrorCode::CsrfInvalid,
        ErrorCode::PasswordTooShort,
        ErrorCode::PasswordTooCommon,
        ErrorCode::PasswordLinkInvalid,
        ErrorCode::SignInStateInvalid,
        ErrorCode::IdentityRefused,
        ErrorCode::TriageChanged,
        ErrorCode::TriageInvalid,
        ErrorCode::ExportTooLarge,
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
            ErrorCode::InsightCapturedAtImplausible => "insight_captured_at_implausible",
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
            ErrorCode::DocumentTooLarge => "document_too_large",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::AreaNotFound => "area_not_found",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::InsightNotFound => "insight_not_found",
            ErrorCode::InsightWithdrawn => "insight_withdrawn",
            ErrorCode::NotEnrolled => "not_enrolled",
            ErrorCode::StoreDamaged => "store_damaged",
            ErrorCode::RoleUnknown => "role_unknown",
            ErrorCode::ScopeInvalid => "scope_invalid",
            ErrorCode::ScopeAreaUnknown => "scope_area_unknown",
            ErrorCode::PersonEmailInvalid => "person_email_invalid",
            ErrorCode::PersonEmailTaken => "person_email_taken",
            ErrorCode::PersonUnknown => "person_unknown",
            ErrorCode::PersonDisabled => "person_disabled",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenExpiryInvalid => "token_expiry_invalid",
            ErrorCode::SignInRefused => "sign_in_refused",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::CsrfInvalid => "csrf_invalid",
            ErrorCode::PasswordTooShort => "password_too_short",
            ErrorCode::PasswordTooCommon => "password_too_common",
            ErrorCode::PasswordLinkInvalid => "password_link_invalid",
            ErrorCode::SignInStateInvalid => "sign_in_state_invalid",
            ErrorCode::IdentityRefused => "identity_refused",
            ErrorCode::TriageChanged => "triage_changed",
            ErrorCode::TriageInvalid => "triage_invalid",
            ErrorCode::ExportTooLarge => "export_too_large",
        }
    }

    /// A sentence for the person on the phone, in English and in Welsh, saying what went wrong and what to do: what an
    /// app shows for a rejected insight or a refused sync, beside (not instead of) the code. The Welsh is a first draft
    /// awaiting a translator's review.
    #[must_use]
    pub fn explain(self) -> Bilingual {
        let (en, cy) = match self {
            ErrorCode::InsightMalformed => ("The app sent this report in a form the server could not read.", "Anfonodd yr ap yr adroddiad hwn ar ffurf nad oedd y gweinydd yn gallu ei darllen."),
            ErrorCode::InsightSchemaUnsupported => ("This report comes from a newer app than the server knows; it will be read once the server is updated.", "Daw'r adroddiad hwn o ap mwy newydd nag y mae'r gweinydd yn ei adnabod; caiff ei ddarllen pan gaiff y gweinydd ei ddiweddaru."),
            ErrorCode::InsightIdMismatch => ("This report's identity did not match its record.", "Nid oedd hunaniaeth yr adroddiad hwn yn cyfateb i'w gofnod."),
            ErrorCode::InsightCapturedAtInvalid => ("The time on this report could not be read; check the phone's clock.", "Nid oedd modd darllen yr amser ar yr adroddiad hwn; gwiriwch gloc y ffôn."),
            ErrorCode::InsightCampaignUnknown => ("This report belongs to a campaign the server does not run.", "Mae'r adroddiad hwn yn perthyn i ymgyrch nad yw'r gweinydd yn ei chynnal."),
            ErrorCode::InsightCategoryUnknown => ("The topic chosen is not one of this campaign's; choose another.", "Nid yw'r pwnc a ddewiswyd yn un o bynciau'r ymgyrch hon; dewiswch un arall."),
            ErrorCode::InsightTextEmpty => ("The report has no words; add what was said.", "Nid oes geiriau yn yr adroddiad; ychwanegwch yr hyn a ddywedwyd."),
            ErrorCode::InsightTextTooLong => ("The report is too long; keep it under 1,000 characters.", "Mae'r adroddiad yn rhy hir; cadwch ef o dan 1,000 nod."),
            ErrorCode::InsightTextControlCharacter => ("The report has characters that cannot be stored; type it again.", "Mae nodau yn yr adroddiad na ellir eu cadw; teipiwch ef eto."),
            ErrorCode::InsightFeelingSafeOutOfRange => ("How safe you feel must be from 1 to 5.", "Rhaid i ba mor ddiogel rydych chi'n teimlo fod rhwng 1 a 5."),
            ErrorCode::InsightLocationInvalid => ("The location could not be used; try again or pick an area.", "Nid oedd modd defnyddio'r lleoliad; rhowch gynnig arall arni neu dewiswch ardal."),
            ErrorCode::InsightAreaUnknown => ("The area picked is not on the campaign's list.", "Nid yw'r ardal a ddewiswyd ar restr yr ymgyrch."),
            ErrorCode::InsightPostcodeUnknown => ("The postcode was not recognised; check it, or pick an area.", "Ni chafodd y cod post ei adnabod; gwiriwch ef, neu dewiswch ardal."),
            ErrorCode::InsightChannelUnknown => ("The kind of reporter was not recognised.", "Ni chafodd y math o ohebydd ei adnabod."),
            ErrorCode::InsightCapturedAtImplausible => ("The date on this report cannot be right (before 2020, or in the future); check the date on the phone.", "Ni all y dyddiad ar yr adroddiad hwn fod yn gywir (cyn 2020, neu yn y dyfodol); gwiriwch y dyddiad ar y ffôn."),
            ErrorCode::Unauthorized => ("The server does not know this phone; enrol it again.", "Nid yw'r gweinydd yn adnabod y ffôn hwn; cofrestrwch ef eto."),
            ErrorCode::Forbidden => ("This account may not do that.", "Ni chaiff y cyfrif hwn wneud hynny."),
            ErrorCode::DeviceRevoked => ("This phone was removed from the project; your reports stay on it. Ask for a new invitation.", "Tynnwyd y ffôn hwn o'r prosiect; mae eich adroddiadau'n aros arno. Gofynnwch am wahoddiad newydd."),
            ErrorCode::InvitationUnknown => ("That invitation code is not known; check it and try again.", "Nid yw'r cod gwahoddiad hwnnw'n hysbys; gwiriwch ef a rhowch gynnig arall arni."),
            ErrorCode::InvitationExpired => ("That invitation has expired; ask for a new one.", "Mae'r gwahoddiad hwnnw wedi dod i ben; gofynnwch am un newydd."),
            ErrorCode::InvitationUsedUp => ("That invitation has been used up; ask for a new one.", "Mae'r gwahoddiad hwnnw wedi'i ddefnyddio'n llawn; gofynnwch am un newydd."),
            ErrorCode::InvitationRevoked => ("That invitation was withdrawn; ask for a new one.", "Tynnwyd y gwahoddiad hwnnw'n ôl; gofynnwch am un newydd."),
            ErrorCode::ProtocolViolation => ("The app and the server could not understand each other; update the app.", "Nid oedd yr ap a'r gweinydd yn deall ei gilydd; diweddarwch yr ap."),
            ErrorCode::ProtocolVersionUnsupported => ("The app and the server could not understand each other; update the app.", "Nid oedd yr ap a'r gweinydd yn deall ei gilydd; diweddarwch yr ap."),
            ErrorCode::FrameTooLarge => ("Too much was sent at once; the phone will send it in smaller pieces.", "Anfonwyd gormod ar unwaith; bydd y ffôn yn ei anfon yn ddarnau llai."),
            ErrorCode::RateLimited => ("The server is busy; the phone will try again shortly.", "Mae'r gweinydd yn brysur; bydd y ffôn yn rhoi cynnig arall arni cyn bo hir."),
            ErrorCode::IdleTimeout => ("The connection went quiet; the phone will try again.", "Aeth y cysylltiad yn dawel; bydd y ffôn yn rhoi cynnig arall arni."),
            ErrorCode::DocumentUnavailable => ("The server does not hold this report for you.", "Nid yw'r gweinydd yn cadw'r adroddiad hwn i chi."),
            ErrorCode::DocumentReadOnly => ("Only the project team can change this.", "Dim ond tîm y prosiect all newid hyn."),
            ErrorCode::DocumentTooLarge => ("This report has grown too large to send; shorten it or capture it again.", "Mae'r adroddiad hwn wedi mynd yn rhy fawr i'w anfon; byrhewch ef neu ei gofnodi eto."),
            ErrorCode::InvalidQuery => ("The request could not be understood.", "Nid oedd modd deall y cais."),
            ErrorCode::InvalidRequest => ("The request could not be understood.", "Nid oedd modd deall y cais."),
            ErrorCode::AreaNotFound => ("No area has that code.", "Nid oes gan unrhyw ardal y cod hwnnw."),
            ErrorCode::Internal => ("Something went wrong on the server; nothing is lost, and the phone will try again.", "Aeth rhywbeth o'i le ar y gweinydd; does dim wedi'i golli, a bydd y ffôn yn rhoi cynnig arall arni."),
            ErrorCode::NotFound => ("The server has nothing at that address; update the app.", "Nid oes dim gan y gweinydd yn y cyfeiriad hwnnw; diweddarwch yr ap."),
            ErrorCode::MethodNotAllowed => ("The server does not take that kind of request there; update the app.", "Nid yw'r gweinydd yn derbyn y math hwnnw o gais yno; diweddarwch yr ap."),
            ErrorCode::InsightNotFound => ("This phone holds no such report.", "Nid oes adroddiad o'r fath ar y ffôn hwn."),
            ErrorCode::InsightWithdrawn => ("This report was withdrawn and can no longer be changed.", "Tynnwyd yr adroddiad hwn yn ôl ac ni ellir ei newid mwyach."),
            ErrorCode::NotEnrolled => ("This phone is not enrolled yet; enter your invitation code.", "Nid yw'r ffôn hwn wedi'i gofrestru eto; rhowch eich cod gwahoddiad."),
            ErrorCode::StoreDamaged => ("The reports kept on this phone cannot be read; nothing was changed. Restore them from a backup, or ask for help before starting again.", "Nid oes modd darllen yr adroddiadau a gedwir ar y ffôn hwn; ni newidiwyd dim. Adferwch nhw o gopi wrth gefn, neu gofynnwch am help cyn dechrau eto."),
            ErrorCode::RoleUnknown => ("That role does not exist; choose collector, coordinator, analyst, board or admin.", "Nid yw'r rôl honno'n bodoli; dewiswch casglwr, cydlynydd, dadansoddwr, bwrdd neu weinyddwr."),
            ErrorCode::ScopeInvalid => ("Each area must be written as SET:CODE, separated by commas.", "Rhaid ysgrifennu pob ardal fel SET:COD, wedi'u gwahanu gan atalnodau."),
            ErrorCode::ScopeAreaUnknown => ("An area in the scope is not in the newest boundaries of its set.", "Nid yw ardal yn y cwmpas yn ffiniau mwyaf newydd ei set."),
            ErrorCode::PersonEmailInvalid => ("That email address cannot be right; check it.", "Ni all y cyfeiriad e-bost hwnnw fod yn gywir; gwiriwch ef."),
            ErrorCode::PersonEmailTaken => ("Someone already has that email address.", "Mae gan rywun y cyfeiriad e-bost hwnnw eisoes."),
            ErrorCode::PersonUnknown => ("Nobody has that email address.", "Nid oes gan neb y cyfeiriad e-bost hwnnw."),
            ErrorCode::PersonDisabled => ("This account was disabled; ask an administrator.", "Analluogwyd y cyfrif hwn; gofynnwch i weinyddwr."),
            ErrorCode::TokenExpired => ("This token has expired; ask for a new one.", "Mae'r tocyn hwn wedi dod i ben; gofynnwch am un newydd."),
            ErrorCode::TokenExpiryInvalid => ("A token's expiry is a number of days or hours, such as 90d or 12h.", "Mae dyddiad dod i ben tocyn yn nifer o ddyddiau neu oriau, fel 90d neu 12h."),
            ErrorCode::SignInRefused => ("That email address and password do not match an account; check both and try again.", "Nid yw'r cyfeiriad e-bost a'r cyfrinair hwnnw'n cyfateb i gyfrif; gwiriwch y ddau a rhowch gynnig arall arni."),
            ErrorCode::SessionExpired => ("You have been signed out; sign in again.", "Rydych wedi cael eich allgofnodi; mewngofnodwch eto."),
            ErrorCode::CsrfInvalid => ("That form is out of date or came from another site; nothing was changed. Open the page again and resend it.", "Mae'r ffurflen honno wedi dyddio neu daeth o wefan arall; ni newidiwyd dim. Agorwch y dudalen eto a'i hanfon eto."),
            ErrorCode::PasswordTooShort => ("A password must be between 12 and 128 characters long.", "Rhaid i gyfrinair fod rhwng 12 a 128 nod o hyd."),
            ErrorCode::PasswordTooCommon => ("That password is one of the most common and easy to guess; choose another.", "Mae'r cyfrinair hwnnw'n un o'r rhai mwyaf cyffredin ac yn hawdd ei ddyfalu; dewiswch un arall."),
            ErrorCode::PasswordLinkInvalid => ("This link to set a password has expired or been used; ask an administrator for a new one.", "Mae'r ddolen hon i osod cyfrinair wedi dod i ben neu wedi'i defnyddio; gofynnwch i weinyddwr am un newydd."),
            ErrorCode::SignInStateInvalid => ("That sign-in took too long or was already used; start again.", "Cymerodd y mewngofnodi hwnnw ormod o amser neu fe'i defnyddiwyd eisoes; dechreuwch eto."),
            ErrorCode::IdentityRefused => ("Your organisation's sign-in could not be verified; try again, or ask an administrator.", "Nid oedd modd gwirio mewngofnodi eich sefydliad; rhowch gynnig arall arni, neu gofynnwch i weinyddwr."),
            ErrorCode::TriageChanged => ("Someone else changed this insight's triage since you opened it; look again, then save.", "Mae rhywun arall wedi newid brysbennu'r mewnwelediad hwn ers i chi ei agor; edrychwch eto, yna cadwch."),
            ErrorCode::TriageInvalid => ("That triage change is not valid; the message says which part.", "Nid yw'r newid brysbennu hwnnw'n ddilys; mae'r neges yn dweud pa ran."),
            ErrorCode::ExportTooLarge => ("The export has more rows than the format holds; narrow the filter or choose CSV.", "Mae gan yr allforyn fwy o resi nag y mae'r fformat yn ei ddal; culhewch yr hidlydd neu dewiswch CSV."),
        };
        Bilingual { en, cy }
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

    #[test]
    fn every_code_explains_itself_in_both_languages() {
        for code in ErrorCode::ALL {
            let Bilingual { en, cy } = code.explain();
            assert!(en.ends_with('.') && cy.ends_with('.'), "{code}: whole sentences");
            assert_ne!(en, cy, "{code}: the Welsh is not the English");
        }
    }
}
