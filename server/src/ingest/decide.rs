//! What the server makes of an insight document that changed: extract, validate, geotag, decide. Pure: no I/O, so the
//! ingest service (`ingest::service`) can run it inside its load–apply–save cycle and tests can run it on a bare
//! document.

use grapevine_sync_proto::automerge::AutoCommit;
pub use grapevine_sync_proto::document::is_withdrawn;
use grapevine_sync_proto::document::{read_insight, ServerRecord, ServerStatus};
use grapevine_sync_proto::insight::Location;
use grapevine_sync_proto::{DocumentId, ErrorCode, Insight, InvalidInsight};
use time::OffsetDateTime;

use crate::geo::atlas::{Atlas, Whereabouts};
use crate::store::{InsightRow, Outcome};

/// The server's decision: the row to store and the record to write back into the document.
#[derive(Debug, Clone)]
pub struct Decision {
    pub row: InsightRow,
    pub record: ServerRecord,
}

/// The postcode an insight document is located by, if any: the ingest service looks its centroid up before `decide`.
#[must_use]
pub fn postcode_of(doc: &AutoCommit) -> Option<String> {
    match grapevine_sync_proto::document::read_location(doc).ok()? {
        Location::Postcode { postcode } => Some(postcode),
        _ => None,
    }
}

/// The decision for a withdrawn insight: it counts nowhere, whatever it says, and its row keeps no content, so the
/// analysts' tables hold nothing the person took back (the document keeps it, on their phone and here, until it is
/// erased). Withdrawal is final: the ingest service keeps this decision for a document that was withdrawn when stored,
/// even if a later change writes `withdrawn: false`.
#[must_use]
pub fn withdrawn(doc_id: DocumentId, now: OffsetDateTime) -> Decision {
    let row = InsightRow::without_content(doc_id.as_uuid(), Outcome::Withdrawn, now);
    Decision { row, record: ServerRecord { status: ServerStatus::Withdrawn, processed_at: now } }
}

/// Decides what an insight document means now: filed in the atlas's filing generation, tagged in every generation.
/// `postcode_centroid` is the looked-up centroid of the insight's postcode, if it has one and it is known.
#[must_use]
pub fn decide(
    doc: &AutoCommit,
    doc_id: DocumentId,
    atlas: &Atlas,
    postcode_centroid: Option<(f64, f64)>,
    now: OffsetDateTime,
) -> Decision {
    if is_withdrawn(doc) {
        return withdrawn(doc_id, now);
    }
    let insight = read_insight(doc).and_then(|insight| check(insight, doc_id, now));
    let (insight, status, whereabouts) = match insight {
        Err(invalid) => (None, rejected(&invalid), None),
        Ok(insight) => {
            let (status, whereabouts) = geotag(&insight, atlas, postcode_centroid);
            (Some(insight), status, whereabouts)
        }
    };
    let outcome = Outcome::of(&status);
    let row = match (insight, whereabouts) {
        (Some(insight), Some(whereabouts)) => {
            let mut row = row_of(insight, outcome, now);
            row.tags = atlas.tag_everywhere(&whereabouts);
            row.tag_point = whereabouts.point;
            row
        }
        _ => InsightRow::without_content(doc_id.as_uuid(), outcome, now),
    };
    Decision { row, record: ServerRecord { status, processed_at: now } }
}

fn check(insight: Insight, doc_id: DocumentId, now: OffsetDateTime) -> Result<Insight, InvalidInsight> {
    if insight.id != doc_id.as_uuid() {
        return Err(InvalidInsight {
            code: ErrorCode::InsightIdMismatch,
            field: "id",
            message: format!("insight id {} does not match its document {doc_id}", insight.id),
        });
    }
    insight.validate(now)?;
    Ok(insight)
}

fn rejected(invalid: &InvalidInsight) -> ServerStatus {
    ServerStatus::Rejected { code: invalid.code, message: format!("{}: {}", invalid.field, invalid.message) }
}

/// Files the insight in the filing generation, and says where it is for tagging everywhere; `None` when it is
/// rejected.
fn geotag(
    insight: &Insight,
    atlas: &Atlas,
    postcode_centroid: Option<(f64, f64)>,
) -> (ServerStatus, Option<Whereabouts>) {
    let filing = &atlas.filing().boundaries;
    let whereabouts = match &insight.location {
        Location::Gps { lat, lon, accuracy_m } => Whereabouts {
            point: Some((*lat, *lon)),
            accuracy_m: Some(*accuracy_m),
            picked_area_code: None,
            approximate: false,
        },
        Location::Area { code } => {
            let Some(area) = filing.area(code) else {
                let message = format!("location: area '{code}' is not one of the campaign's areas");
                return (ServerStatus::Rejected { code: ErrorCode::InsightAreaUnknown, message }, None);
            };
            // Other sets and generations file it by a point inside the picked area.
            let inside = geo::InteriorPoint::interior_point(&area.shape).map(|point| (point.y(), point.x()));
            Whereabouts { point: inside, accuracy_m: None, picked_area_code: Some(code.clone()), approximate: true }
        }
        Location::Postcode { postcode } => {
            let Some(centroid) = postcode_centroid else {
                let message = format!("location: postcode '{postcode}' is not in the postcode directory");
                return (ServerStatus::Rejected { code: ErrorCode::InsightPostcodeUnknown, message }, None);
            };
            Whereabouts { point: Some(centroid), accuracy_m: None, picked_area_code: None, approximate: true }
        }
        // Counted, but in no area: the roll-up shows it under outside_coverage rather than dropping it.
        Location::None => Whereabouts { point: None, accuracy_m: None, picked_area_code: None, approximate: false },
    };
    let (code, _) = crate::geo::atlas::tag_in(filing, &whereabouts);
    let status = match filing.area(&code) {
        Some(area) => ServerStatus::Filed { area_code: area.code.clone(), area_name: area.name.clone() },
        None => ServerStatus::OutsideCoverage,
    };
    (status, Some(whereabouts))
}

