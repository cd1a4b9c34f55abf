//! Building and running the server: state, router, listener, graceful shutdown.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use grapevine_sync_proto::session::DEFAULT_MAX_FRAME_BYTES;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::database_url::DatabaseUrl;
use crate::db_lock::DatabaseLock;
use crate::geo::atlas::{Atlas, SharedAtlas, DEFAULT_SET, RELOAD_EVERY};
use crate::group_commit::GroupCommit;
use crate::ingest::{self, process_actor, DocLocks};
use crate::invitations::{open_secret, InvitationSecret};
use crate::serve_loop::ConnectionLimits;
use crate::store::{self, Store};
use crate::sync::RateLimiter;
use crate::usecase::UseCases;

/// What `serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Printed with its password redacted, so this config's `Debug` never shows it.
    pub database_url: DatabaseUrl,
    pub max_frame_bytes: usize,
    pub limits: SyncLimits,
    pub enrol_limit: EnrolLimit,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a request from one of them is counted against the address
    /// the proxy says it came from. Empty (the default), the header is ignored. They are not held to
    /// `connection_limits.max_per_address`.
    pub trusted_proxies: Vec<IpAddr>,
    /// The file holding the invitation secret; `None`, beside the SQLite database (or `grapevine-data/` for
    /// PostgreSQL). See `invitations::open_secret`.
    pub invitation_secret: Option<std::path::PathBuf>,
    /// The boundary set whose newest generation files insights and is offered to phones to pick from.
    pub filing_set: String,
    /// The header-read timeout and the per-address connection cap (`serve_loop`).
    pub connection_limits: ConnectionLimits,
    /// The web pages: the address people use, sessions and sign-in (docs/web.md).
    pub web: WebConfig,
}

/// How the web pages are reached and signed in to.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// The address people's browsers use (`https://grapevine.example.org`), for links the server prints (a
    /// set-password link) and the identity provider's redirect. `None`: `http://` and the listen address.
    pub public_url: Option<String>,
    /// Browsers reach the server over https through a TLS proxy even though it serves plain http itself: cookies are
    /// `Secure` and `__Host-`, and HSTS is sent. Implied by an `https://` public URL.
    pub behind_tls_proxy: bool,
    pub sessions: crate::usecase::sign_in::SessionPolicy,
    /// Sign-in through an organisation's identity provider; `None`, local accounts only.
    pub oidc: Option<crate::identity::oidc::OidcConfig>,
}

impl WebConfig {
    /// Whether browsers see this server over https.
    #[must_use]
    pub fn https(&self) -> bool {
        self.behind_tls_proxy || self.public_url.as_deref().is_some_and(|url| url.starts_with("https://"))
    }
}

/// How many unknown invitation codes one network address may try (`POST /api/v1/enrol`). A code has 50 random bits;
/// with this limit, guessing one of a hundred live codes from a thousand addresses would take centuries.
#[derive(Debug, Clone, Copy)]
pub struct EnrolLimit {
    /// Unknown codes an address may try at once.
    pub burst: f64,
    /// Unknown codes an address may try per minute after that.
    pub per_minute: f64,
}

impl Default for EnrolLimit {
    fn default() -> Self {
        EnrolLimit { burst: 20.0, per_minute: 20.0 }
    }
}

/// The limits every sync connection lives within (docs/sync-protocol.md).
#[derive(Debug, Clone, Copy)]
pub struct SyncLimits {
    /// A connection with no frame from the device for this long is closed with `idle_timeout`.
    pub idle_timeout: Duration,
    /// The server pings this often, so a healthy but quiet device (or a proxy) keeps the connection alive.
    pub keepalive_interval: Duration,
    /// Sustained sync messages per second per device, across its connections.
    pub messages_per_second: f64,
    /// How many messages a device may send in a burst (a phone's first sync of a backlog).
    pub burst: f64,
    /// A device that does not take a frame within this long is too slow to keep; the connection is dropped rather
    /// than buffered for.
    pub send_timeout: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(30),
            messages_per_second: 500.0,
            burst: 20_000.0,
            send_timeout: Duration::from_secs(30),
        }
    }
}

impl ServeConfig {
    /// The zero-configuration defaults with another address and database.
    #[must_use]
    pub fn new(listen: SocketAddr, database_url: impl Into<DatabaseUrl>) -> Self {
        ServeConfig {
            listen,
            database_url: database_url.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            limits: SyncLimits::default(),
            enrol_limit: EnrolLimit::default(),
            trusted_proxies: Vec::new(),
            invitation_secret: None,
            filing_set: DEFAULT_SET.to_owned(),
            connection_limits: ConnectionLimits::default(),
            web: WebConfig::default(),
        }
    }
}

