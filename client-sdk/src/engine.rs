//! The background sync engine an app starts and stops (issue #4): it syncs on demand, on a schedule and when the app
//! says the network came back; backs off exponentially, with jitter, after a failure; reports progress; can be
//! stopped mid-sync; and never runs two syncs at once (triggers that arrive during a sync are folded into one more).
//!
//! ```no_run
//! # async fn example(store: grapevine_client_sdk::Store) {
//! use grapevine_client_sdk::engine::{EngineConfig, EngineEvent, SyncEngine};
//! let config = EngineConfig::new("wss://grapevine.example.org/sync", "gvd_…");
//! let engine = SyncEngine::start(store, config);
//! let mut events = engine.subscribe();
//! engine.sync_now();
//! while let Ok(event) = events.recv().await {
//!     if let EngineEvent::Progress { done, total } = event {
//!         println!("{done} of {total}");
//!     }
//! }
//! # }
//! ```

use std::time::Duration;

use grapevine_sync_proto::ErrorCode;
use rand::Rng;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::SdkError;
use crate::store::Store;
use crate::sync::sync_with_progress;

/// Where and how often to sync.
#[derive(Clone)]
pub struct EngineConfig {
    pub sync_url: String,
    token: String,
    /// Sync this often, besides on demand; `None` for on demand only.
    pub every: Option<Duration>,
    /// The first wait after a failure; it doubles with each failure in a row, up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("sync_url", &self.sync_url)
            .field("token", &"…")
            .field("every", &self.every)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

impl EngineConfig {
    /// Syncs with `sync_url` as the device holding `token`: on demand, every 15 minutes, backing off from 2 seconds
    /// to 5 minutes.
    #[must_use]
    pub fn new(sync_url: impl Into<String>, token: impl Into<String>) -> Self {
        EngineConfig {
            sync_url: sync_url.into(),
            token: token.into(),
            every: Some(Duration::from_secs(15 * 60)),
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(5 * 60),
        }
    }

    /// The server and token the phone enrolled with.
    ///
    /// # Errors
    /// The phone is not enrolled (`not_enrolled`), or its store fails.
    pub async fn enrolled(store: &Store) -> Result<Self, SdkError> {
        let enrolment = store.enrolment().await?.ok_or(SdkError::NotEnrolled)?;
        Ok(EngineConfig::new(enrolment.sync_url(), enrolment.token()))
    }
}

/// Why a sync started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Demand,
    Schedule,
    NetworkUp,
    Retry,
}

/// What the engine tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Started {
        trigger: Trigger,
    },
    /// `done` of `total` documents exchanged in the current sync.
    Progress {
        done: usize,
        total: usize,
    },
    Finished {
        sent: usize,
        received: usize,
        updated: usize,
    },
    /// The sync failed; it is retried after `retry_in`, or not at all (`None`) when retrying cannot help (the device
    /// was revoked, or its token is unknown): the app should tell the person.
    Failed {
        code: Option<ErrorCode>,
        message: String,
        retry_in: Option<Duration>,
    },
    Stopped,
}

enum Command {
    SyncNow,
    NetworkUp,
    Stop,
}

/// A running engine; dropping it stops it.
pub struct SyncEngine {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<EngineEvent>,
    task: Option<JoinHandle<()>>,
}

impl SyncEngine {
    /// Starts the engine. It syncs first when told to, or when its schedule comes round.
    #[must_use]
    pub fn start(store: Store, config: EngineConfig) -> SyncEngine {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(256);
        let task = tokio::spawn(run(store, config, receiver, events.clone()));
        SyncEngine { commands, events, task: Some(task) }
    }

    /// Follows what the engine does.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// Syncs as soon as possible (after the current sync, if one is running).
    pub fn sync_now(&self) {
        let _ = self.commands.send(Command::SyncNow);
    }

    /// The app saw the network come back: sync now, without waiting out a backoff.
    pub fn network_up(&self) {
        let _ = self.commands.send(Command::NetworkUp);
    }

