//! The phone SDK for Kotlin, Swift and Python, through [UniFFI](https://mozilla.github.io/uniffi-rs).
//!
//! This crate is a thin skin over `grapevine-client-sdk`: every function here converts its arguments, runs the SDK's
//! own function, and converts the answer back. Nothing about insights, storage or sync is decided here.
//!
//! - Every operation is `async` in the foreign language (a Kotlin `suspend fun`, a Swift `async` function, a Python
//!   coroutine). The work runs on this library's own Tokio runtime, so no foreign event loop is ever blocked and the
//!   app needs no Rust runtime of its own.
//! - Errors are one exception type, `GrapevineError`, whose variants carry the stable `code` the server and the SDK
//!   use (`device_revoked`, `insight_text_empty`, …): an app branches on the code, never on the message.
//! - Times cross as RFC 3339 text, keeping the device's UTC offset, as the insight document does.
//!
//! `client-sdk/ffi/README.md` has the commands that generate the bindings and build the native libraries.

use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use grapevine_client_sdk as sdk;
use grapevine_client_sdk::SdkError;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

uniffi::setup_scaffolding!();

/// The runtime every call runs on: two workers are plenty for a phone, and the SDK's own tasks (the sync engine, the
/// store's connection pool) live here between calls.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("grapevine-sdk")
        .enable_all()
        .build()
        .expect("the Grapevine SDK cannot start its runtime")
});

/// Runs an SDK future on the library's runtime and waits for it without blocking the caller's thread.
async fn on_runtime<T: Send + 'static>(
    work: impl Future<Output = Result<T, SdkError>> + Send + 'static,
) -> Result<T, GrapevineError> {
    match RUNTIME.spawn(work).await {
        Ok(answer) => answer.map_err(GrapevineError::from),
        Err(join) => Err(GrapevineError::Internal { message: format!("the SDK's task failed: {join}") }),
    }
}

/// What went wrong. Where there is a stable code it is in `code`; `message` is for a person (or a log).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum GrapevineError {
    /// The draft or the change breaks a rule (its code names which); nothing was stored.
    #[error("{message} ({code})")]
    Invalid { code: String, message: String },
    /// The server refused: `device_revoked`, `unauthorized`, `invitation_expired`, `rate_limited`, … The phone keeps
    /// every unsent insight.
    #[error("{message} ({code})")]
    Refused { code: String, message: String },
    /// The server could not be reached, or stopped answering. Nothing is lost; sync again later.
    #[error("{message}")]
    Offline { message: String },
    /// The server broke the sync protocol or speaks a version this SDK does not.
    #[error("{message} ({code})")]
    Protocol { code: String, message: String },
    /// The phone holds no insight with this id (`insight_not_found`).
    #[error("{message} ({code})")]
    NotFound { code: String, message: String },
    /// The insight was withdrawn and cannot be edited (`insight_withdrawn`).
    #[error("{message} ({code})")]
    Withdrawn { code: String, message: String },
    /// There is no device token: enrol first (`not_enrolled`).
    #[error("{message} ({code})")]
    NotEnrolled { code: String, message: String },
    /// A certificate given to `trust_root_certificates` could not be read, or TLS could not be set up.
    #[error("{message}")]
    Certificate { message: String },
    /// The phone's own store failed (disk full, file unreadable).
    #[error("{message}")]
    Storage { message: String },
    /// A fault in this library; please report it.
    #[error("{message}")]
    Internal { message: String },
    /// The store is there but empty or damaged (`store_damaged`); it was refused and left as it is. Tell the person:
    /// their insights and enrolment are in that file, to restore from a backup.
    #[error("{message} ({code})")]
    StoreDamaged { code: String, message: String },
}

impl From<SdkError> for GrapevineError {
    fn from(error: SdkError) -> Self {
        let message = error.to_string();
        let code = error.code().map(|code| code.as_str().to_owned());
        match error {
            SdkError::Invalid(invalid) => {
                GrapevineError::Invalid { code: invalid.code.as_str().to_owned(), message: invalid.message }
            }
            SdkError::Server { code, message } => GrapevineError::Refused { code, message },
            SdkError::Protocol(_) => GrapevineError::Protocol { code: code.unwrap_or_default(), message },
            SdkError::NotFound(_) => GrapevineError::NotFound { code: code.unwrap_or_default(), message },
            SdkError::Withdrawn(_) => GrapevineError::Withdrawn { code: code.unwrap_or_default(), message },
            SdkError::NotEnrolled => GrapevineError::NotEnrolled { code: code.unwrap_or_default(), message },
            SdkError::Network(_) | SdkError::Timeout(_) => GrapevineError::Offline { message },
            SdkError::Storage(_) => GrapevineError::Storage { message },
            SdkError::Certificate(_) => GrapevineError::Certificate { message },
            SdkError::StoreDamaged { .. } => GrapevineError::StoreDamaged { code: code.unwrap_or_default(), message },
        }
    }
}

