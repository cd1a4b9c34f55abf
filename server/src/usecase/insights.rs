//! The analyst's workbench: reading insights (a filtered, keyset-paged list and one insight with its history) and
//! triaging them (docs/workbench.md). Every read is checked against `read_insights`, narrowed to the principal's
//! scope (an insight, like an area, outside it is answered exactly as one that does not exist) and recorded with its
//! filter and row count, never the text.

use grapevine_sync_proto::document::{history, Version};
use grapevine_sync_proto::{DocumentId, ErrorCode};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use super::rollups::Visible;
use super::{UseCaseError, UseCases};
use crate::audit::AuditOutcome;
use crate::domain::insight_query::{normalise_tag, Cursor, InsightPageRequest, InsightQuery, TriageState};
use crate::domain::{shown, Action, Principal};
use crate::geo::atlas::{Atlas, Generation};
use crate::store::insights::{InsightFilter, InsightRecord, Triage, TriageChange, TriageError};

/// The longest a triage note may be, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// The most tags or priority links one write may add or remove.
const MAX_TRIAGE_ITEMS: usize = 20;

/// An insight as an analyst reads it: the record, and its collector as a pseudonym.
#[derive(Debug, Clone)]
pub struct InsightView {
    pub record: InsightRecord,
    /// Stable for all of a collector's insights and devices; never the collector's or a device's id.
    pub collector: String,
}

/// One page of a list.
#[derive(Debug)]
pub struct InsightPage {
    pub items: Vec<InsightView>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// One insight in full: the view and its history.
#[derive(Debug)]
pub struct InsightDetail {
    pub view: InsightView,
    pub history: Vec<Version>,
}

/// A triage write as an analyst asks for it: the version read, and what to change.
#[derive(Debug, Clone, Default)]
pub struct TriageRequest {
    pub version: i64,
    pub state: Option<TriageState>,
    pub note: Option<String>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    /// `SET:AREA:CATEGORY`.
    pub link_priorities: Vec<String>,
    pub unlink_priorities: Vec<String>,
}

/// A collector's pseudonym: `c-` and ten base-32 characters of HMAC-SHA256 of its id under `key` (50 bits: a
/// collision needs tens of millions of collectors).
#[must_use]
pub fn pseudonym(key: &[u8], collector_id: Uuid) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(collector_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    let mut text = String::from("c-");
    for _ in 0..10 {
        text.push(char::from(ALPHABET[(bits >> 59) as usize]));
        bits <<= 5;
    }
    text
}

/// Pseudonyms made once per collector for the length of an export: a million rows come from a few thousand
/// collectors, and an HMAC for each row was a measurable share of an export's time. Forgets everything past
/// `REMEMBERED` collectors, so its memory stays bounded whatever the export.
pub(crate) struct Pseudonyms {
    key: Vec<u8>,
    known: std::cell::RefCell<std::collections::HashMap<Uuid, String>>,
}

impl Pseudonyms {
    const REMEMBERED: usize = 50_000;

    pub(crate) fn new(key: Vec<u8>) -> Self {
        Pseudonyms { key, known: std::cell::RefCell::default() }
    }