/// Shared by every request and connection.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The one door: every action of the HTTP API goes through it.
    pub usecases: UseCases,
    /// The store, for the health probes (`/readyz`, `/metrics`) and the atlas reload alone: every action goes through
    /// `usecases`, every document change through `ingest`.
    pub store: Arc<dyn Store>,
    /// Every boundary generation; reloaded when one is imported.
    pub atlas: SharedAtlas,
    pub config: Arc<ServeConfig>,
    /// This node's peer id in the sync protocol.
    pub peer_id: String,
    /// The database's lineage, announced in the handshake (see `docs/sync-protocol.md`).
    pub storage_id: String,
    /// The one loop a stored document changes through (`ingest::Service`): it holds the group-commit writer, the
    /// per-document locks and this process's Automerge actor.
    pub ingest: Arc<ingest::Service>,
    /// Per-device message budgets.
    pub rate_limiter: Arc<RateLimiter>,
    /// Per-address budgets of unknown invitation codes (IPv6 addresses by their /64 network).
    pub enrol_limiter: Arc<RateLimiter<IpAddr>>,
    /// Cancelled when the server begins to shut down; sync connections close on it.
    pub shutdown: CancellationToken,
    /// Tracks sync connections so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// What invitation codes are hashed with (`POST /api/v1/enrol`).
    pub invitation_secret: Arc<InvitationSecret>,
}

/// A server bound to its port, ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// The SQLite database held for this server's life (`None` on PostgreSQL); released when `run_until_stopped`
    /// returns, or when the process dies.
    database_lock: Option<DatabaseLock>,
}

impl Application {
    /// Opens the store (creating and migrating it), loads the boundaries and binds the listener. Bind port 0 to let
    /// the OS choose; `local_addr` tells which.
    ///
    /// # Errors
    /// The database cannot be opened or migrated, or the address cannot be bound.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        // Taken before the store is opened, so a second server never migrates or writes under the first.
        let mut database_lock = DatabaseLock::acquire(&config.database_url, "serve", Some(config.listen))?;
        let store = store::open(&config.database_url).await?;
        let storage_id = store.storage_id().await?;
        let invitation_secret =
            open_secret(config.invitation_secret.as_deref(), &config.database_url, store.as_ref()).await?;
        let atlas = Atlas::load(store.as_ref(), &config.filing_set).await?;
        let actor = process_actor();
        let atlas = SharedAtlas::new(atlas);
        let writer = GroupCommit::start(store.clone());
        let ingest =
            Arc::new(ingest::Service::new(store.clone(), atlas.clone(), writer, Arc::new(DocLocks::default()), actor));
        crate::campaign::publish(&ingest).await?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        if let Some(lock) = database_lock.as_mut() {
            lock.set_listen(listener.local_addr()?)?;
        }
        let rate_limiter = Arc::new(RateLimiter::new(config.limits.messages_per_second, config.limits.burst));
        let enrol_limiter = Arc::new(RateLimiter::new(config.enrol_limit.per_minute / 60.0, config.enrol_limit.burst));
        let state = AppState {
            usecases: UseCases::new(store.clone()).with_sessions(config.web.sessions),
            store,
            atlas,
            config: Arc::new(config),
            peer_id: format!("grapevine-server-{}", uuid::Uuid::new_v4()),
            storage_id,
            ingest,
            rate_limiter,
            enrol_limiter,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            invitation_secret: Arc::new(invitation_secret),
        };
        Ok(Application { listener, state, database_lock })
    }

    /// The address actually bound.
    ///
    /// # Errors
    /// The socket has no local address (it always has once bound).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every sync connection and waits for them.
    ///
    /// # Errors
    /// The listener fails.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.state.clone();
        // Pick up generations imported through another node or the command line.
        let (atlas, store, stopping, ingest) =
            (state.atlas.clone(), state.store.clone(), state.shutdown.clone(), state.ingest.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RELOAD_EVERY);
            loop {
                tokio::select! {
                    () = stopping.cancelled() => break,
                    _ = every.tick() => {
                        match atlas.refresh(store.as_ref()).await {
                            // The campaign's list of areas follows the filing generation.
                            Ok(true) => {
                                if let Err(error) = crate::campaign::publish(&ingest).await {
                                    tracing::warn!(%error, "cannot republish the campaign");
                                }
                            }
                            Ok(false) => {}
                            Err(error) => tracing::warn!(%error, "cannot reload the boundary generations"),
                        }
                    }
                }
            }
        });
        let router = router(self.state);
        let stopping = state.shutdown.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: closing sync connections");
            stopping.cancel();
        });
        let (limits, trusted_proxies) = (state.config.connection_limits.clone(), state.config.trusted_proxies.clone());
        crate::serve_loop::serve(self.listener, router, limits, trusted_proxies, state.shutdown.clone()).await;
        state.tracker.close();
        state.tracker.wait().await;
        drop(self.database_lock);
        tracing::info!("stopped");
        Ok(())
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::readiness::router())
        .merge(crate::metrics::router())
        .merge(crate::sync::router())
        .merge(crate::http::router())
        .merge(crate::web::router(&state.config.web))
        // Every error is `{code, message}`: an unknown path (but a page for a browser asking for a page), a method a
        // route does not take, and (the safety net) anything an extractor or layer answers as plain text.
        .fallback(crate::web::no_such_route)
        .method_not_allowed_fallback(crate::http::error::method_not_allowed)
        .layer(axum::middleware::from_fn(crate::http::error::json_error_bodies))
        .layer(axum::middleware::from_fn(crate::telemetry::observe_request))
        .with_state(state)
}
