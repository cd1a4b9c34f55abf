//! The insight: the one data model the phone and the server share, and the validation both run.

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::campaign::{self, Campaign};
use crate::codes::ErrorCode;

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u64 = 1;

/// The longest text accepted, in characters after trimming.
pub const MAX_TEXT_CHARS: usize = 1_000;

/// The earliest capture time accepted. No Grapevine campaign ran before 2020, so an earlier time is a phone whose
/// clock was reset (to 1970 or 2000, as a flat clock battery leaves some) or a forged document, never a real capture;
/// counted, it would sit in a period no query reads.
pub const EARLIEST_CAPTURED_AT: OffsetDateTime = time::macros::datetime!(2020-01-01 00:00 UTC);

/// How far ahead of the deciding clock a capture time may be. Times are compared as instants (the offset is part of
/// the time), so a phone in another time zone is not ahead; the allowance is for clocks that are simply wrong, such as
/// a wall clock set right in the wrong zone (up to a day out for every zone pair but the very farthest) or a phone that
/// has not yet corrected its clock from the network. More than a day ahead is not a clock error worth counting: it
/// would put an insight in a day that has not happened.
pub const MAX_CAPTURED_AT_AHEAD: time::Duration = time::Duration::hours(24);

/// One community-safety insight, as captured on a phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Insight {
    /// Made on the phone; also names the insight's document (see `DocumentId::for_insight`).
    pub id: Uuid,
    /// The device's clock at capture, with its UTC offset.
    pub captured_at: OffsetDateTime,
    /// The slug of the campaign whose form captured it.
    pub campaign: String,
    /// A category slug from the campaign's list.
    pub category: String,
    /// What the person said, trimmed.
    pub text: String,
    /// How safe the person feels, 1 (very unsafe) to 5 (very safe).
    pub feeling_safe: Option<u8>,
    pub location: Location,
    pub channel: Channel,
}

/// Where an insight is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// A GPS fix in WGS84 degrees with its accuracy radius in metres.
    Gps { lat: f64, lon: f64, accuracy_m: f64 },
    /// An area the person picked from the campaign's list, by its code (e.g. a ward's GSS code).
    Area { code: String },
    /// A UK postcode the person gave when there is no GPS fix; filed by its centroid.
    Postcode { postcode: String },
    /// No location given.
    None,
}

/// Who captured the insight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Staff,
    BarberHairdresser,
    Pupil,
    YouthWorker,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 5] =
        [Channel::Staff, Channel::BarberHairdresser, Channel::Pupil, Channel::YouthWorker, Channel::Other];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Staff => "staff",
            Channel::BarberHairdresser => "barber-hairdresser",
            Channel::Pupil => "pupil",
            Channel::YouthWorker => "youth-worker",
            Channel::Other => "other",
        }
    }

    #[must_use]
    pub fn parse(slug: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|channel| channel.as_str() == slug)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an insight is refused: a stable code, the field at fault and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message} ({code})")]
pub struct InvalidInsight {
    pub code: ErrorCode,
    pub field: &'static str,
    pub message: String,
}

impl InvalidInsight {
    pub(crate) fn new(code: ErrorCode, field: &'static str, message: impl Into<String>) -> Self {
        InvalidInsight { code, field, message: message.into() }
    }
}

impl Insight {
    /// Checks every field against the rules the phone and the server share. Area codes are checked only by the server,
    /// which holds the boundaries. `now` is the deciding clock (the phone's when it captures or edits, the server's
    /// when it decides), given rather than read so that this crate does no I/O and a decision can be replayed.
    ///
    /// # Errors
    /// The first field that breaks a rule, with its stable code.
    pub fn validate(&self, now: OffsetDateTime) -> Result<(), InvalidInsight> {
        let campaign = campaign::campaign(&self.campaign).ok_or_else(|| {
            InvalidInsight::new(
                ErrorCode::InsightCampaignUnknown,
                "campaign",
                format!("campaign '{}' is not known", self.campaign),
            )
        })?;
        validate_captured_at(self.captured_at, now)?;
        validate_category(campaign, &self.category)?;
        validate_text(&self.text)?;
        if let Some(score) = self.feeling_safe {
            if !(1..=5).contains(&score) {
                return Err(InvalidInsight::new(
                    ErrorCode::InsightFeelingSafeOutOfRange,
                    "feeling_safe",
                    format!("feeling safe must be from 1 to 5, not {score}"),
                ));
            }
        }
        validate_location(&self.location)
    }
}

/// What a person may change about an insight after capturing it; `None` leaves a field as it is. The id, the time of
/// capture, the campaign and the channel are facts of the capture and never change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InsightChanges {
    pub category: Option<String>,
    pub text: Option<String>,
    /// `Some(None)` clears the score.
    pub feeling_safe: Option<Option<u8>>,
    pub location: Option<Location>,
}

