//! The phone's durable store: one SQLite file in a directory, one Automerge document per insight.
//!
//! `capture` returns only after the transaction holding the new document has committed with `synchronous=FULL`, so an
//! insight whose capture returned survives a crash or a flat battery.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use grapevine_sync_proto::automerge::{ActorId, AutoCommit};
use grapevine_sync_proto::campaign::{campaign_document, DEFAULT_CAMPAIGN, DEFAULT_CAMPAIGN_SLUG};
use grapevine_sync_proto::campaign_doc::{read_campaign, CampaignSheet};
use grapevine_sync_proto::doc_id::{bound_insight_id, id_key_from_hex, id_key_to_hex, ID_KEY_BYTES};
use grapevine_sync_proto::document::{
    format_time, is_withdrawn, read_insight, read_server_record, write_changes, write_insight, write_withdrawn,
    ServerStatus,
};
use grapevine_sync_proto::insight::normalise_text;
use grapevine_sync_proto::{Channel, DocumentId, ErrorCode, Insight, InsightChanges, Location};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::enrol::Enrolment;
use crate::error::SdkError;

/// The file inside the store directory.
pub const STORE_FILE: &str = "grapevine-store.db";

/// What a person fills in on the capture form.
#[derive(Debug, Clone)]
pub struct Draft {
    pub category: String,
    pub text: String,
    pub feeling_safe: Option<u8>,
    pub location: Location,
    pub channel: Channel,
    /// Defaults to now, in the device's local offset where it can be read.
    pub captured_at: Option<OffsetDateTime>,
    /// Defaults to the bundled campaign.
    pub campaign: Option<String>,
}

/// Where an insight is on its way from the phone to the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// On this phone only.
    Captured,
    /// The server holds it; its decision has not reached this phone yet.
    Stored,
    /// Filed under an area.
    Filed { area_code: String, area_name: String },
    /// Stored and counted, but not in any area the campaign covers.
    OutsideCoverage,
    /// Refused by the server; never counted.
    Rejected { code: String, message: String },
    /// Withdrawn by the person who captured it, and the server has stopped counting it.
    Withdrawn,
}

/// The language of what the phone tells the person: the campaign's two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    English,
    Welsh,
}

impl Language {
    /// `en` or `cy` (and their longer spellings); `None` otherwise.
    #[must_use]
    pub fn parse(tag: &str) -> Option<Language> {
        match tag.to_ascii_lowercase().as_str() {
            "en" | "eng" | "english" => Some(Language::English),
            "cy" | "cym" | "welsh" | "cymraeg" => Some(Language::Welsh),
            _ => None,
        }
    }

    fn pick(self, en: &str, cy: &str) -> String {
        match self {
            Language::English => en.to_owned(),
            Language::Welsh => cy.to_owned(),
        }
    }
}

impl Status {
    /// The stable spelling used in the store and in `--json` output.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Captured => "captured",
            Status::Stored => "stored",
            Status::Filed { .. } => "filed",
            Status::OutsideCoverage => "outside_coverage",
            Status::Rejected { .. } => "rejected",
            Status::Withdrawn => "withdrawn",
        }
    }

    /// A sentence for the person who captured it, in English (the server's own words for a rejection).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Status::Rejected { code, message } => format!("rejected: {message} ({code})"),
            _ => self.describe_in(Language::English),
        }
    }

    /// A sentence for the person who captured it, in their language. A rejection says why in words meant for them
    /// (`ErrorCode::explain`), with its code; a code this SDK does not know falls back to the server's message.
    #[must_use]
    pub fn describe_in(&self, language: Language) -> String {
        match self {
            Status::Captured => {
                language.pick("captured on this phone, not sent yet", "wedi'i gofnodi ar y ffôn hwn, heb ei anfon eto")
            }
            Status::Stored => language.pick("on the server", "ar y gweinydd"),
            Status::Filed { area_code, area_name } => match language {
                Language::English => format!("filed under {area_name} ({area_code})"),
                Language::Welsh => format!("wedi'i ffeilio o dan {area_name} ({area_code})"),
            },
            Status::OutsideCoverage => language
                .pick("on the server, outside the areas covered", "ar y gweinydd, y tu allan i'r ardaloedd a gwmpesir"),
            Status::Rejected { code, message } => {
                let reason = ErrorCode::parse(code).map_or_else(
                    || message.clone(),
                    |known| {
                        let explained = known.explain();
                        language.pick(explained.en, explained.cy)
                    },
                );
                format!("{} {reason} ({code})", language.pick("rejected:", "gwrthodwyd:"))
            }
            Status::Withdrawn => {
                language.pick("withdrawn; it no longer counts", "wedi'i dynnu'n ôl; nid yw'n cyfrif mwyach")
            }
        }
    }

    fn is_final(&self) -> bool {
        matches!(self, Status::Filed { .. } | Status::OutsideCoverage | Status::Rejected { .. } | Status::Withdrawn)
    }
}

/// A document as the phone holds it, with its persisted sync state.
#[derive(Debug)]
pub(crate) struct LocalDocument {
    pub doc_id: DocumentId,
    pub doc: AutoCommit,
    pub sync_state: Option<Vec<u8>>,
}

/// One insight as `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub id: Uuid,
    pub captured_at: String,
    pub category: String,
    pub text: String,
    /// What the server last said (or `Captured`, if it has not heard of it).
    pub status: Status,
    /// The person withdrew it on this phone (the server confirms with `Status::Withdrawn`).
    pub withdrawn: bool,
    /// An edit or withdrawal made on this phone has not reached the server yet; `status` is from before it.
    pub unsent_change: bool,
}

