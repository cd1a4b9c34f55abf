//! The server's Prometheus metrics (`GET /metrics`, the text exposition format), through `prometheus-client`.
//!
//! The metrics are process-wide (one registry in a static), so any module records with a one-line call
//! (`metrics::sync_message(SyncOutcome::Stored)`) and nothing has to carry a handle. docs/operations.md lists them
//! with example alerts. Labels take only values from fixed sets (a matched route, never a raw path; an outcome name),
//! so a client cannot make the server grow a series per request.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::ws::Message as WsMessage;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::app::AppState;
use crate::store::Outcome;

/// Every metric, registered once.
struct Metrics {
    registry: Registry,
    tcp_connections_open: Gauge,
    tcp_connections: Counter,
    tcp_connections_refused: Family<ReasonLabel, Counter>,
    sync_connections_open: Gauge,
    sync_connections: Counter,
    frames: Family<DirectionLabel, Counter>,
    frame_bytes: Family<DirectionLabel, Counter>,
    sync_messages: Family<OutcomeLabel, Counter>,
    insights: Family<DecisionLabel, Counter>,
    group_commit_batch_size: Histogram,
    group_commit_seconds: Histogram,
    http_requests: Family<HttpLabels, Counter>,
    http_request_seconds: Family<RouteLabel, Histogram>,
    database_pool_connections: Family<PoolStateLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabel {
    state: &'static str,
}

/// Latency buckets from 1 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("grapevine");
    let metrics = Metrics {
        tcp_connections_open: Gauge::default(),
        tcp_connections: Counter::default(),
        tcp_connections_refused: Family::default(),
        sync_connections_open: Gauge::default(),
        sync_connections: Counter::default(),
        frames: Family::default(),
        frame_bytes: Family::default(),
        sync_messages: Family::default(),
        insights: Family::default(),
        // 1, 2, 4 … 256 (`group_commit::MAX_BATCH`).
        group_commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
        group_commit_seconds: latency_histogram(),
        http_requests: Family::default(),
        http_request_seconds: Family::new_with_constructor(latency_histogram),
        database_pool_connections: Family::default(),
        registry: Registry::default(),
    };
    registry.register("tcp_connections_open", "TCP connections open now", metrics.tcp_connections_open.clone());
    registry.register("tcp_connections", "TCP connections accepted", metrics.tcp_connections.clone());
    registry.register(
        "tcp_connections_refused",
        "TCP connections closed at once, by reason (per_address_cap)",
        metrics.tcp_connections_refused.clone(),
    );
    registry.register(
        "sync_connections_open",
        "/sync WebSocket connections open now",
        metrics.sync_connections_open.clone(),
    );
    registry.register("sync_connections", "/sync WebSocket connections opened", metrics.sync_connections.clone());
    registry.register("websocket_frames", "WebSocket data frames, by direction (in, out)", metrics.frames.clone());
    registry.register(
        "websocket_frame_bytes",
        "Bytes in WebSocket data frames as sent on the wire, by direction (in, out)",
        metrics.frame_bytes.clone(),
    );
    registry.register(
        "sync_messages",
        "Document sync messages handled, by outcome (stored, unchanged, refused, unavailable, failed)",
        metrics.sync_messages.clone(),
    );
    registry.register(
        "insights_decided",
        "Insight decisions committed, by decision (filed, outside_coverage, rejected, withdrawn)",
        metrics.insights.clone(),
    );
    registry.register(
        "group_commit_batch_size",
        "Document writes per group-commit transaction",
        metrics.group_commit_batch_size.clone(),
    );
    registry.register(
        "group_commit_seconds",
        "Time to commit one group-commit batch, in seconds",
        metrics.group_commit_seconds.clone(),
    );
    registry.register(
        "http_requests",
        "HTTP requests answered, by method, matched route and status",
        metrics.http_requests.clone(),
    );
    registry.register(
        "http_request_duration_seconds",
        "Time to answer an HTTP request (to the upgrade, for /sync), by matched route, in seconds",
        metrics.http_request_seconds.clone(),
    );
    registry.register(
        "database_pool_connections",
        "Database pool connections at the last scrape, by state (in_use, idle, max)",
        metrics.database_pool_connections.clone(),
    );
    Metrics { registry, ..metrics }
});