impl InsightChanges {
    /// Whether there is nothing to change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &InsightChanges::default()
    }

    /// The insight as it reads once these changes are made (text trimmed, as capture stores it).
    #[must_use]
    pub fn applied_to(&self, insight: &Insight) -> Insight {
        let mut changed = insight.clone();
        if let Some(category) = &self.category {
            changed.category.clone_from(category);
        }
        if let Some(text) = &self.text {
            changed.text = normalise_text(text);
        }
        if let Some(feeling_safe) = self.feeling_safe {
            changed.feeling_safe = feeling_safe;
        }
        if let Some(location) = &self.location {
            changed.location = location.clone();
        }
        changed
    }
}

fn validate_captured_at(captured_at: OffsetDateTime, now: OffsetDateTime) -> Result<(), InvalidInsight> {
    let implausible =
        |message: String| Err(InvalidInsight::new(ErrorCode::InsightCapturedAtImplausible, "captured_at", message));
    if captured_at < EARLIEST_CAPTURED_AT {
        return implausible(format!(
            "captured at {captured_at}, before {EARLIEST_CAPTURED_AT}, when no campaign had begun; check the phone's date"
        ));
    }
    // Checked so that a `now` near the end of time cannot overflow: nothing is later than the end of time.
    let latest = now.checked_add(MAX_CAPTURED_AT_AHEAD);
    if latest.is_some_and(|latest| captured_at > latest) {
        return implausible(format!(
            "captured at {captured_at}, more than {} hours after now ({now}); check the phone's date and time",
            MAX_CAPTURED_AT_AHEAD.whole_hours()
        ));
    }
    Ok(())
}

fn validate_category(campaign: &Campaign, slug: &str) -> Result<(), InvalidInsight> {
    if campaign.category(slug).is_some() {
        return Ok(());
    }
    Err(InvalidInsight::new(
        ErrorCode::InsightCategoryUnknown,
        "category",
        format!("category '{slug}' is not in the campaign '{}'", campaign.slug),
    ))
}

/// Trims `text` the way capture stores it. Validation runs on the trimmed text.
#[must_use]
pub fn normalise_text(text: &str) -> String {
    text.trim().to_owned()
}

fn validate_text(text: &str) -> Result<(), InvalidInsight> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(InvalidInsight::new(ErrorCode::InsightTextEmpty, "text", "text must not be empty"));
    }
    let n_chars = trimmed.chars().count();
    if n_chars > MAX_TEXT_CHARS {
        return Err(InvalidInsight::new(
            ErrorCode::InsightTextTooLong,
            "text",
            format!("text is {n_chars} characters; the most is {MAX_TEXT_CHARS}"),
        ));
    }
    if let Some(control) = trimmed.chars().find(|c| c.is_control()) {
        return Err(InvalidInsight::new(
            ErrorCode::InsightTextControlCharacter,
            "text",
            format!("text must be one line without control characters (found U+{:04X})", u32::from(control)),
        ));
    }
    Ok(())
}