    /// Stops the engine, abandoning a sync in progress (nothing is lost: what it had not finished is offered again
    /// at the next start), and waits until it has stopped.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SyncEngine {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// Failures retrying cannot mend.
fn is_permanent(error: &SdkError) -> bool {
    matches!(error.code(), Some(ErrorCode::DeviceRevoked | ErrorCode::Unauthorized | ErrorCode::Forbidden))
}

/// The wait before the next attempt after `failures` failures in a row: doubling from `initial`, capped at `max`,
/// then spread by ±50 % so a fleet that lost the network together does not come back together.
fn backoff(config: &EngineConfig, failures: u32) -> Duration {
    let doubled = config.backoff_initial.saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1)));
    doubled.min(config.backoff_max).mul_f64(rand::rng().random_range(0.5..1.5))
}

async fn run(
    store: Store,
    config: EngineConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<EngineEvent>,
) {
    let emit = |event: EngineEvent| {
        let _ = events.send(event);
    };
    let mut next_scheduled = config.every.map(|every| Instant::now() + every);
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0_u32;
    let mut pending: Option<Trigger> = None;
    loop {
        let trigger = match pending.take() {
            Some(trigger) => trigger,
            None => {
                let deadline = match (retry_at, next_scheduled) {
                    (Some(retry), Some(scheduled)) => Some(retry.min(scheduled)),
                    (retry, scheduled) => retry.or(scheduled),
                };
                let wait = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(Command::SyncNow) => Trigger::Demand,
                        Some(Command::NetworkUp) => Trigger::NetworkUp,
                        Some(Command::Stop) | None => break,
                    },
                    () = wait => if retry_at.is_some_and(|retry| retry <= Instant::now()) { Trigger::Retry } else { Trigger::Schedule },
                }
            }
        };
        emit(EngineEvent::Started { trigger });
        let progress = |done, total| {
            let _ = events.send(EngineEvent::Progress { done, total });
        };
        let sync = sync_with_progress(&store, &config.sync_url, &config.token, progress);
        tokio::pin!(sync);
        // While it runs, more triggers fold into one follow-up sync; a stop abandons it.
        let outcome = loop {
            tokio::select! {
                outcome = &mut sync => break Some(outcome),
                command = commands.recv() => match command {
                    Some(Command::SyncNow) => pending = Some(Trigger::Demand),
                    Some(Command::NetworkUp) => pending = Some(Trigger::NetworkUp),
                    Some(Command::Stop) | None => break None,
                },
            }
        };
        let Some(outcome) = outcome else { break };
        next_scheduled = config.every.map(|every| Instant::now() + every);
        match outcome {
            Ok(report) => {
                failures = 0;
                retry_at = None;
                emit(EngineEvent::Finished {
                    sent: report.sent,
                    received: report.received,
                    updated: report.updated.len(),
                });
            }
            Err(error) => {
                let retry_in = (!is_permanent(&error)).then(|| {
                    failures += 1;
                    backoff(&config, failures)
                });
                retry_at = retry_in.map(|wait| Instant::now() + wait);
                // A trigger that arrived meanwhile (the network is back, asked again) still runs straight away.
                emit(EngineEvent::Failed { code: error.code(), message: error.to_string(), retry_in });
            }
        }
    }
    emit(EngineEvent::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut config = EngineConfig::new("ws://nowhere", "t");
        config.backoff_initial = Duration::from_secs(2);
        config.backoff_max = Duration::from_secs(60);
        for (failures, base) in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 60.0), (30, 60.0)] {
            for _ in 0..20 {
                let wait = backoff(&config, failures).as_secs_f64();
                assert!((base * 0.5..=base * 1.5).contains(&wait), "{failures} failures: {wait} s");
            }
        }
        let secret = EngineConfig::new("ws://nowhere", "gvd_secret");
        assert!(!format!("{secret:?}").contains("gvd_secret"), "the token stays out of Debug");
    }
}