    pub(crate) fn of(&self, collector_id: Uuid) -> String {
        let mut known = self.known.borrow_mut();
        if let Some(pseudonym) = known.get(&collector_id) {
            return pseudonym.clone();
        }
        if known.len() >= Self::REMEMBERED {
            known.clear();
        }
        let made = pseudonym(&self.key, collector_id);
        known.insert(collector_id, made.clone());
        made
    }
}

fn not_found(id: &str) -> UseCaseError {
    UseCaseError::NotFound {
        code: ErrorCode::InsightNotFound,
        message: format!("no insight has the id '{}'", shown(id)),
    }
}

fn invalid_triage(message: impl Into<String>) -> UseCaseError {
    UseCaseError::Invalid { code: ErrorCode::TriageInvalid, message: message.into() }
}

impl UseCases {
    /// The generation a query reads, and the store's filter with the principal's scope applied.
    ///
    /// # Errors
    /// `NotFound` (`area_not_found`) for an unknown set or generation, or an area that does not exist or lies outside
    /// the scope (alike).
    pub fn insight_filter<'a>(
        principal: &Principal,
        atlas: &'a Atlas,
        query: &InsightQuery,
    ) -> Result<(InsightFilter, &'a Generation), UseCaseError> {
        let generation = atlas.find(query.set.as_deref(), query.generation).ok_or_else(|| {
            let known: Vec<String> = atlas
                .generations()
                .iter()
                .map(|generation| format!("{} {}", generation.info.set_name, generation.info.generation))
                .collect();
            UseCaseError::NotFound {
                code: ErrorCode::AreaNotFound,
                message: format!("no such boundary set or generation; there are: {}", known.join(", ")),
            }
        })?;
        let visible = Visible::of(principal, atlas, generation);
        let areas = if query.areas.is_empty() {
            match visible {
                Visible::All => None,
                Visible::Only(codes) => Some(codes.into_iter().collect()),
            }
        } else {
            for code in &query.areas {
                if generation.boundaries.area(code).is_none() || !visible.contains(code) {
                    return Err(UseCaseError::NotFound {
                        code: ErrorCode::AreaNotFound,
                        message: format!("no area has the code '{}'", shown(code)),
                    });
                }
            }
            Some(query.areas.clone())
        };
        Ok((InsightFilter { query: query.clone(), generation_id: generation.info.id, areas }, generation))
    }

    /// The key pseudonyms are made with, read once.
    pub(super) async fn pseudonym_key(&self) -> Result<&[u8], UseCaseError> {
        Ok(self.pseudonym_key.get_or_try_init(|| self.store.pseudonym_key()).await?.as_slice())
    }

    pub(crate) async fn views(&self, records: Vec<InsightRecord>) -> Result<Vec<InsightView>, UseCaseError> {
        let key = self.pseudonym_key().await?;
        Ok(records
            .into_iter()
            .map(|record| InsightView { collector: pseudonym(key, record.collector_id), record })
            .collect())
    }

    /// `GET /api/v1/insights`: a page of the insights the filter and the scope let through, newest first.
    ///
    /// # Errors
    /// `Forbidden` (recorded); `NotFound` for an area outside the scope; the store or the trail fails.
    pub async fn list_insights(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        request: &InsightPageRequest,
    ) -> Result<InsightPage, UseCaseError> {
        let target = request.query.describe();
        self.authorize_audited(principal, Action::ReadInsights, "insights.read", &target).await?;
        let (filter, _) = Self::insight_filter(principal, atlas, &request.query)?;
        // One more than the page, to know whether another follows.
        let mut records =
            self.store.insight_page(&filter, request.cursor.map(|cursor| cursor.before_seq), request.limit + 1).await?;
        let more = records.len() > request.limit as usize;
        records.truncate(request.limit as usize);
        let next_cursor = more.then(|| records.last().map(|last| Cursor { before_seq: last.seq })).flatten();
        self.record(principal, "insights.read", &target, AuditOutcome::Allowed, json!({ "rows": records.len() }))
            .await?;
        Ok(InsightPage { items: self.views(records).await?, next_cursor })
    }

    /// The insight `id` if it exists and the principal may see it: an unscoped principal sees every insight, a
    /// scoped one those tagged, in some generation, into an area within its scope.
    async fn visible_insight(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        id: &str,
    ) -> Result<InsightRecord, UseCaseError> {
        let parsed: Uuid = id.trim().parse().map_err(|_| not_found(id))?;
        let record = self.store.insight_record(parsed).await?.ok_or_else(|| not_found(id))?;
        let visible = match &principal.scope {
            crate::domain::Scope::Everything => true,
            scope => record.row.tags.iter().any(|tag| {
                tag.area_code != crate::store::OUTSIDE_COVERAGE
                    && atlas.areas_within(scope, tag.generation_id).contains(&tag.area_code)
            }),
        };
        if visible {
            Ok(record)
        } else {
            Err(not_found(id))
        }
    }