/// Who captured the insight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Channel {
    Staff,
    BarberHairdresser,
    Pupil,
    YouthWorker,
    Other,
}

impl From<Channel> for sdk::Channel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Staff => sdk::Channel::Staff,
            Channel::BarberHairdresser => sdk::Channel::BarberHairdresser,
            Channel::Pupil => sdk::Channel::Pupil,
            Channel::YouthWorker => sdk::Channel::YouthWorker,
            Channel::Other => sdk::Channel::Other,
        }
    }
}

/// Where an insight is about.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Location {
    /// A GPS fix in WGS84 degrees, with its accuracy radius in metres.
    Gps { lat: f64, lon: f64, accuracy_m: f64 },
    /// An area picked from the campaign's list, by its code.
    Area { code: String },
    /// A UK postcode, when there is no GPS fix.
    Postcode { postcode: String },
    /// The person gave no location.
    NotGiven,
}

impl From<Location> for sdk::Location {
    fn from(location: Location) -> Self {
        match location {
            Location::Gps { lat, lon, accuracy_m } => sdk::Location::Gps { lat, lon, accuracy_m },
            Location::Area { code } => sdk::Location::Area { code },
            Location::Postcode { postcode } => sdk::Location::Postcode { postcode },
            Location::NotGiven => sdk::Location::None,
        }
    }
}

/// What a person fills in on the capture form.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Draft {
    pub category: String,
    pub text: String,
    /// 1 (very unsafe) to 5 (very safe).
    #[uniffi(default = None)]
    pub feeling_safe: Option<u8>,
    pub location: Location,
    pub channel: Channel,
    /// RFC 3339 with the device's offset; now, when absent.
    #[uniffi(default = None)]
    pub captured_at: Option<String>,
    /// A campaign slug; the bundled campaign, when absent.
    #[uniffi(default = None)]
    pub campaign: Option<String>,
}

/// An edit: only the fields given change.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct Changes {
    #[uniffi(default = None)]
    pub category: Option<String>,
    #[uniffi(default = None)]
    pub text: Option<String>,
    #[uniffi(default = None)]
    pub feeling_safe: Option<u8>,
    /// Removes the feeling-safe score (wins over `feeling_safe`).
    #[uniffi(default = false)]
    pub clear_feeling_safe: bool,
    #[uniffi(default = None)]
    pub location: Option<Location>,
}

impl From<Changes> for sdk::InsightChanges {
    fn from(changes: Changes) -> Self {
        let feeling_safe = if changes.clear_feeling_safe { Some(None) } else { changes.feeling_safe.map(Some) };
        sdk::InsightChanges {
            category: changes.category,
            text: changes.text,
            feeling_safe,
            location: changes.location.map(sdk::Location::from),
        }
    }
}

/// One insight and where it is on its way: `status` is `captured`, `stored`, `filed`, `outside_coverage`, `rejected`
/// or `withdrawn`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct InsightState {
    pub id: String,
    pub captured_at: String,
    pub category: String,
    pub text: String,
    pub status: String,
    /// Where it was filed, once it is `filed`.
    pub area_code: Option<String>,
    pub area_name: Option<String>,
    /// Why the server refused it, once it is `rejected`.
    pub rejection_code: Option<String>,
    pub rejection_message: Option<String>,
    /// Withdrawn on this phone (the server confirms with the status `withdrawn`).
    pub withdrawn: bool,
    /// An edit or withdrawal made here has not reached the server yet.
    pub unsent_change: bool,
    /// A sentence for the person who captured it, in English and Welsh; a rejection says why in words meant for them.
    pub description: Bilingual,
}