/// The shape of a UK postcode, spaces ignored: an outward code of two to four letters and digits starting with a
/// letter, then an inward code of a digit and two letters.
fn is_postcode_shaped(text: &str) -> bool {
    let compact: Vec<char> = text.chars().filter(|c| *c != ' ').collect();
    if !(5..=7).contains(&compact.len()) || text.len() > 8 {
        return false;
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    outward[0].is_ascii_alphabetic()
        && outward.iter().all(char::is_ascii_alphanumeric)
        && inward[0].is_ascii_digit()
        && inward[1..].iter().all(char::is_ascii_alphabetic)
}

fn validate_location(location: &Location) -> Result<(), InvalidInsight> {
    match location {
        Location::Gps { lat, lon, accuracy_m } => {
            let lat_ok = lat.is_finite() && (-90.0..=90.0).contains(lat);
            let lon_ok = lon.is_finite() && (-180.0..=180.0).contains(lon);
            let accuracy_ok = accuracy_m.is_finite() && *accuracy_m >= 0.0;
            if lat_ok && lon_ok && accuracy_ok {
                Ok(())
            } else {
                Err(InvalidInsight::new(
                    ErrorCode::InsightLocationInvalid,
                    "location",
                    format!(
                        "a GPS fix needs latitude -90..90, longitude -180..180 and accuracy >= 0 m, \
                         not ({lat}, {lon}, {accuracy_m} m)"
                    ),
                ))
            }
        }
        Location::Area { code } => {
            let well_formed = !code.is_empty() && code.len() <= 32 && code.chars().all(|c| c.is_ascii_alphanumeric());
            if well_formed {
                Ok(())
            } else {
                Err(InvalidInsight::new(
                    ErrorCode::InsightLocationInvalid,
                    "location",
                    format!("area code '{code}' is not an area code"),
                ))
            }
        }
        Location::Postcode { postcode } => {
            if is_postcode_shaped(postcode) {
                Ok(())
            } else {
                Err(InvalidInsight::new(
                    ErrorCode::InsightLocationInvalid,
                    "location",
                    format!("'{postcode}' is not a UK postcode (like ST4 2DE)"),
                ))
            }
        }
        Location::None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Insight {
        Insight {
            id: Uuid::new_v4(),
            captured_at: time::macros::datetime!(2026-11-20 17:45 +00:00),
            campaign: "community-safety".into(),
            category: "road-safety".into(),
            text: "Cars race past the school gate at home time".into(),
            feeling_safe: Some(2),
            location: Location::Gps { lat: 53.0, lon: -2.18, accuracy_m: 12.0 },
            channel: Channel::Pupil,
        }
    }

    /// The deciding clock in these tests: a week after `sample` was captured.
    pub(crate) const NOW: OffsetDateTime = time::macros::datetime!(2026-11-27 12:00 +00:00);

    fn code_of(insight: &Insight) -> Option<(ErrorCode, &'static str)> {
        insight.validate(NOW).err().map(|error| (error.code, error.field))
    }

    #[test]
    fn a_well_formed_insight_passes() {
        assert_eq!(sample().validate(NOW), Ok(()));
        let mut no_location = sample();
        no_location.location = Location::None;
        no_location.feeling_safe = None;
        assert_eq!(no_location.validate(NOW), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field_and_code() {
        let mut insight = sample();
        insight.category = "parking".into();
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightCategoryUnknown, "category")));

        let mut insight = sample();
        insight.campaign = "elsewhere".into();
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightCampaignUnknown, "campaign")));

        let mut insight = sample();
        insight.text = "   \t ".into();
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightTextEmpty, "text")));

        let mut insight = sample();
        insight.text = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightTextTooLong, "text")));

        let mut insight = sample();
        insight.text = "two\nlines".into();
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightTextControlCharacter, "text")));

        let mut insight = sample();
        insight.feeling_safe = Some(6);
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightFeelingSafeOutOfRange, "feeling_safe")));
        insight.feeling_safe = Some(0);
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightFeelingSafeOutOfRange, "feeling_safe")));

        let mut insight = sample();
        insight.location = Location::Gps { lat: 91.0, lon: 0.0, accuracy_m: 5.0 };
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightLocationInvalid, "location")));
        insight.location = Location::Gps { lat: 52.0, lon: f64::NAN, accuracy_m: 5.0 };
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightLocationInvalid, "location")));
        insight.location = Location::Gps { lat: 52.0, lon: -2.0, accuracy_m: -1.0 };
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightLocationInvalid, "location")));
        insight.location = Location::Postcode { postcode: "ST4 2DE".into() };
        assert!(insight.validate(NOW).is_ok());
        insight.location = Location::Postcode { postcode: "not a postcode".into() };
        assert_eq!(insight.validate(NOW).unwrap_err().code, ErrorCode::InsightLocationInvalid);
        insight.location = Location::Area { code: "E05 008714".into() };
        assert_eq!(code_of(&insight), Some((ErrorCode::InsightLocationInvalid, "location")));
    }

    #[test]
    fn a_capture_time_before_any_campaign_or_beyond_the_clock_skew_allowance_is_implausible() {
        let implausible = Some((ErrorCode::InsightCapturedAtImplausible, "captured_at"));
        let at = |captured_at: OffsetDateTime| {
            let mut insight = sample();
            insight.captured_at = captured_at;
            code_of(&insight)
        };
        assert_eq!(at(time::macros::datetime!(9999-12-31 23:59 +00:00)), implausible);
        assert_eq!(at(time::macros::datetime!(1066-10-14 09:00 +00:00)), implausible);
        assert_eq!(at(time::macros::datetime!(0000-01-01 00:00 +00:00)), implausible);
        assert_eq!(at(time::macros::datetime!(1970-01-01 00:00 +00:00)), implausible, "a reset clock");

        // The bounds themselves are plausible; a second beyond them is not.
        assert_eq!(at(EARLIEST_CAPTURED_AT), None);
        assert_eq!(at(EARLIEST_CAPTURED_AT - time::Duration::SECOND), implausible);
        assert_eq!(at(NOW + MAX_CAPTURED_AT_AHEAD), None);
        assert_eq!(at(NOW + MAX_CAPTURED_AT_AHEAD + time::Duration::SECOND), implausible);
        // The offset is part of the time: 01:00 tomorrow in Auckland (+13) is this very moment in UTC, and 02:00 the
        // day after is 25 hours ahead.
        assert_eq!(at(time::macros::datetime!(2026-11-28 01:00 +13:00)), None);
        assert_eq!(at(time::macros::datetime!(2026-11-29 02:00 +13:00)), implausible);

        let mut insight = sample();
        insight.captured_at = time::macros::datetime!(9999-12-31 23:59 +00:00);
        let message = insight.validate(NOW).unwrap_err().message;
        assert!(message.contains("9999") && message.contains("24 hours"), "{message}");
        assert_eq!(sample().validate(OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX)), Ok(()), "no overflow");
    }

    #[test]
    fn text_length_counts_characters_after_trimming() {
        let mut insight = sample();
        insight.text = format!("  {}  ", "é".repeat(MAX_TEXT_CHARS));
        assert_eq!(insight.validate(NOW), Ok(()), "1,000 two-byte characters plus spaces is within the limit");
        assert_eq!(normalise_text("  hi  "), "hi");
    }

    #[test]
    fn channels_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("barber"), None);
    }
}