    /// `GET /api/v1/insights/{id}`: one insight with its history (read from its own document).
    ///
    /// # Errors
    /// `Forbidden` (recorded); `NotFound` (`insight_not_found`) for an unknown id or one outside the scope, alike;
    /// the store or the trail fails.
    pub async fn insight_detail(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        id: &str,
    ) -> Result<InsightDetail, UseCaseError> {
        let target = shown(id);
        self.authorize_audited(principal, Action::ReadInsights, "insight.read", &target).await?;
        let record = match self.visible_insight(principal, atlas, id).await {
            Ok(record) => record,
            Err(error) => {
                self.record(
                    principal,
                    "insight.read",
                    &target,
                    AuditOutcome::Failed,
                    json!({ "code": error.code().as_str() }),
                )
                .await?;
                return Err(error);
            }
        };
        let history = match self.store.load_document(DocumentId::for_insight(record.row.id)).await? {
            Some(stored) => match automerge::AutoCommit::load(&stored.bytes) {
                Ok(mut doc) => history(&mut doc),
                Err(error) => {
                    tracing::warn!(insight = %record.row.id, %error, "an insight's document cannot be read for its history");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        self.record(principal, "insight.read", &record.row.id.to_string(), AuditOutcome::Allowed, json!({})).await?;
        let view = self.views(vec![record]).await?.pop().expect("one view");
        Ok(InsightDetail { view, history })
    }

    /// Changes an insight's triage, if nobody changed it since `request.version`. Triage is the analysts' own: it is
    /// never written into the collector's document.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound` (`insight_not_found`); `Invalid` (`triage_invalid`) naming the bad part;
    /// `Conflict` (`triage_changed`) when another analyst wrote first (nothing is written); the store fails.
    pub async fn update_triage(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        id: &str,
        request: TriageRequest,
    ) -> Result<Triage, UseCaseError> {
        let target = shown(id);
        self.authorize_audited(principal, Action::TriageInsights, "triage.update", &target).await?;
        let change = Self::triage_change(principal, atlas, request.clone())?;
        let record = self.visible_insight(principal, atlas, id).await?;
        let mut changed: Vec<&str> = Vec::new();
        if change.state.is_some() {
            changed.push("state");
        }
        if change.note.is_some() {
            changed.push("note");
        }
        if !change.add_tags.is_empty() || !change.remove_tags.is_empty() {
            changed.push("tags");
        }
        if !change.link_priorities.is_empty() || !change.unlink_priorities.is_empty() {
            changed.push("priorities");
        }
        if changed.is_empty() {
            return Err(invalid_triage("the change changes nothing: give a state, a note, tags or priorities"));
        }
        let detail = json!({
            "fields": changed,
            "state": change.state.map(TriageState::as_str),
            "version": request.version,
        });
        let author = principal.actor.audit_name();
        let id = record.row.id;
        self.audited(principal, Action::TriageInsights, "triage.update", &id.to_string(), detail, async {
            match self.store.update_triage(id, request.version, &change, &author).await {
                Ok(triage) => Ok(triage),
                Err(TriageError::Changed { expected, current }) => Err(UseCaseError::Conflict {
                    code: ErrorCode::TriageChanged,
                    message: format!(
                        "the triage changed since version {expected}: it is at version {} now ({}); read it again, \
                         then save",
                        current.version,
                        current.state.as_str()
                    ),
                }),
                Err(TriageError::Unknown) => Err(not_found(&id.to_string())),
                Err(TriageError::Database(error)) => Err(UseCaseError::Internal(error)),
            }
        })
        .await
    }

    /// Checks a triage request and puts it in the store's terms.
    fn triage_change(
        principal: &Principal,
        atlas: &Atlas,
        request: TriageRequest,
    ) -> Result<TriageChange, UseCaseError> {
        if request.version < 0 {
            return Err(invalid_triage("version must be the triage's version as read (0 for never triaged)"));
        }
        let note = match request.note.map(|note| note.trim().to_owned()) {
            Some(note) if note.is_empty() => return Err(invalid_triage("the note is empty")),
            Some(note) if note.chars().count() > MAX_NOTE_CHARS => {
                return Err(invalid_triage(format!("the note is longer than {MAX_NOTE_CHARS} characters")))
            }
            other => other,
        };
        let lists = [&request.add_tags, &request.remove_tags, &request.link_priorities, &request.unlink_priorities];
        if lists.iter().any(|list| list.len() > MAX_TRIAGE_ITEMS) {
            return Err(invalid_triage(format!("give at most {MAX_TRIAGE_ITEMS} tags or priorities at once")));
        }
        let tags = |list: &[String]| -> Result<Vec<String>, UseCaseError> {
            list.iter().map(|tag| normalise_tag(tag).map_err(invalid_triage)).collect()
        };
        let priorities = |list: &[String]| -> Result<Vec<String>, UseCaseError> {
            list.iter().map(|priority| priority_ref(principal, atlas, priority)).collect()
        };
        Ok(TriageChange {
            state: request.state,
            note,
            add_tags: tags(&request.add_tags)?,
            remove_tags: tags(&request.remove_tags)?,
            link_priorities: priorities(&request.link_priorities)?,
            unlink_priorities: priorities(&request.unlink_priorities)?,
        })
    }
}

/// A priority as `SET:AREA:CATEGORY`: an area the principal may see in its set's newest generation, and a category
/// of the campaign.
fn priority_ref(principal: &Principal, atlas: &Atlas, text: &str) -> Result<String, UseCaseError> {
    let refused = |why: &str| invalid_triage(format!("priority '{}' {why}", shown(text)));
    let mut parts = text.trim().splitn(3, ':');
    let (Some(set), Some(area), Some(category)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(refused("is not SET:AREA:CATEGORY"));
    };
    if grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN.category(category).is_none() {
        return Err(refused("names no category of the campaign"));
    }
    let generation = atlas.newest_of(set).ok_or_else(|| refused("names no boundary set"))?;
    let visible = Visible::of(principal, atlas, generation);
    if generation.boundaries.area(area).is_none() || !visible.contains(area) {
        return Err(refused("names no area you can see"));
    }
    Ok(format!("{set}:{area}:{category}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pseudonym_is_stable_keyed_and_says_nothing_of_the_id() {
        let collector = Uuid::from_u128(0x1234);
        let (one, other) = ([1u8; 32], [2u8; 32]);
        let name = pseudonym(&one, collector);
        assert_eq!(name, pseudonym(&one, collector), "stable");
        assert_ne!(name, pseudonym(&other, collector), "keyed");
        assert_ne!(name, pseudonym(&one, Uuid::from_u128(0x1235)));
        assert_eq!(name.len(), 12);
        assert!(name.starts_with("c-") && name[2..].bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert!(!name.contains(&collector.simple().to_string()[..6]));
    }

    #[test]
    fn an_export_remembers_pseudonyms_and_forgets_them_past_its_bound() {
        let pseudonyms = Pseudonyms::new(vec![1u8; 32]);
        let ids: Vec<Uuid> = (0..Pseudonyms::REMEMBERED as u128 + 1).map(Uuid::from_u128).collect();
        for id in &ids {
            assert_eq!(pseudonyms.of(*id), pseudonym(&[1u8; 32], *id));
        }
        assert_eq!(pseudonyms.known.borrow().len(), 1, "full, it starts again");
        assert_eq!(pseudonyms.of(ids[0]), pseudonym(&[1u8; 32], ids[0]));
    }
}