impl From<sdk::Listed> for InsightState {
    fn from(listed: sdk::Listed) -> Self {
        let description =
            Bilingual { en: listed.describe_in(sdk::Language::English), cy: listed.describe_in(sdk::Language::Welsh) };
        let (area_code, area_name) = match &listed.status {
            sdk::Status::Filed { area_code, area_name } => (Some(area_code.clone()), Some(area_name.clone())),
            _ => (None, None),
        };
        let (rejection_code, rejection_message) = match &listed.status {
            sdk::Status::Rejected { code, message } => (Some(code.clone()), Some(message.clone())),
            _ => (None, None),
        };
        InsightState {
            id: listed.id.to_string(),
            captured_at: listed.captured_at,
            category: listed.category,
            text: listed.text,
            status: listed.status.as_str().to_owned(),
            area_code,
            area_name,
            rejection_code,
            rejection_message,
            withdrawn: listed.withdrawn,
            unsent_change: listed.unsent_change,
            description,
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SyncSummary {
    /// Insights whose changes went to the server.
    pub sent: u64,
    /// Documents that brought changes back.
    pub received: u64,
    /// Insights whose status moved; read them again with `list`.
    pub updated: u64,
    /// Insights the server would not serve (another collector's, or erased).
    pub unavailable: u64,
    /// The campaign changed and was brought down.
    pub campaign_updated: bool,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub round_trips: u64,
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl From<sdk::SyncReport> for SyncSummary {
    fn from(report: sdk::SyncReport) -> Self {
        SyncSummary {
            sent: count(report.sent),
            received: count(report.received),
            updated: count(report.updated.len()),
            unavailable: count(report.unavailable.len()),
            campaign_updated: report.campaign_updated,
            bytes_sent: count(report.traffic.bytes_sent),
            bytes_received: count(report.traffic.bytes_received),
            round_trips: count(report.traffic.round_trips),
        }
    }
}

/// A text in English and Welsh.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Bilingual {
    pub en: String,
    pub cy: String,
}

impl From<sdk::Text> for Bilingual {
    fn from(text: sdk::Text) -> Self {
        Bilingual { en: text.en, cy: text.cy }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CampaignCategory {
    pub slug: String,
    pub label: Bilingual,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CampaignArea {
    pub code: String,
    pub name: String,
}

/// Everything the capture form needs, offline: the campaign as the last sync brought it (or the bundled one).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Campaign {
    pub slug: String,
    pub name: Bilingual,
    pub prompt_text: Bilingual,
    pub prompt_feeling_safe: Bilingual,
    pub prompt_location: Bilingual,
    pub categories: Vec<CampaignCategory>,
    /// The areas a person may pick instead of a GPS fix.
    pub areas: Vec<CampaignArea>,
    /// The boundary generation the areas come from.
    pub boundaries: String,
}

impl From<sdk::CampaignSheet> for Campaign {
    fn from(sheet: sdk::CampaignSheet) -> Self {
        Campaign {
            slug: sheet.slug,
            name: sheet.name.into(),
            prompt_text: sheet.prompt_text.into(),
            prompt_feeling_safe: sheet.prompt_feeling_safe.into(),
            prompt_location: sheet.prompt_location.into(),
            categories: sheet
                .categories
                .into_iter()
                .map(|category| CampaignCategory { slug: category.slug, label: category.label.into() })
                .collect(),
            areas: sheet.areas.into_iter().map(|area| CampaignArea { code: area.code, name: area.name }).collect(),
            boundaries: sheet.boundaries,
        }
    }
}

/// The server this phone enrolled with. The device token stays inside the store.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Enrolment {
    pub server_url: String,
    pub device_id: String,
    pub collector_id: String,
    pub enrolled_at: String,
}

impl From<sdk::Enrolment> for Enrolment {
    fn from(enrolment: sdk::Enrolment) -> Self {
        Enrolment {
            server_url: enrolment.server_url,
            device_id: enrolment.device_id.to_string(),
            collector_id: enrolment.collector_id.to_string(),
            enrolled_at: enrolment.enrolled_at,
        }
    }
}

/// Trusts the certificate authorities in `pem` (PEM text) for every later `https://` and `wss://` connection, besides
/// the public web's (Mozilla's roots, built in): for a server whose certificate comes from an organisation's own
/// authority. Returns how many were added.
#[uniffi::export]
pub fn trust_root_certificates(pem: String) -> Result<u32, GrapevineError> {
    let added = sdk::trust_root_certificates(pem.as_bytes())?;
    Ok(u32::try_from(added).unwrap_or(u32::MAX))
}

/// Opens (or creates) the store in `dir`, the app's private files directory.
#[uniffi::export]
pub async fn open_store(dir: String) -> Result<Arc<GrapevineStore>, GrapevineError> {
    let store = on_runtime(async move { sdk::Store::open(dir).await }).await?;
    Ok(Arc::new(GrapevineStore { store }))
}

/// The phone's store of insights.
#[derive(Debug, uniffi::Object)]
pub struct GrapevineStore {
    store: sdk::Store,
}

/// An insight id from the app; one that is not even a UUID names no insight on this phone.
fn insight_id(id: &str) -> Result<Uuid, GrapevineError> {
    Uuid::parse_str(id).map_err(|_| GrapevineError::NotFound {
        code: sdk::ErrorCode::InsightNotFound.as_str().to_owned(),
        message: format!("no insight {id:?} on this phone"),
    })
}

#[uniffi::export]
impl GrapevineStore {
    /// This phone's peer id in the sync protocol.
    pub fn peer_id(&self) -> String {
        self.store.peer_id().to_owned()
    }

    /// Captures an insight: when this returns, it is on disk and survives the app being killed. Returns its id.
    pub async fn capture(&self, draft: Draft) -> Result<String, GrapevineError> {
        let captured_at = match draft.captured_at {
            None => None,
            Some(text) => Some(OffsetDateTime::parse(&text, &Rfc3339).map_err(|error| GrapevineError::Invalid {
                code: sdk::ErrorCode::InsightCapturedAtInvalid.as_str().to_owned(),
                message: format!("captured_at is not an RFC 3339 time: {error}"),
            })?),
        };
        let draft = sdk::Draft {
            category: draft.category,
            text: draft.text,
            feeling_safe: draft.feeling_safe,
            location: draft.location.into(),
            channel: draft.channel.into(),
            captured_at,
            campaign: draft.campaign,
        };
        let store = self.store.clone();
        let id = on_runtime(async move { store.capture(draft).await }).await?;
        Ok(id.to_string())
    }

    /// Every insight on this phone, newest first, with its status.
    pub async fn list(&self) -> Result<Vec<InsightState>, GrapevineError> {
        let store = self.store.clone();
        let listed = on_runtime(async move { store.list().await }).await?;
        Ok(listed.into_iter().map(InsightState::from).collect())
    }

    /// One insight and its status.
    pub async fn status(&self, id: String) -> Result<InsightState, GrapevineError> {
        let id = insight_id(&id)?;
        let store = self.store.clone();
        Ok(on_runtime(async move { store.get(id).await }).await?.into())
    }

    /// Changes an insight; the change syncs and the server files and counts it again.
    pub async fn edit(&self, id: String, changes: Changes) -> Result<InsightState, GrapevineError> {
        let id = insight_id(&id)?;
        let changes = sdk::InsightChanges::from(changes);
        let store = self.store.clone();
        Ok(on_runtime(async move { store.edit(id, &changes).await }).await?.into())
    }

    /// Withdraws an insight: once synced, it stops counting.
    pub async fn withdraw(&self, id: String) -> Result<InsightState, GrapevineError> {
        let id = insight_id(&id)?;
        let store = self.store.clone();
        Ok(on_runtime(async move { store.withdraw(id).await }).await?.into())
    }

    /// The campaign to render the capture form from, offline.
    pub async fn campaign(&self) -> Result<Campaign, GrapevineError> {
        let store = self.store.clone();
        Ok(on_runtime(async move { store.campaign().await }).await?.into())
    }

    /// The server this phone enrolled with, if it has.
    pub async fn enrolment(&self) -> Result<Option<Enrolment>, GrapevineError> {
        let store = self.store.clone();
        Ok(on_runtime(async move { store.enrolment().await }).await?.map(Enrolment::from))
    }

    /// Redeems an invitation code at `server_url` (e.g. `https://grapevine.example.org`) for this device's own
    /// token, kept in the store. `label` names the device in the admin's device list.
    pub async fn enrol(&self, server_url: String, code: String, label: String) -> Result<Enrolment, GrapevineError> {
        let store = self.store.clone();
        Ok(on_runtime(async move { sdk::enrol(&store, &server_url, &code, &label).await }).await?.into())
    }

    /// Syncs once with the server this phone enrolled with.
    pub async fn sync(&self) -> Result<SyncSummary, GrapevineError> {
        let store = self.store.clone();
        Ok(on_runtime(async move { sdk::sync_enrolled(&store).await }).await?.into())
    }
}

/// Why a sync started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncTrigger {
    Demand,
    Schedule,
    NetworkUp,
    Retry,
}

impl From<sdk::Trigger> for SyncTrigger {
    fn from(trigger: sdk::Trigger) -> Self {
        match trigger {
            sdk::Trigger::Demand => SyncTrigger::Demand,
            sdk::Trigger::Schedule => SyncTrigger::Schedule,
            sdk::Trigger::NetworkUp => SyncTrigger::NetworkUp,
            sdk::Trigger::Retry => SyncTrigger::Retry,
        }
    }
}

/// What the sync engine tells the app.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum SyncEvent {
    Started {
        trigger: SyncTrigger,
    },
    /// `done` of `total` documents exchanged so far.
    Progress {
        done: u64,
        total: u64,
    },
    Finished {
        sent: u64,
        received: u64,
        updated: u64,
    },
    /// The sync failed. It is retried after `retry_in_ms`, or not at all (absent) when retrying cannot help, such as
    /// `device_revoked`: tell the person.
    Failed {
        code: Option<String>,
        message: String,
        retry_in_ms: Option<u64>,
    },
    Stopped,
}

impl From<sdk::EngineEvent> for SyncEvent {
    fn from(event: sdk::EngineEvent) -> Self {
        match event {
            sdk::EngineEvent::Started { trigger } => SyncEvent::Started { trigger: trigger.into() },
            sdk::EngineEvent::Progress { done, total } => {
                SyncEvent::Progress { done: count(done), total: count(total) }
            }
            sdk::EngineEvent::Finished { sent, received, updated } => {
                SyncEvent::Finished { sent: count(sent), received: count(received), updated: count(updated) }
            }
            sdk::EngineEvent::Failed { code, message, retry_in } => SyncEvent::Failed {
                code: code.map(|code| code.as_str().to_owned()),
                message,
                retry_in_ms: retry_in.map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            },
            sdk::EngineEvent::Stopped => SyncEvent::Stopped,
        }
    }
}

/// Implemented by the app to hear the sync engine. Called on one of the SDK's threads, one event at a time, in order:
/// hop to the UI thread before touching views.
#[uniffi::export(with_foreign)]
pub trait SyncListener: Send + Sync {
    fn on_event(&self, event: SyncEvent);
}

/// Starts background sync with the server this phone enrolled with: on demand, every `every_seconds` (none: on
/// demand only), and when told the network came back; backing off with jitter after a failure.
#[uniffi::export]
pub async fn start_sync_engine(
    store: Arc<GrapevineStore>,
    listener: Arc<dyn SyncListener>,
    every_seconds: Option<u64>,
) -> Result<Arc<BackgroundSync>, GrapevineError> {
    let store = store.store.clone();
    let engine = on_runtime(async move {
        let mut config = sdk::EngineConfig::enrolled(&store).await?;
        config.every = every_seconds.map(Duration::from_secs);
        let engine = sdk::SyncEngine::start(store, config);
        let mut events = engine.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        let stopped = event == sdk::EngineEvent::Stopped;
                        listener.on_event(event.into());
                        if stopped {
                            break;
                        }
                    }
                    // A listener that falls 256 events behind misses the oldest; progress events are the bulk.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(engine)
    })
    .await?;
    Ok(Arc::new(BackgroundSync { engine: Mutex::new(Some(engine)) }))
}

/// A running sync engine. Never two syncs at once: a request during a sync folds into one more afterwards.
#[derive(uniffi::Object)]
pub struct BackgroundSync {
    engine: Mutex<Option<sdk::SyncEngine>>,
}

impl std::fmt::Debug for BackgroundSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundSync").finish_non_exhaustive()
    }
}

#[uniffi::export]
impl BackgroundSync {
    /// Syncs as soon as the engine is free.
    pub fn sync_now(&self) {
        if let Some(engine) = self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            engine.sync_now();
        }
    }

    /// The app saw the network come back: syncs now, skipping any backoff wait.
    pub fn network_up(&self) {
        if let Some(engine) = self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            engine.network_up();
        }
    }

    /// Stops the engine, cancelling a sync in progress (nothing is lost: the next sync resumes it). Idempotent.
    pub async fn stop(&self) {
        let engine = self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(engine) = engine {
            let _ = on_runtime(async move {
                engine.stop().await;
                Ok(())
            })
            .await;
        }
    }
}