impl Listed {
    /// A sentence for the person who captured it: the server's word, and what is still waiting to be sent.
    #[must_use]
    pub fn describe(&self) -> String {
        self.with_unsent(self.status.describe(), Language::English)
    }

    /// The same, in the person's language.
    #[must_use]
    pub fn describe_in(&self, language: Language) -> String {
        self.with_unsent(self.status.describe_in(language), language)
    }

    fn with_unsent(&self, status: String, language: Language) -> String {
        match (self.unsent_change, self.withdrawn) {
            (false, _) => status,
            (true, true) => {
                format!(
                    "{status}; {}",
                    language.pick("the withdrawal is not sent yet", "nid yw'r tynnu'n ôl wedi'i anfon eto")
                )
            }
            (true, false) => {
                format!("{status}; {}", language.pick("the edit is not sent yet", "nid yw'r golygiad wedi'i anfon eto"))
            }
        }
    }
}

/// The local store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    actor: ActorId,
    peer_id: String,
    /// Made once, kept across re-enrolments: the ids of insights captured while enrolled are made with it, and the
    /// server lets only the device that registered it create documents under them (`bound_insight_id`).
    id_key: [u8; ID_KEY_BYTES],
}

impl Store {
    /// Opens the store in `dir`, creating the directory and the database if there is no store there yet.
    ///
    /// A store that is there but empty or damaged is refused (`SdkError::StoreDamaged`, code `store_damaged`) and left
    /// as it is: starting it afresh would lose its insights and enrolment without a word. A store is "there" when its
    /// database file exists (whatever its size) or its write-ahead log does; a new one is made under a temporary name
    /// and linked into place only once its schema is written, so a store file that exists was complete once, and an
    /// empty one was emptied. The directory (when this makes it) is private to the user (0700), and so are the
    /// database and SQLite's files beside it (0600), which hold the insights and the device token.
    ///
    /// # Errors
    /// `SdkError::StoreDamaged`; or the directory or database cannot be created or opened (`SdkError::Storage`).
    pub async fn open(dir: impl AsRef<Path>) -> Result<Store, SdkError> {
        let dir = dir.as_ref();
        create_private_dir(dir)?;
        let path = dir.join(STORE_FILE);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.len() == 0 => {
                return Err(damaged(&path, "the file is empty (0 bytes); the insights and enrolment it held are gone"));
            }
            Ok(_) => make_private(&path)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if sibling(&path, "-wal").exists() {
                    return Err(damaged(&path, "the database file is missing but its write-ahead log (-wal) is there"));
                }
                create_store_file(dir, &path).await?;
            }
            Err(error) => return Err(SdkError::Storage(format!("reading {}: {error}", path.display()))),
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|error| damaged_or_storage(&path, error))?;
        check_intact(&pool, &path).await?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(|error| SdkError::Storage(error.to_string()))?;
        let actor_hex = meta_value(&pool, "actor", || Uuid::new_v4().simple().to_string()).await?;
        let peer_id = meta_value(&pool, "peer_id", || format!("phone-{}", Uuid::new_v4())).await?;
        let actor = ActorId::from_str(&actor_hex).map_err(|error| SdkError::Storage(format!("actor id: {error}")))?;
        let id_key_hex = meta_value(&pool, "id_key", || id_key_to_hex(&rand::random::<[u8; ID_KEY_BYTES]>())).await?;
        let id_key =
            id_key_from_hex(&id_key_hex).ok_or_else(|| SdkError::Storage("the id key is not 64 hex digits".into()))?;
        Ok(Store { pool, actor, peer_id, id_key })
    }

    /// This phone's peer id in the sync protocol (stable across restarts).
    #[must_use]
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Validates and stores a new insight; returns once it is durable.
    ///
    /// # Errors
    /// `SdkError::Invalid` naming the field at fault (nothing is stored), or a storage failure.
    pub async fn capture(&self, draft: Draft) -> Result<Uuid, SdkError> {
        let now = now_local();
        // Once the server holds this phone's id key (it was sent at enrolment), ids name the phone, so nobody who
        // learns one can store a document under it first.
        let id = if self.ids_bound().await? { bound_insight_id(&self.id_key, Uuid::new_v4()) } else { Uuid::new_v4() };
        let insight = Insight {
            id,
            captured_at: draft.captured_at.unwrap_or(now),
            campaign: draft.campaign.unwrap_or_else(|| DEFAULT_CAMPAIGN_SLUG.to_owned()),
            category: draft.category,
            text: normalise_text(&draft.text),
            feeling_safe: draft.feeling_safe,
            location: draft.location,
            channel: draft.channel,
        };
        insight.validate(now)?;
        let mut doc = AutoCommit::new().with_actor(self.actor.clone());
        write_insight(&mut doc, &insight)?;
        sqlx::query(
            "INSERT INTO insights (doc_id, insight_id, captured_at, category, text, doc, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, (SELECT COALESCE(MAX(seq), 0) + 1 FROM insights))",
        )
        .bind(DocumentId::for_insight(insight.id).to_string())
        .bind(insight.id.to_string())
        .bind(format_time(insight.captured_at))
        .bind(&insight.category)
        .bind(&insight.text)
        .bind(doc.save())
        .execute(&self.pool)
        .await?;
        Ok(insight.id)
    }

    /// Every insight on this phone, oldest first, with its status.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn list(&self) -> Result<Vec<Listed>, SdkError> {
        let rows =
            sqlx::query(&format!("SELECT {LISTED_COLUMNS} FROM insights ORDER BY seq")).fetch_all(&self.pool).await?;
        rows.iter().map(listed_from_row).collect()
    }

    /// One insight, with its status.
    ///
    /// # Errors
    /// `SdkError::NotFound` if this phone has no insight with this id, or a storage failure.
    pub async fn get(&self, id: Uuid) -> Result<Listed, SdkError> {
        let row = sqlx::query(&format!("SELECT {LISTED_COLUMNS} FROM insights WHERE insight_id = ?1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(SdkError::NotFound(id))?;
        listed_from_row(&row)
    }

    /// One insight as it reads now on this phone, edits included.
    ///
    /// # Errors
    /// `SdkError::NotFound`, a document that is not a readable insight (`SdkError::Invalid`), or a storage failure.
    pub async fn insight(&self, id: Uuid) -> Result<Insight, SdkError> {
        let bytes: Vec<u8> = sqlx::query_scalar("SELECT doc FROM insights WHERE insight_id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(SdkError::NotFound(id))?;
        Ok(read_insight(&AutoCommit::load(&bytes)?)?)
    }

    /// Edits a captured insight: the fields `changes` names, as Automerge changes to its document, validated by the
    /// same rules as capture. It syncs like a new capture; the server decides again (re-validated, re-geotagged,
    /// its roll-up contribution moved). Durable when this returns.
    ///
    /// # Errors
    /// `SdkError::NotFound`; `SdkError::Withdrawn` (a withdrawn insight is not edited); `SdkError::Invalid` naming the
    /// field if the edited insight breaks a rule (nothing changes); a storage failure.
    pub async fn edit(&self, id: Uuid, changes: &InsightChanges) -> Result<Listed, SdkError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (mut doc, withdrawn) = self.load_for_change(&mut tx, id).await?;
        if withdrawn {
            return Err(SdkError::Withdrawn(id));
        }
        if !changes.is_empty() {
            let edited = changes.applied_to(&read_insight(&doc)?);
            edited.validate(now_local())?;
            write_changes(&mut doc, changes)?;
            sqlx::query(
                "UPDATE insights SET doc = ?2, category = ?3, text = ?4, dirty = 1,
                     local_change = (status <> 'captured')
                 WHERE insight_id = ?1",
            )
            .bind(id.to_string())
            .bind(doc.save())
            .bind(&edited.category)
            .bind(&edited.text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get(id).await
    }

    /// Withdraws an insight: the person takes it back. The document is marked (`withdrawn: true`) and syncs; the
    /// server stops counting it and answers with the status `withdrawn`. Withdrawing twice changes nothing. Durable
    /// when this returns.
    ///
    /// # Errors
    /// `SdkError::NotFound`, or a storage failure.
    pub async fn withdraw(&self, id: Uuid) -> Result<Listed, SdkError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (mut doc, withdrawn) = self.load_for_change(&mut tx, id).await?;
        if !withdrawn {
            write_withdrawn(&mut doc)?;
            sqlx::query(
                "UPDATE insights SET doc = ?2, withdrawn = 1, dirty = 1, local_change = (status <> 'captured')
                 WHERE insight_id = ?1",
            )
            .bind(id.to_string())
            .bind(doc.save())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get(id).await
    }

    async fn load_for_change(&self, tx: &mut sqlx::SqliteConnection, id: Uuid) -> Result<(AutoCommit, bool), SdkError> {
        let row = sqlx::query("SELECT doc FROM insights WHERE insight_id = ?1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(SdkError::NotFound(id))?;
        let bytes: Vec<u8> = row.get("doc");
        let doc = AutoCommit::load(&bytes)?.with_actor(self.actor.clone());
        let withdrawn = is_withdrawn(&doc);
        Ok((doc, withdrawn))
    }

    /// The documents a sync must visit: those the server may lack, and those whose decision the phone has not seen;
    /// or, with `everything`, every document.
    pub(crate) async fn documents_to_sync(&self, everything: bool) -> Result<Vec<LocalDocument>, SdkError> {
        let rows = sqlx::query(
            "SELECT doc_id, doc, sync_state FROM insights
             WHERE ?1 OR dirty = 1 OR status NOT IN ('filed', 'outside_coverage', 'rejected', 'withdrawn')
             ORDER BY seq",
        )
        .bind(everything)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| self.local_document_from(&row)).collect()
    }

    /// This phone's copy of a document, if it has one.
    pub(crate) async fn local_document(&self, doc_id: DocumentId) -> Result<Option<LocalDocument>, SdkError> {
        let row = sqlx::query("SELECT doc_id, doc, sync_state FROM insights WHERE doc_id = ?1")
            .bind(doc_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| self.local_document_from(&row)).transpose()
    }

    fn local_document_from(&self, row: &sqlx::sqlite::SqliteRow) -> Result<LocalDocument, SdkError> {
        let doc_id: String = row.get("doc_id");
        let doc_id: DocumentId = doc_id.parse().map_err(|_| SdkError::Storage(format!("bad document id {doc_id}")))?;
        let bytes: Vec<u8> = row.get("doc");
        let doc = AutoCommit::load(&bytes)?.with_actor(self.actor.clone());
        Ok(LocalDocument { doc_id, doc, sync_state: row.get("sync_state") })
    }

    /// A document the server published (the campaign), as last synced.
    pub(crate) async fn published(&self, doc_id: DocumentId) -> Result<Option<AutoCommit>, SdkError> {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar("SELECT doc FROM published WHERE doc_id = ?1")
            .bind(doc_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(bytes.and_then(|bytes| AutoCommit::load(&bytes).ok()))
    }

    /// Keeps a published document as a sync left it.
    pub(crate) async fn save_published(&self, doc_id: DocumentId, doc: &mut AutoCommit) -> Result<(), SdkError> {
        sqlx::query(
            "INSERT INTO published (doc_id, doc) VALUES (?1, ?2) ON CONFLICT (doc_id) DO UPDATE SET doc = excluded.doc",
        )
        .bind(doc_id.to_string())
        .bind(doc.save())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The campaign the capture form renders, offline: as the server last published it (categories in English and
    /// Welsh, prompts, the areas to pick from), or before the first sync the bundled default, without areas.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn campaign(&self) -> Result<CampaignSheet, SdkError> {
        let synced = match campaign_document(DEFAULT_CAMPAIGN_SLUG) {
            Some(doc_id) => self.published(doc_id).await?.as_ref().and_then(read_campaign),
            None => None,
        };
        Ok(synced.unwrap_or_else(|| CampaignSheet::new(&DEFAULT_CAMPAIGN, Vec::new(), String::new())))
    }

    /// What this phone enrolled with, if it has.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn enrolment(&self) -> Result<Option<Enrolment>, SdkError> {
        let row =
            sqlx::query("SELECT server_url, device_id, collector_id, token, enrolled_at FROM enrolment WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            let id = |column: &str| {
                let text: String = row.get(column);
                text.parse::<Uuid>().map_err(|_| SdkError::Storage(format!("bad {column} {text}")))
            };
            Ok(Enrolment {
                server_url: row.get("server_url"),
                device_id: id("device_id")?,
                collector_id: id("collector_id")?,
                token: row.get("token"),
                enrolled_at: row.get("enrolled_at"),
            })
        })
        .transpose()
    }

    /// Keeps an enrolment, replacing any earlier one. The new device belongs to a new collector, whose writes this
    /// phone has seen none of yet.
    pub(crate) async fn save_enrolment(&self, enrolment: &Enrolment) -> Result<(), SdkError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO enrolment (id, server_url, device_id, collector_id, token, enrolled_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET server_url = excluded.server_url, device_id = excluded.device_id,
                 collector_id = excluded.collector_id, token = excluded.token, enrolled_at = excluded.enrolled_at",
        )
        .bind(&enrolment.server_url)
        .bind(enrolment.device_id.to_string())
        .bind(enrolment.collector_id.to_string())
        .bind(&enrolment.token)
        .bind(&enrolment.enrolled_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM meta WHERE key = 'seen'").execute(&mut *tx).await?;
        // The enrolment sent this store's id key, so the device holds it from now on.
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('ids_bound_to', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1",
        )
        .bind(enrolment.device_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// This store's id key, as the enrolment request carries it (64 hex digits).
    pub(crate) fn id_key_hex(&self) -> String {
        id_key_to_hex(&self.id_key)
    }

    /// Whether the device this phone is enrolled as holds its id key (enrolled by this version of the SDK).
    async fn ids_bound(&self) -> Result<bool, SdkError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM meta JOIN enrolment ON meta.value = enrolment.device_id
             WHERE meta.key = 'ids_bound_to')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// How far this phone has durably seen the collector's writes (0 before its first catch-up).
    pub(crate) async fn seen(&self) -> Result<i64, SdkError> {
        let seen: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'seen'").fetch_optional(&self.pool).await?;
        Ok(seen.and_then(|seen| seen.parse().ok()).unwrap_or(0))
    }

    pub(crate) async fn set_seen(&self, seen: i64) -> Result<(), SdkError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('seen', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(seen.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The storage lineage of the server this phone last offered everything to.
    pub(crate) async fn server_storage_id(&self) -> Result<Option<String>, SdkError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = 'server_storage_id'")
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(crate) async fn set_server_storage_id(&self, storage_id: &str) -> Result<(), SdkError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('server_storage_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(storage_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Saves every document of a finished sync in one transaction, recording what the phone now knows about each
    /// (the server holds all of them: they are in step). A document this phone did not have (written by another
    /// device of the same collector) is added. Returns each status, and whether the insight is new to this phone.
    pub(crate) async fn save_synced(
        &self,
        docs: Vec<(DocumentId, &mut AutoCommit, Option<Vec<u8>>)>,
    ) -> Result<Vec<(Status, bool)>, SdkError> {
        // Immediate: the transaction reads each document before writing it, and must not lose a race to an edit.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut results = Vec::with_capacity(docs.len());
        for (doc_id, doc, sync_state) in docs {
            results.push(save_synced_in(&mut tx, doc_id, doc, sync_state).await?);
        }
        tx.commit().await?;
        Ok(results)
    }
}

/// One document of [`Store::save_synced`], inside its transaction.
async fn save_synced_in(
    tx: &mut sqlx::SqliteConnection,
    doc_id: DocumentId,
    doc: &mut AutoCommit,
    sync_state: Option<Vec<u8>>,
) -> Result<(Status, bool), SdkError> {
    let status = match read_server_record(doc).map(|record| record.status) {
        Some(ServerStatus::Filed { area_code, area_name }) => Status::Filed { area_code, area_name },
        Some(ServerStatus::OutsideCoverage) => Status::OutsideCoverage,
        Some(ServerStatus::Rejected { code, message }) => Status::Rejected { code: code.as_str().to_owned(), message },
        Some(ServerStatus::Withdrawn) => Status::Withdrawn,
        None => Status::Stored,
    };
    let (area_code, area_name, reject_code, reject_message) = match &status {
        Status::Filed { area_code, area_name } => (Some(area_code.clone()), Some(area_name.clone()), None, None),
        Status::Rejected { code, message } => (None, None, Some(code.clone()), Some(message.clone())),
        _ => (None, None, None, None),
    };
    // An edit or withdrawal made on the phone while the sync ran is merged in, not overwritten, and stays to be sent.
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT doc FROM insights WHERE doc_id = ?1")
        .bind(doc_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    let is_new = stored.is_none();
    let changed_meanwhile = match stored {
        Some(bytes) => {
            let synced_heads = doc.get_heads();
            doc.merge(&mut AutoCommit::load(&bytes)?)?;
            doc.get_heads() != synced_heads
        }
        None => false,
    };
    // What list shows; a document from another client may not be a readable insight.
    let insight = read_insight(doc).ok();
    sqlx::query(
        "INSERT INTO insights (doc_id, insight_id, captured_at, category, text, doc, status, area_code, area_name,
             reject_code, reject_message, dirty, sync_state, withdrawn, local_change, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM insights))
         ON CONFLICT (doc_id) DO UPDATE SET doc = excluded.doc, status = excluded.status,
             category = excluded.category, text = excluded.text,
             area_code = excluded.area_code, area_name = excluded.area_name, reject_code = excluded.reject_code,
             reject_message = excluded.reject_message, dirty = excluded.dirty,
             sync_state = COALESCE(excluded.sync_state, sync_state), withdrawn = excluded.withdrawn,
             local_change = excluded.local_change",
    )
    .bind(doc_id.to_string())
    .bind(doc_id.as_uuid().to_string())
    .bind(insight.as_ref().map_or_else(String::new, |insight| format_time(insight.captured_at)))
    .bind(insight.as_ref().map_or("", |insight| insight.category.as_str()))
    .bind(insight.as_ref().map_or("", |insight| insight.text.as_str()))
    .bind(doc.save())
    .bind(status.as_str())
    .bind(area_code)
    .bind(area_name)
    .bind(reject_code)
    .bind(reject_message)
    .bind(i64::from(changed_meanwhile || !status.is_final()))
    .bind(sync_state)
    .bind(is_withdrawn(doc))
    .bind(changed_meanwhile)
    .execute(&mut *tx)
    .await?;
    Ok((status, is_new))
}

/// The columns `listed_from_row` reads.
const LISTED_COLUMNS: &str = "insight_id, captured_at, category, text, status, area_code, area_name, reject_code,
    reject_message, withdrawn, local_change";

fn listed_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Listed, SdkError> {
    let id: String = row.get("insight_id");
    Ok(Listed {
        id: id.parse().map_err(|_| SdkError::Storage(format!("bad insight id {id}")))?,
        captured_at: row.get("captured_at"),
        category: row.get("category"),
        text: row.get("text"),
        status: status_from_row(row),
        withdrawn: row.get("withdrawn"),
        unsent_change: row.get("local_change"),
    })
}

fn status_from_row(row: &sqlx::sqlite::SqliteRow) -> Status {
    let text = |column: &str| row.get::<Option<String>, _>(column).unwrap_or_default();
    match row.get::<String, _>("status").as_str() {
        "stored" => Status::Stored,
        "filed" => Status::Filed { area_code: text("area_code"), area_name: text("area_name") },
        "outside_coverage" => Status::OutsideCoverage,
        "rejected" => Status::Rejected { code: text("reject_code"), message: text("reject_message") },
        "withdrawn" => Status::Withdrawn,
        _ => Status::Captured,
    }
}

/// The refusal of a store that is there but cannot be used as it is.
fn damaged(path: &Path, reason: impl Into<String>) -> SdkError {
    SdkError::StoreDamaged { path: path.display().to_string(), reason: reason.into() }
}

/// An SQLite failure while opening: "not a database" and "malformed" mean the file is damaged; anything else (a
/// permission, a full disk) is a storage failure to report as it is.
fn damaged_or_storage(path: &Path, error: sqlx::Error) -> SdkError {
    const SQLITE_CORRUPT: i32 = 11;
    const SQLITE_NOTADB: i32 = 26;
    let primary_code = match &error {
        sqlx::Error::Database(database) => {
            database.code().and_then(|code| code.parse::<i32>().ok()).map(|code| code & 0xff)
        }
        _ => None,
    };
    match primary_code {
        Some(SQLITE_NOTADB) => damaged(path, format!("the file is not an SQLite database ({error})")),
        Some(SQLITE_CORRUPT) => damaged(path, format!("the database is damaged ({error})")),
        _ => SdkError::Storage(format!("opening {}: {error}", path.display())),
    }
}

/// Refuses a database that SQLite finds damaged, or that is not a Grapevine store at all (its tables missing), before
/// migrations would write into it.
async fn check_intact(pool: &SqlitePool, path: &Path) -> Result<(), SdkError> {
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(3)")
        .fetch_all(pool)
        .await
        .map_err(|error| damaged_or_storage(path, error))?;
    if problems.iter().any(|line| line != "ok") {
        return Err(damaged(path, format!("the database is damaged ({})", problems.join("; "))));
    }
    let n_tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_sqlx_migrations', 'meta', 'insights')",
    )
    .fetch_one(pool)
    .await
    .map_err(|error| damaged_or_storage(path, error))?;
    if n_tables != 3 {
        return Err(damaged(
            path,
            "the file is an SQLite database, but not a Grapevine store (its tables are missing)",
        ));
    }
    Ok(())
}

/// `path` with `suffix` added to its file name, as SQLite names the files beside a database (`-wal`, `-shm`).
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Makes a brand-new store file: created private under a temporary name, its schema written, then linked into place
/// (never over a file another process linked first) and the temporary name removed. A crash before the link leaves
/// only the temporary file, so the store's own name never holds a half-made store.
async fn create_store_file(dir: &Path, path: &Path) -> Result<(), SdkError> {
    let storage = |what: &str, error: &dyn std::fmt::Display| SdkError::Storage(format!("{what}: {error}"));
    remove_abandoned_staging_files(dir);
    let staging = dir.join(format!("{STAGING_PREFIX}{}{STAGING_SUFFIX}", Uuid::new_v4().simple()));
    create_private_file(&staging).map_err(|error| storage(&format!("creating {}", staging.display()), &error))?;
    let made = async {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&staging)
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let migrated = sqlx::migrate!("./migrations").run(&pool).await;
        pool.close().await;
        migrated.map_err(|error| SdkError::Storage(error.to_string()))
    }
    .await;
    let linked = made.and_then(|()| match std::fs::hard_link(&staging, path) {
        Ok(()) => Ok(()),
        // Another process made the store meanwhile; theirs is the store.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A file system without hard links: a rename, which could only replace a store made in the last instant.
        Err(_) if !path.exists() => {
            std::fs::rename(&staging, path).map_err(|error| storage(&format!("naming {}", path.display()), &error))
        }
        Err(error) => Err(storage(&format!("linking {}", path.display()), &error)),
    });
    // The temporary name goes whatever happened; a leftover is harmless, so failing to remove it is not an error.
    let _ = std::fs::remove_file(&staging);
    let _ = std::fs::remove_file(sibling(&staging, "-journal"));
    linked?;
    sync_dir(dir).map_err(|error| storage(&format!("syncing {}", dir.display()), &error))
}

/// How a store being made is named until it is linked into place: `.grapevine-store.db.<random>.creating`.
const STAGING_PREFIX: &str = ".grapevine-store.db.";
const STAGING_SUFFIX: &str = ".creating";

/// How old a temporary store must be to count as abandoned (by a process that died making it); making one takes
/// milliseconds, so an hour never removes one still being made.
const STAGING_ABANDONED_AFTER: Duration = Duration::from_secs(60 * 60);

/// Removes temporary stores that processes died making, so crashes at first start do not pile them up.
fn remove_abandoned_staging_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_staging = name.starts_with(STAGING_PREFIX)
            && (name.ends_with(STAGING_SUFFIX) || name.ends_with(&format!("{STAGING_SUFFIX}-journal")));
        let age = entry.metadata().and_then(|metadata| metadata.modified()).ok().and_then(|at| at.elapsed().ok());
        if is_staging && age.is_some_and(|age| age > STAGING_ABANDONED_AFTER) {
            // Best effort: a file that cannot be removed now is tried again at the next new store.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates `dir` (and any missing parent) readable by its user only; an existing directory is left as it is, since
/// it may be a directory of the person's own.
fn create_private_dir(dir: &Path) -> Result<(), SdkError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| SdkError::Storage(format!("creating {}: {error}", dir.display())))
}

fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// Takes group and other permissions off a store made before stores were private, and off SQLite's files beside it
/// (SQLite gives new `-wal` and `-shm` files the database's own permissions, so these stay private from now on).
fn make_private(path: &Path) -> Result<(), SdkError> {
    #[cfg(unix)]
    for file in [path.to_path_buf(), sibling(path, "-wal"), sibling(path, "-shm")] {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = std::fs::metadata(&file) else { continue };
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(|error| SdkError::Storage(format!("making {} private: {error}", file.display())))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Makes a new name in `dir` durable (a no-op where directories cannot be synced).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

async fn meta_value(pool: &SqlitePool, key: &str, make: impl FnOnce() -> String) -> Result<String, SdkError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(make())
        .execute(pool)
        .await?;
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1").bind(key).fetch_one(pool).await?)
}

/// Now, in the device's offset where the platform lets us read it safely, else UTC.
fn now_local() -> OffsetDateTime {
    OffsetDateTime::now_local().unwrap_or_else(|_| OffsetDateTime::now_utc())
}

impl From<grapevine_sync_proto::automerge::AutomergeError> for SdkError {
    fn from(error: grapevine_sync_proto::automerge::AutomergeError) -> Self {
        SdkError::Storage(format!("document: {error}"))
    }
}

/// The stable code of a status's rejection, parsed, for callers that branch on it.
#[must_use]
pub fn rejection_code(status: &Status) -> Option<ErrorCode> {
    match status {
        Status::Rejected { code, .. } => ErrorCode::parse(code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            category: "road-safety".into(),
            text: "  Cars race past the school gate  ".into(),
            feeling_safe: Some(2),
            location: Location::Gps { lat: 53.0, lon: -2.18, accuracy_m: 10.0 },
            channel: Channel::Pupil,
            captured_at: None,
            campaign: None,
        }
    }

    #[tokio::test]
    async fn captures_survive_reopening_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let first = store.capture(draft()).await.unwrap();
        let second = store.capture(Draft { category: "asb".into(), ..draft() }).await.unwrap();
        let peer_id = store.peer_id().to_owned();
        drop(store);

        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.peer_id(), peer_id, "the phone keeps its identity");
        let listed = store.list().await.unwrap();
        assert_eq!(listed.iter().map(|l| l.id).collect::<Vec<_>>(), vec![first, second]);
        assert_eq!(listed[0].text, "Cars race past the school gate", "text is stored trimmed");
        assert_eq!(listed[0].status, Status::Captured);
        assert_eq!(store.documents_to_sync(false).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_invalid_draft_names_its_field_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let error = store.capture(Draft { text: " ".into(), ..draft() }).await.unwrap_err();
        let SdkError::Invalid(invalid) = error else { panic!("expected Invalid, got {error:?}") };
        assert_eq!((invalid.code, invalid.field), (ErrorCode::InsightTextEmpty, "text"));
        let error = store.capture(Draft { category: "parking".into(), ..draft() }).await.unwrap_err();
        assert!(matches!(error, SdkError::Invalid(ref invalid) if invalid.field == "category"), "{error:?}");
        assert!(store.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_capture_time_before_2020_or_in_the_future_is_refused_and_nothing_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for captured_at in [
            time::macros::datetime!(9999-12-31 12:00 +00:00),
            time::macros::datetime!(1066-10-14 09:00 +00:00),
            OffsetDateTime::now_utc() + time::Duration::days(2),
        ] {
            let error = store.capture(Draft { captured_at: Some(captured_at), ..draft() }).await.unwrap_err();
            let SdkError::Invalid(invalid) = error else { panic!("expected Invalid, got {error:?}") };
            assert_eq!((invalid.code, invalid.field), (ErrorCode::InsightCapturedAtImplausible, "captured_at"));
        }
        assert!(store.list().await.unwrap().is_empty());
        let yesterday = OffsetDateTime::now_utc() - time::Duration::days(1);
        store.capture(Draft { captured_at: Some(yesterday), ..draft() }).await.unwrap();
    }

    #[tokio::test]
    async fn edits_are_validated_and_withdrawn_insights_are_not_edited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let id = store.capture(draft()).await.unwrap();
        let changes = InsightChanges { category: Some("asb".into()), feeling_safe: Some(None), ..Default::default() };
        let listed = store.edit(id, &changes).await.unwrap();
        assert_eq!((listed.category.as_str(), &listed.status, listed.unsent_change), ("asb", &Status::Captured, false));
        let insight = store.insight(id).await.unwrap();
        assert_eq!((insight.category.as_str(), insight.feeling_safe), ("asb", None));

        let bad = InsightChanges { text: Some("\u{7}".into()), ..Default::default() };
        let error = store.edit(id, &bad).await.unwrap_err();
        assert!(matches!(error, SdkError::Invalid(ref invalid) if invalid.field == "text"), "{error:?}");
        assert_eq!(store.insight(id).await.unwrap().text, "Cars race past the school gate", "nothing changed");

        let unknown = Uuid::new_v4();
        assert_eq!(store.edit(unknown, &changes).await.unwrap_err().code(), Some(ErrorCode::InsightNotFound));
        assert_eq!(store.withdraw(unknown).await.unwrap_err().code(), Some(ErrorCode::InsightNotFound));
        assert_eq!(store.get(unknown).await.unwrap_err().code(), Some(ErrorCode::InsightNotFound));

        let listed = store.withdraw(id).await.unwrap();
        assert!(listed.withdrawn);
        assert!(store.withdraw(id).await.unwrap().withdrawn, "withdrawing twice is harmless");
        assert_eq!(store.edit(id, &changes).await.unwrap_err().code(), Some(ErrorCode::InsightWithdrawn));
        assert_eq!(store.documents_to_sync(false).await.unwrap().len(), 1, "the withdrawal waits to be sent");
    }

    #[test]
    fn statuses_read_in_english_and_welsh_and_a_rejection_says_why_for_the_person() {
        let filed = Status::Filed { area_code: "E05008737".into(), area_name: "Joiner's Square".into() };
        assert_eq!(filed.describe_in(Language::Welsh), "wedi'i ffeilio o dan Joiner's Square (E05008737)");
        let rejected =
            Status::Rejected { code: "insight_postcode_unknown".into(), message: "no postcode ST1 9ZZ".into() };
        assert_eq!(
            rejected.describe_in(Language::English),
            "rejected: The postcode was not recognised; check it, or pick an area. (insight_postcode_unknown)"
        );
        assert!(rejected.describe_in(Language::Welsh).starts_with("gwrthodwyd: Ni chafodd y cod post ei adnabod"));
        assert_eq!(
            rejected.describe(),
            "rejected: no postcode ST1 9ZZ (insight_postcode_unknown)",
            "the server's words"
        );
        let newer = Status::Rejected { code: "insight_from_the_future".into(), message: "a newer rule".into() };
        assert_eq!(newer.describe_in(Language::Welsh), "gwrthodwyd: a newer rule (insight_from_the_future)");
        let unsent = Listed {
            id: Uuid::nil(),
            captured_at: String::new(),
            category: "asb".into(),
            text: String::new(),
            status: Status::Stored,
            withdrawn: true,
            unsent_change: true,
        };
        assert_eq!(unsent.describe_in(Language::Welsh), "ar y gweinydd; nid yw'r tynnu'n ôl wedi'i anfon eto");
        assert_eq!(unsent.describe(), "on the server; the withdrawal is not sent yet");
        assert_eq!(
            (Language::parse("CY"), Language::parse("en"), Language::parse("fr")),
            (Some(Language::Welsh), Some(Language::English), None)
        );
    }

    #[tokio::test]
    async fn an_edit_made_while_a_sync_runs_is_kept_and_still_to_send() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let id = store.capture(draft()).await.unwrap();
        // The sync takes its copy, the person edits meanwhile, then the sync saves what it synced.
        let mut taken = store.documents_to_sync(false).await.unwrap().pop().unwrap();
        store.edit(id, &InsightChanges { category: Some("asb".into()), ..Default::default() }).await.unwrap();
        store.save_synced(vec![(taken.doc_id, &mut taken.doc, None)]).await.unwrap();
        assert_eq!(store.insight(id).await.unwrap().category, "asb", "the edit is not overwritten");
        assert_eq!(store.documents_to_sync(false).await.unwrap().len(), 1, "and it is still to be sent");
    }

    /// A store's database file in `dir` with `n_insights`, as a closed store leaves it, and nothing else there: the
    /// store is made in a scratch directory and copied whole with `VACUUM INTO`, so no connection (and no checkpoint
    /// of one closing late, which CI caught writing into a file the test had just truncated) ever touches the copy.
    async fn closed_store_with_insights(dir: &Path, n_insights: usize) -> std::path::PathBuf {
        let scratch = tempfile::tempdir().unwrap();
        let store = Store::open(scratch.path()).await.unwrap();
        for _ in 0..n_insights {
            store.capture(draft()).await.unwrap();
        }
        let path = dir.join(STORE_FILE);
        sqlx::query("VACUUM INTO ?1").bind(path.to_str().unwrap()).execute(&store.pool).await.unwrap();
        store.pool.close().await;
        path
    }

    fn assert_refused_as_damaged(error: &SdkError, reason: &str) {
        assert_eq!(error.code(), Some(ErrorCode::StoreDamaged), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(reason), "{message}");
        assert!(message.contains("restore it from a backup"), "the person is told what to do: {message}");
    }

    #[tokio::test]
    async fn a_store_truncated_to_nothing_is_refused_not_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = closed_store_with_insights(dir.path(), 3).await;
        std::fs::File::create(&path).unwrap(); // truncates to 0 bytes
        let error = Store::open(dir.path()).await.unwrap_err();
        assert_refused_as_damaged(&error, "empty (0 bytes)");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was, for whoever recovers it");
        assert!(Store::open(dir.path()).await.is_err(), "and refused again");
    }

    #[tokio::test]
    async fn a_store_that_is_not_a_database_or_not_a_store_or_cut_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = closed_store_with_insights(dir.path(), 0).await;
        std::fs::write(&path, b"these are not the bytes of an SQLite database, though there are enough of them")
            .unwrap();
        assert_refused_as_damaged(&Store::open(dir.path()).await.unwrap_err(), "not an SQLite database");

        let other = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::from_str("sqlite:").unwrap().filename(other.path().join(STORE_FILE));
        let pool = SqlitePoolOptions::new().connect_with(options.create_if_missing(true)).await.unwrap();
        sqlx::query("CREATE TABLE recipes (name TEXT)").execute(&pool).await.unwrap();
        pool.close().await;
        assert_refused_as_damaged(&Store::open(other.path()).await.unwrap_err(), "not a Grapevine store");

        let cut = tempfile::tempdir().unwrap();
        let path = closed_store_with_insights(cut.path(), 200).await;
        let length = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(length / 2).unwrap();
        assert_refused_as_damaged(&Store::open(cut.path()).await.unwrap_err(), "damaged");
    }

    #[tokio::test]
    async fn a_store_whose_file_is_gone_but_its_log_remains_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.capture(draft()).await.unwrap();
        let path = dir.path().join(STORE_FILE);
        assert!(sibling(&path, "-wal").exists(), "an open store has its log");
        std::fs::remove_file(&path).unwrap();
        assert_refused_as_damaged(&Store::open(dir.path()).await.unwrap_err(), "write-ahead log");
    }

    #[tokio::test]
    async fn a_store_whose_making_was_cut_short_is_made_again_and_the_abandoned_attempt_cleared() {
        let dir = tempfile::tempdir().unwrap();
        // A process died making the store long ago, and another just now: neither left a store file.
        let abandoned = dir.path().join(format!("{STAGING_PREFIX}0123{STAGING_SUFFIX}"));
        let recent = dir.path().join(format!("{STAGING_PREFIX}4567{STAGING_SUFFIX}"));
        for path in [&abandoned, &recent] {
            std::fs::write(path, b"").unwrap();
        }
        let long_ago = std::time::SystemTime::now() - STAGING_ABANDONED_AFTER - Duration::from_secs(60);
        std::fs::File::options().write(true).open(&abandoned).unwrap().set_modified(long_ago).unwrap();

        let store = Store::open(dir.path()).await.unwrap();
        store.capture(draft()).await.unwrap();
        assert!(!abandoned.exists(), "the abandoned attempt is cleared");
        assert!(recent.exists(), "one that may still be in progress is left alone");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn store_files_and_the_directories_made_for_them_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("phone").join("data");
        let store = Store::open(&dir).await.unwrap();
        store.capture(draft()).await.unwrap();
        let path = dir.join(STORE_FILE);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&parent.path().join("phone")), 0o700);
        for file in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "no temporary file is left behind: {names:?}");
        store.pool.close().await;

        // A store made before stores were private is made private when it is opened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&dir).await.unwrap();
        assert_eq!(store.list().await.unwrap().len(), 1, "nothing lost");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&sibling(&path, "-wal")), 0o600);
    }

    #[test]
    fn statuses_describe_themselves() {
        let filed = Status::Filed { area_code: "E05008714".into(), area_name: "Abbey Hulton and Townsend".into() };
        assert_eq!(filed.describe(), "filed under Abbey Hulton and Townsend (E05008714)");
        let rejected = Status::Rejected { code: "insight_area_unknown".into(), message: "no such area".into() };
        assert_eq!(rejection_code(&rejected), Some(ErrorCode::InsightAreaUnknown));
        assert_eq!(rejection_code(&filed), None);
    }
}