fn row_of(insight: Insight, outcome: Outcome, now: OffsetDateTime) -> InsightRow {
    let (gps, picked_area_code, postcode) = match insight.location {
        Location::Gps { lat, lon, accuracy_m } => (Some((lat, lon, accuracy_m)), None, None),
        Location::Area { code } => (None, Some(code), None),
        Location::Postcode { postcode } => (None, None, Some(crate::store::normalise_postcode(&postcode))),
        Location::None => (None, None, None),
    };
    InsightRow {
        id: insight.id,
        captured_at: Some(insight.captured_at),
        campaign: Some(insight.campaign),
        category: Some(insight.category),
        text: Some(insight.text),
        feeling_safe: insight.feeling_safe,
        channel: Some(insight.channel.as_str().to_owned()),
        gps,
        picked_area_code,
        postcode,
        tag_point: None,
        outcome,
        processed_at: now,
        tags: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_sync_proto::automerge::transaction::Transactable;
    use grapevine_sync_proto::document::write_insight;
    use grapevine_sync_proto::Channel;
    use uuid::Uuid;

    fn doc_for(location: Location) -> (AutoCommit, DocumentId) {
        let insight = Insight {
            id: Uuid::new_v4(),
            captured_at: time::macros::datetime!(2026-11-20 08:15 +00:00),
            campaign: "community-safety".into(),
            category: "asb".into(),
            text: "Fireworks thrown at the bus shelter".into(),
            feeling_safe: Some(2),
            location,
            channel: Channel::YouthWorker,
        };
        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &insight).unwrap();
        (doc, DocumentId::for_insight(insight.id))
    }

    fn status_of(doc: &AutoCommit, doc_id: DocumentId) -> ServerStatus {
        decide(doc, doc_id, &Atlas::bundled(), None, OffsetDateTime::now_utc()).record.status
    }

    #[test]
    fn an_area_picked_by_code_is_filed_there_or_rejected() {
        let (doc, doc_id) = doc_for(Location::Area { code: "E05008714".into() });
        assert_eq!(
            status_of(&doc, doc_id),
            ServerStatus::Filed { area_code: "E05008714".into(), area_name: "Abbey Hulton and Townsend".into() }
        );
        let (doc, doc_id) = doc_for(Location::Area { code: "E05999999".into() });
        assert!(matches!(status_of(&doc, doc_id), ServerStatus::Rejected { code: ErrorCode::InsightAreaUnknown, .. }));
    }

    #[test]
    fn points_far_away_and_missing_locations_count_outside_coverage() {
        let (doc, doc_id) = doc_for(Location::Gps { lat: 51.5007, lon: -0.1246, accuracy_m: 5.0 });
        assert_eq!(status_of(&doc, doc_id), ServerStatus::OutsideCoverage);
        let (doc, doc_id) = doc_for(Location::None);
        assert_eq!(status_of(&doc, doc_id), ServerStatus::OutsideCoverage);
    }

    #[test]
    fn a_withdrawn_insight_counts_nowhere_even_if_it_is_invalid() {
        let (mut doc, doc_id) = doc_for(Location::Area { code: "E05008714".into() });
        grapevine_sync_proto::document::write_withdrawn(&mut doc).unwrap();
        let decision = decide(&doc, doc_id, &Atlas::bundled(), None, OffsetDateTime::now_utc());
        assert_eq!(decision.record.status, ServerStatus::Withdrawn);
        assert_eq!(decision.row.outcome, Outcome::Withdrawn);
        assert!(decision.row.tags.is_empty() && decision.row.category.is_none() && decision.row.text.is_none());
        assert!(decision.row.contributions(Uuid::new_v4()).is_empty());

        doc.put(grapevine_sync_proto::automerge::ROOT, "category", "parking").unwrap();
        assert_eq!(status_of(&doc, doc_id), ServerStatus::Withdrawn);
    }

    #[test]
    fn a_document_claiming_another_insight_or_breaking_a_rule_is_rejected() {
        let (doc, _) = doc_for(Location::None);
        let decision = decide(&doc, DocumentId::random(), &Atlas::bundled(), None, OffsetDateTime::now_utc());
        assert!(matches!(decision.record.status, ServerStatus::Rejected { code: ErrorCode::InsightIdMismatch, .. }));
        assert!(matches!(decision.row.outcome, Outcome::Rejected { .. }));

        let (mut doc, doc_id) = doc_for(Location::None);
        doc.put(grapevine_sync_proto::automerge::ROOT, "category", "parking").unwrap();
        let ServerStatus::Rejected { code, message } = status_of(&doc, doc_id) else { panic!("not rejected") };
        assert_eq!(code, ErrorCode::InsightCategoryUnknown);
        assert!(message.starts_with("category: "), "{message}");
    }
}