/// Which way a WebSocket frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// What came of one document sync message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The document changed and the change was committed.
    Stored,
    /// Nothing to store (the device was in step, or asked only).
    Unchanged,
    /// The changes were refused (a protocol or validation error) and nothing was stored.
    Refused,
    /// Answered `doc-unavailable`.
    Unavailable,
    /// An internal error closed the connection.
    Failed,
}

/// A TCP connection accepted; the returned guard counts it open until dropped.
#[must_use]
pub fn tcp_connection_opened() -> OpenGuard {
    METRICS.tcp_connections.inc();
    METRICS.tcp_connections_open.inc();
    OpenGuard(&METRICS.tcp_connections_open)
}

/// A TCP connection closed at once, for `reason`.
pub fn tcp_connection_refused(reason: &'static str) {
    METRICS.tcp_connections_refused.get_or_create(&ReasonLabel { reason }).inc();
}

/// A `/sync` connection, counted (and counted open until it ends).
pub async fn sync_connection(connection: impl Future<Output = ()>) {
    METRICS.sync_connections.inc();
    METRICS.sync_connections_open.inc();
    let _open = OpenGuard(&METRICS.sync_connections_open);
    connection.await;
}

/// Counts a connection as open while it lives.
#[derive(Debug)]
pub struct OpenGuard(&'static Gauge<i64, std::sync::atomic::AtomicI64>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A frame read from a WebSocket (only data frames count).
pub fn websocket_frame_received(frame: Option<&Result<WsMessage, axum::Error>>) {
    if let Some(Ok(message)) = frame {
        websocket_message(Direction::In, message);
    }
}

/// A frame about to be sent on a WebSocket (only data frames count).
pub fn websocket_frame_sent(message: &WsMessage) {
    websocket_message(Direction::Out, message);
}

fn websocket_message(direction: Direction, message: &WsMessage) {
    match message {
        WsMessage::Binary(bytes) => websocket_frame(direction, bytes.len()),
        WsMessage::Text(text) => websocket_frame(direction, text.len()),
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) => {}
    }
}

/// A WebSocket data frame of `n_bytes` went `direction`.
fn websocket_frame(direction: Direction, n_bytes: usize) {
    let direction = DirectionLabel {
        direction: match direction {
            Direction::In => "in",
            Direction::Out => "out",
        },
    };
    METRICS.frames.get_or_create(&direction).inc();
    METRICS.frame_bytes.get_or_create(&direction).inc_by(u64::try_from(n_bytes).unwrap_or(u64::MAX));
}

/// One document sync message handled.
pub fn sync_message(outcome: SyncOutcome) {
    let outcome = match outcome {
        SyncOutcome::Stored => "stored",
        SyncOutcome::Unchanged => "unchanged",
        SyncOutcome::Refused => "refused",
        SyncOutcome::Unavailable => "unavailable",
        SyncOutcome::Failed => "failed",
    };
    METRICS.sync_messages.get_or_create(&OutcomeLabel { outcome }).inc();
}

/// An insight's decision committed.
pub fn insight_decided(outcome: &Outcome) {
    METRICS.insights.get_or_create(&DecisionLabel { decision: outcome.status() }).inc();
}

/// One group-commit transaction of `n_writes`, committed (or failed) in `took`.
pub fn group_commit(n_writes: usize, took: Duration) {
    #[allow(clippy::cast_precision_loss)]
    METRICS.group_commit_batch_size.observe(n_writes as f64);
    METRICS.group_commit_seconds.observe(took.as_secs_f64());
}

/// One HTTP request answered.
pub fn http_request_answered(method: &str, route: &str, status: u16, took: Duration) {
    let labels = HttpLabels { method: method.to_owned(), route: route.to_owned(), status };
    METRICS.http_requests.get_or_create(&labels).inc();
    METRICS.http_request_seconds.get_or_create(&RouteLabel { route: route.to_owned() }).observe(took.as_secs_f64());
}

/// The store's pool, read at each scrape.
fn record_pool(state: &AppState) {
    let pool = state.store.pool_usage();
    let set = |name, value: u32| {
        METRICS.database_pool_connections.get_or_create(&PoolStateLabel { state: name }).set(i64::from(value));
    };
    set("in_use", pool.in_use);
    set("idle", pool.idle);
    set("max", pool.max);
}

/// Every metric in the Prometheus text format.
#[must_use]
pub fn render() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    text
}

/// `GET /metrics`.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<AppState>) -> Response {
    record_pool(&state);
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], render()).into_response()
}
