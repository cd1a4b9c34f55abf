//! What the server decided about an insight, as the store keeps it: one type, carrying its rejection's code from the
//! one code table. (The document's `ServerStatus` adds the area's name for the phone; `Outcome::of` reads it.)

use grapevine_sync_proto::document::ServerStatus;
use grapevine_sync_proto::ErrorCode;

/// The server's decision about one insight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Geotagged into an area of the filing generation.
    Filed { area_code: String },
    /// Stored and counted, but its point lies outside every area.
    OutsideCoverage,
    /// Refused: never counted. The document keeps what was sent.
    Rejected { code: ErrorCode, message: String },
    /// Taken back by the person who captured it: stored, counted nowhere.
    Withdrawn,
}

impl Outcome {
    /// The statuses that count in the roll-ups, as stored. The store's SQL filters say the same
    /// (`store::tests` checks every `status IN (…)` against this list).
    pub const COUNTED_STATUSES: [&'static str; 2] = ["filed", "outside_coverage"];

    /// The decision as the store keeps it in the insight's row.
    #[must_use]
    pub fn of(status: &ServerStatus) -> Outcome {
        match status {
            ServerStatus::Filed { area_code, .. } => Outcome::Filed { area_code: area_code.clone() },
            ServerStatus::OutsideCoverage => Outcome::OutsideCoverage,
            ServerStatus::Rejected { code, message } => Outcome::Rejected { code: *code, message: message.clone() },
            ServerStatus::Withdrawn => Outcome::Withdrawn,
        }
    }

    /// The stored status: `filed`, `outside_coverage`, `rejected` or `withdrawn`.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Filed { .. } => "filed",
            Outcome::OutsideCoverage => "outside_coverage",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Withdrawn => "withdrawn",
        }
    }

    /// Whether an insight with this outcome counts in the roll-ups.
    #[must_use]
    pub fn counts(&self) -> bool {
        Outcome::COUNTED_STATUSES.contains(&self.status())
    }
}
