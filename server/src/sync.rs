//! `/sync`: the WebSocket endpoint devices sync through. This is the driver around `grapevine_sync_proto::session`:
//! it authenticates the upgrade, feeds frames to the session, hands each document message to the ingest service
//! (`ingest::Service`: load → authorise → apply → decide → save, committed) and replies, so that a device only ever
//! hears back about what is durable. What stays here is the transport: frames, the session and its sync states, rate
//! limits, the change feed and timeouts.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use anyhow::Context;
use axum::extract::ws::{close_code, CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use grapevine_sync_proto::automerge::sync::Message as SyncMessage;
use grapevine_sync_proto::automerge::{ActorId, AutoCommit};
use grapevine_sync_proto::guard::{Budget, DocumentLimits};
use grapevine_sync_proto::session::{Event, ProtocolError, Session, Side, SyncKind};
use grapevine_sync_proto::{DocumentId, ErrorCode};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::bearer_token;
use crate::http::error::ApiError;
use crate::ingest::{self, Access, Author, Change, Changed, Settled};
use crate::store::{DocumentChanged, StoredDocument};
use crate::usecase::sync::DeviceSession;

pub fn router() -> Router<AppState> {
    Router::new().route("/sync", get(upgrade))
}

/// The device a connection belongs to, decided by its token alone, and what it may reach.
#[derive(Debug, Clone)]
struct Device(DeviceSession);

impl FromRequestParts<AppState> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(ApiError::unauthorized)?;
        let context = crate::http::request_context(parts, &state.config.trusted_proxies);
        let principal = state.usecases.authenticate(&token, context).await?;
        Ok(Device(state.usecases.sync_session(&principal).await?))
    }
}

async fn upgrade(State(state): State<AppState>, Device(device): Device, ws: WebSocketUpgrade) -> Response {
    // The transport's own cap is well above the protocol's, so an oversized frame still gets a coded `error`.
    let hard_cap = state.config.max_frame_bytes.saturating_mul(4);
    let tracker = state.tracker.clone();
    let request_span = tracing::Span::current(); // So the connection's log lines carry the upgrade's request id.
    ws.max_message_size(hard_cap).max_frame_size(hard_cap).on_upgrade(move |socket| {
        let span = tracing::info_span!(parent: &request_span, "sync", device = %device.device_id);
        tracker.track_future(crate::metrics::sync_connection(serve_connection(socket, state, device)).instrument(span))
    })
}

/// What woke a connection up.
enum Wake {
    Frame(Option<Result<WsMessage, axum::Error>>),
    Changed(DocumentChanged),
    Keepalive,
    Idle,
    Stop,
}

/// The most documents announced for catch-up in one handshake; the rest come at the next connection.
pub const MAX_CATCH_UP: i64 = 5_000;

/// One device's connection: its protocol session and what it must persist.
struct Connection {
    device: DeviceSession,
    /// The device as the author of its changes (`ingest::Service::apply`).
    author: Author,
    session: Session,
    /// The sync state last persisted per document, so unchanged states are not written again.
    persisted: HashMap<DocumentId, Vec<u8>>,
    /// States changed since the last flush. Sync states only save round trips, so they are written in batches (and
    /// at the end of the connection) rather than at the cost of a commit per message.
    dirty: HashMap<DocumentId, Vec<u8>>,
}

/// Flush sync states once this many are waiting.
const SYNC_STATE_BATCH: usize = 256;

impl Connection {
    /// Loads the persisted sync state for a document the session has not touched yet on this connection.
    async fn resume(&mut self, doc_id: DocumentId) -> anyhow::Result<()> {
        resume(&self.device, &mut self.session, &mut self.persisted, doc_id).await
    }

    /// Queues the document's sync state to be persisted, if it changed. Only stored documents keep a state.
    async fn persist(&mut self, doc_id: DocumentId) -> anyhow::Result<()> {
        if let Some(current) = self.session.sync_state(doc_id) {
            if self.persisted.get(&doc_id) != Some(&current) {
                self.dirty.insert(doc_id, current);
            }
        }
        if self.dirty.len() >= SYNC_STATE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the queued sync states in one transaction.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let states: Vec<(DocumentId, Vec<u8>)> = self.dirty.drain().collect();
        self.device.save_sync_states(&states).await?;
        self.persisted.extend(states);
        Ok(())
    }

    /// Answers a join: the `peer` frame, announcing what the collector's other devices wrote since the phone last
    /// caught up (Grapevine's SDK says how far that is; other peers get live changes only).
    async fn accept(&mut self, seen: Option<i64>, campaign: Option<&str>) -> (Vec<u8>, Vec<DocumentId>) {
        let catch_up = match seen {
            None => Vec::new(),
            Some(seen) => self.device.catch_up(seen, MAX_CATCH_UP).await.unwrap_or_else(|error| {
                tracing::warn!(error = format!("{error:#}"), "no catch-up list; the phone catches up next time");
                Vec::new()
            }),
        };
        let catch_up_to = catch_up.iter().map(|(_, seq)| *seq).max().or(seen);
        let mut doc_ids: Vec<DocumentId> = catch_up.into_iter().map(|(doc_id, _)| doc_id).collect();
        // The campaign too, when the phone's copy (its fingerprint) is not the published one.
        if let Some(held) = campaign {
            match self.device.stale_campaign(held).await {
                Ok(Some(doc_id)) => doc_ids.push(doc_id),
                Ok(None) => {}
                Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot read the campaign document"),
            }
        }
        (self.session.accept(&doc_ids, catch_up_to), doc_ids)
    }
}

async fn serve_connection(mut socket: WebSocket, state: AppState, device: DeviceSession) {
    let session = Session::new(Side::Server, state.peer_id.clone())
        .with_compression()
        .with_storage_id(state.storage_id.clone())
        .with_max_frame_bytes(state.config.max_frame_bytes);
    let mut connection = Connection {
        author: Author::device(device.device_id, device.collector_id),
        device,
        session,
        persisted: HashMap::new(),
        dirty: HashMap::new(),
    };
    run_connection(&mut socket, &state, &mut connection).await;
    if let Err(error) = connection.flush().await {
        tracing::warn!(error = format!("{error:#}"), "sync states not saved; the next sync costs a round trip more");
    }
}

/// The connection's loop; returns when the connection is over, whatever the reason.
async fn run_connection(socket: &mut WebSocket, state: &AppState, connection: &mut Connection) {
    let device = connection.device.clone();
    let mut changes = device.changes();
    let limits = state.config.limits;
    let mut keepalive = tokio::time::interval_at(Instant::now() + limits.keepalive_interval, limits.keepalive_interval);
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    loop {
        let wake = tokio::select! {
            inbound = socket.recv() => Wake::Frame(inbound),
            _ = keepalive.tick() => Wake::Keepalive,
            () = &mut idle => Wake::Idle,
            change = changes.recv() => match change {
                Ok(change) => Wake::Changed(change),
                // Missed changes reach the device at its next connection (catch-up); a closed feed means the store
                // is going away.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => Wake::Stop,
            },
            () = state.shutdown.cancelled() => Wake::Stop,
        };
        let inbound = match wake {
            Wake::Frame(inbound) => {
                crate::metrics::websocket_frame_received(inbound.as_ref());
                // Anything from the device, a pong included, shows it is alive.
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                inbound
            }
            Wake::Keepalive => {
                // A device revoked while connected (by `grapevine device revoke`, from any process) is told and
                // closed within one keep-alive interval; a failed check keeps the connection, as the handshake did.
                if let Ok(true) = device.revoked().await {
                    tracing::info!(device_id = %device.device_id, "closing the connection of a revoked device");
                    let message = "this device was revoked; its insights stay on the phone";
                    close_with(socket, &mut connection.session, ErrorCode::DeviceRevoked, message).await;
                    return;
                }
                if !send_within(socket, WsMessage::Ping(Vec::new().into()), limits.send_timeout).await {
                    return;
                }
                continue;
            }
            Wake::Idle => {
                let message = format!("nothing from the device for {:?}", limits.idle_timeout);
                close_with(socket, &mut connection.session, ErrorCode::IdleTimeout, &message).await;
                return;
            }
            Wake::Changed(change) => {
                // Another device of this collector, on any node, saved a document: offer it to this device.
                if change.collector_id != device.collector_id || change.writer == connection.author.writer {
                    continue;
                }
                if !offer(state, connection, socket, change.doc_id).await {
                    return;
                }
                continue;
            }
            Wake::Stop => {
                // Every reply already sent was committed first; nothing is in flight here.
                close(socket).await;
                return;
            }
        };
        let frame = match inbound {
            Some(Ok(WsMessage::Binary(frame))) => frame,
            Some(Ok(WsMessage::Text(_))) => {
                let session = &mut connection.session;
                close_with(socket, session, ErrorCode::ProtocolViolation, "frames must be binary CBOR").await;
                return;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(WsMessage::Close(_))) | None => return,
            Some(Err(error)) => {
                tracing::debug!(%error, "connection dropped");
                return;
            }
        };
        if !state.rate_limiter.allow(device.device_id) {
            let message = format!(
                "more than {} messages in a burst, or {} a second sustained; slow down and reconnect",
                limits.burst, limits.messages_per_second
            );
            close_with(socket, &mut connection.session, ErrorCode::RateLimited, &message).await;
            return;
        }
        let replies = match connection.session.receive(&frame) {
            Err(error) => {
                log_closing_on(&error);
                close_with(socket, &mut connection.session, error.code, &error.message).await;
                return;
            }
            Ok(Event::Joined { peer_id, seen, campaign }) => {
                let (reply, announced) = connection.accept(seen, campaign.as_deref()).await;
                tracing::debug!(peer_id = %Escaped(&peer_id), n_catch_up = announced.len(), "joined");
                if !send_within(socket, WsMessage::Binary(reply.into()), limits.send_timeout).await {
                    return;
                }
                // The phone asks for published documents itself; the collector's own are offered.
                for doc_id in announced.into_iter().filter(|doc_id| !crate::campaign::is_published(*doc_id)) {
                    if !offer(state, connection, socket, doc_id).await {
                        return;
                    }
                }
                Vec::new()
            }
            Ok(Event::Sync { doc_id, kind, message }) => {
                match handle_sync(state, connection, doc_id, kind, message).await {
                    Ok(Answer::Frames(replies)) => replies,
                    Ok(Answer::Refuse(error)) => {
                        log_closing_on(&error);
                        close_with(socket, &mut connection.session, error.code, &error.message).await;
                        return;
                    }
                    Err(error) => {
                        tracing::error!(%doc_id, error = format!("{error:#}"), "sync failed");
                        crate::metrics::sync_message(crate::metrics::SyncOutcome::Failed);
                        close_with(socket, &mut connection.session, ErrorCode::Internal, "internal error").await;
                        return;
                    }
                }
            }
            Ok(Event::DocUnavailable { doc_id }) => {
                connection.session.forget(doc_id);
                Vec::new()
            }
            Ok(Event::RemoteError { code, message }) => {
                tracing::info!(?code, message = %Escaped(&message), "peer reported an error");
                return;
            }
            Ok(Event::Accepted { .. } | Event::Ignored) => Vec::new(),
        };
        for reply in replies {
            if !send_within(socket, WsMessage::Binary(reply.into()), limits.send_timeout).await {
                return;
            }
        }
    }
}

/// Sends a frame, giving up on a device that will not take it in time: the server waits on the socket rather than
/// buffering, and never waits for ever. False means the connection is over.
async fn send_within(socket: &mut WebSocket, message: WsMessage, timeout: std::time::Duration) -> bool {
    crate::metrics::websocket_frame_sent(&message);
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!("dropping a device too slow to read");
            false
        }
    }
}

/// Offers a stored document to the device (a push). Returns false if the connection is over.
async fn offer(state: &AppState, connection: &mut Connection, socket: &mut WebSocket, doc_id: DocumentId) -> bool {
    match push(state, connection, doc_id).await {
        Ok(Answer::Frames(frames)) => {
            for frame in frames {
                if !send_within(socket, WsMessage::Binary(frame.into()), state.config.limits.send_timeout).await {
                    return false;
                }
            }
            true
        }
        Ok(Answer::Refuse(error)) => {
            log_closing_on(&error);
            close_with(socket, &mut connection.session, error.code, &error.message).await;
            false
        }
        Err(error) => {
            tracing::warn!(%doc_id, error = format!("{error:#}"), "push failed");
            true
        }
    }
}

/// The frame that offers a changed document to this connection's device, if there is anything to say. A stored
/// document over the limits (stored before they were enforced) is not offered: loading it is what the limits
/// prevent.
async fn push(state: &AppState, connection: &mut Connection, doc_id: DocumentId) -> anyhow::Result<Answer> {
    let _guard = state.ingest.lock(doc_id).await;
    let Some(stored) = connection.device.own_document(doc_id).await? else { return Ok(Answer::Frames(Vec::new())) };
    connection.resume(doc_id).await?;
    off_the_workers(&mut connection.session, move |session| {
        if let Err(error) = Budget::new(DocumentLimits::default()).spend_chunks(&stored.bytes) {
            tracing::warn!(%doc_id, %error, "not offering a stored document over the limits");
            return Ok(Answer::Frames(Vec::new()));
        }
        let mut doc = AutoCommit::load(&stored.bytes).context("loading a stored document")?;
        Ok(Answer::from_generated(session.generate_within_limit(doc_id, &mut doc)))
    })
    .await?
}

/// What a document message comes to.
enum Answer {
    /// Frames to send, in order; the connection goes on.
    Frames(Vec<Vec<u8>>),
    /// The message is refused: the device hears the code, and the connection closes.
    Refuse(ProtocolError),
}

impl Answer {
    fn from_generated(generated: Result<Option<Vec<u8>>, ProtocolError>) -> Answer {
        match generated {
            Ok(frame) => Answer::Frames(frame.into_iter().collect()),
            Err(error) => Answer::Refuse(error),
        }
    }
}

/// Runs document work off the async workers (`ingest::document_work`), lending it the connection's session (moved
/// there and back).
async fn off_the_workers<T, F>(session: &mut Session, work: F) -> anyhow::Result<T>
where
    F: FnOnce(&mut Session) -> T + Send + 'static,
    T: Send + 'static,
{
    let mut lent = std::mem::replace(session, Session::new(Side::Server, String::new()));
    let (lent, output) = ingest::document_work(move || {
        let output = work(&mut lent);
        (lent, output)
    })
    .await?;
    *session = lent;
    Ok(output)
}

/// Text a peer sent, made safe to log: control characters (newlines, ANSI escapes) are escaped, so a peer cannot
/// forge log lines or drive the operator's terminal, and it is cut to [`LOGGED_CHARS`] characters.
pub struct Escaped<'a>(pub &'a str);

/// The most characters of peer-sent text written to the log.
pub const LOGGED_CHARS: usize = 200;

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for character in chars.by_ref().take(LOGGED_CHARS) {
            fmt::Display::fmt(&character.escape_debug(), f)?;
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// Logs why a connection is being closed. A protocol error's message quotes what the peer sent (its sender id,
/// a document id that did not parse, Automerge's complaint), so it is escaped.
fn log_closing_on(error: &ProtocolError) {
    tracing::info!(code = %error.code, error = %Escaped(&error.message), "closing on a protocol error");
}

/// Tells the device why, then closes. A frame or document too large is closed with 1009 (message too big), as
/// WebSocket clients that never read the `error` frame still learn; other errors close normally.
async fn close_with(socket: &mut WebSocket, session: &mut Session, code: ErrorCode, message: &str) {
    let frame = session.error_frame(code, message);
    if send_within(socket, WsMessage::Binary(frame.into()), CLOSE_GRACE).await {
        let close_frame = match code {
            ErrorCode::FrameTooLarge | ErrorCode::DocumentTooLarge => {
                Some(CloseFrame { code: close_code::SIZE, reason: code.as_str().into() })
            }
            _ => None,
        };
        close_framed(socket, close_frame).await;
    }
}

/// How long a closing connection waits for the device to take its last frames and answer the close.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ends the connection with the WebSocket closing handshake: sends Close, then reads and drops whatever the device
/// had already sent, until its Close or the end of the stream, for at most [`CLOSE_GRACE`]. Dropping a socket with
/// unread input makes the kernel reset the connection, and a reset can discard replies the device has received but
/// not yet read: the decisions sent just before a `rate_limited`, for instance.
async fn close(socket: &mut WebSocket) {
    close_framed(socket, None).await;
}

/// As [`close`], with a close code and reason.
async fn close_framed(socket: &mut WebSocket, close_frame: Option<CloseFrame>) {
    if !send_within(socket, WsMessage::Close(close_frame), CLOSE_GRACE).await {
        return;
    }
    let drain = async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

/// A message about a published document (the campaign): every device may read it, none may change it. Its sync
/// state is not kept: the document is small and a phone syncs it afresh.
async fn answer_published(
    connection: &mut Connection,
    doc_id: DocumentId,
    message: SyncMessage,
) -> anyhow::Result<Answer> {
    let Some(bytes) = connection.device.published(doc_id).await? else {
        connection.session.forget(doc_id);
        return Ok(Answer::Frames(vec![connection.session.doc_unavailable_frame(doc_id)]));
    };
    off_the_workers(&mut connection.session, move |session| {
        // What the device sends is refused anyway, but it must not be unpacked past the limits to find that out.
        if let Err(error) = Budget::new(DocumentLimits::default()).spend_message(&message) {
            session.forget(doc_id);
            return Ok(Answer::Refuse(refusal(doc_id, &error)));
        }
        let mut doc = AutoCommit::load(&bytes).context("loading a published document")?;
        let heads = doc.get_heads();
        let applied = apply_caught(session, doc_id, &mut doc, message);
        if applied.is_err() || doc.get_heads() != heads {
            tracing::info!(%doc_id, "refused a change to a published document");
            session.forget(doc_id);
            let message = format!("document {doc_id} is published by the server and read-only to devices");
            return Ok(Answer::Refuse(ProtocolError { code: ErrorCode::DocumentReadOnly, message }));
        }
        Ok(Answer::from_generated(session.generate_within_limit(doc_id, &mut doc)))
    })
    .await?
}

/// The refusal of a message the guard stopped, naming the document.
fn refusal(doc_id: DocumentId, error: &grapevine_sync_proto::guard::GuardError) -> ProtocolError {
    ProtocolError { code: error.code(), message: format!("document {doc_id}: {error}; nothing was stored") }
}

/// Checks the stored document and the message against the limits, then loads the document and applies the
/// message. Nothing of a document over the limits is ever unpacked by Automerge. Runs on the blocking pool.
pub(crate) fn load_and_apply(
    session: &mut Session,
    doc_id: DocumentId,
    stored: Option<&StoredDocument>,
    message: SyncMessage,
    actor: &ActorId,
) -> anyhow::Result<Result<Changed, ProtocolError>> {
    let mut budget = Budget::new(DocumentLimits::default());
    let checked = match stored {
        Some(stored) => budget.spend_chunks(&stored.bytes),
        None => Ok(()),
    };
    if let Err(error) = checked.and_then(|()| budget.spend_message(&message)) {
        session.forget(doc_id);
        return Ok(Err(refusal(doc_id, &error)));
    }
    let mut doc = match stored {
        Some(stored) => AutoCommit::load(&stored.bytes).context("loading a stored document")?,
        None => AutoCommit::new(),
    };
    doc.set_actor(actor.clone());
    let heads_before = doc.get_heads();
    if let Err(error) = apply_caught(session, doc_id, &mut doc, message) {
        session.forget(doc_id);
        return Ok(Err(error));
    }
    Ok(Ok(Changed { doc, heads_before }))
}

/// Applies a sync message, turning a panic inside Automerge into a refusal. Automerge 0.7.4 panics on some malformed
/// changes (an actor it cannot look up in `import_ops`, found by the `sync_message` fuzz target); the document and
/// the sync state it leaves are discarded, and the device hears `protocol_violation` like any change Automerge
/// refuses.
pub(crate) fn apply_caught(
    session: &mut Session,
    doc_id: DocumentId,
    doc: &mut AutoCommit,
    message: SyncMessage,
) -> Result<(), ProtocolError> {
    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.apply(doc_id, doc, message)));
    applied.unwrap_or_else(|_| {
        tracing::warn!(%doc_id, "Automerge panicked on a device's changes; refused");
        session.forget(doc_id);
        Err(ProtocolError {
            code: ErrorCode::ProtocolViolation,
            message: format!("document {doc_id}: sync message refused: Automerge could not read its changes"),
        })
    })
}

/// Loads the persisted sync state for a document the session has not touched yet on this connection.
async fn resume(
    device: &DeviceSession,
    session: &mut Session,
    persisted: &mut HashMap<DocumentId, Vec<u8>>,
    doc_id: DocumentId,
) -> anyhow::Result<()> {
    if session.knows(doc_id) {
        return Ok(());
    }
    if let Some(state) = device.sync_state(doc_id).await? {
        if session.resume(doc_id, &state).is_ok() {
            persisted.insert(doc_id, state);
        }
    }
    Ok(())
}

/// A device's sync message, as a change to one of its collector's documents (`ingest::Change`): applied through the
/// connection's session, on the blocking pool.
struct SyncMessageChange<'a> {
    device: &'a DeviceSession,
    session: &'a mut Session,
    persisted: &'a mut HashMap<DocumentId, Vec<u8>>,
    kind: SyncKind,
    message: SyncMessage,
}

impl Change for SyncMessageChange<'_> {
    type Refusal = ProtocolError;

    /// A `request` asks for a document; only a `sync` may start one.
    fn may_create(&self) -> bool {
        self.kind != SyncKind::Request
    }

    fn brings_changes(&self) -> bool {
        !self.message.changes.is_empty()
    }

    async fn prepare(&mut self, doc_id: DocumentId) -> anyhow::Result<()> {
        resume(self.device, self.session, self.persisted, doc_id).await
    }

    async fn apply(
        &mut self,
        doc_id: DocumentId,
        stored: Option<StoredDocument>,
        actor: ActorId,
    ) -> anyhow::Result<Result<Changed, ProtocolError>> {
        let message = self.message.clone();
        off_the_workers(self.session, move |session| load_and_apply(session, doc_id, stored.as_ref(), message, &actor))
            .await?
    }
}

/// One document message: the ingest service applies it (load, authorise, apply, decide, save), then the reply,
/// generated under the document's lock.
async fn handle_sync(
    state: &AppState,
    connection: &mut Connection,
    doc_id: DocumentId,
    kind: SyncKind,
    message: SyncMessage,
) -> anyhow::Result<Answer> {
    if crate::campaign::is_published(doc_id) {
        return answer_published(connection, doc_id, message).await;
    }
    let Connection { device, author, session, persisted, .. } = connection;
    let mut change = SyncMessageChange { device, session, persisted, kind, message };
    let (settled, _lock) = state.ingest.apply(author, doc_id, &mut change).await?;
    let (mut doc, access, saved) = match settled {
        Settled::Unavailable => {
            connection.session.forget(doc_id);
            crate::metrics::sync_message(crate::metrics::SyncOutcome::Unavailable);
            return Ok(Answer::Frames(vec![connection.session.doc_unavailable_frame(doc_id)]));
        }
        Settled::Refused(refused) => {
            tracing::info!(%doc_id, error = %Escaped(&refused.message), "refused changes");
            crate::metrics::sync_message(crate::metrics::SyncOutcome::Refused);
            return Ok(Answer::Refuse(refused));
        }
        Settled::Applied { doc, access, saved } => (doc, access, saved),
    };
    crate::metrics::sync_message(if saved {
        crate::metrics::SyncOutcome::Stored
    } else {
        crate::metrics::SyncOutcome::Unchanged
    });
    let foreign = access == Access::Foreign;
    let answer = off_the_workers(&mut connection.session, move |session| {
        let answer = Answer::from_generated(session.generate_within_limit(doc_id, &mut doc));
        if foreign {
            // Nothing of another collector's document is kept for this device.
            session.forget(doc_id);
        }
        answer
    })
    .await?;
    // Only stored documents keep a sync state.
    if access == Access::Own || saved {
        connection.persist(doc_id).await?;
    }
    Ok(answer)
}

/// Token buckets per key: a key (a device's messages, an address's enrolment attempts) may spend `burst` tokens at
/// once and `rate` per second after that. Buckets of keys that went quiet are dropped when full again.
#[derive(Debug)]
pub struct RateLimiter<K = Uuid> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    #[must_use]
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter { rate, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from the key's budget; false when it is spent.
    pub fn allow(&self, key: K) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter poisoned");
        if buckets.len() > 10_000 {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back a token taken by [`RateLimiter::allow`], for an attempt that turned out not to count.
    pub fn refund(&self, key: &K) {
        let mut buckets = self.buckets.lock().expect("rate limiter poisoned");
        if let Some((tokens, _)) = buckets.get_mut(key) {
            *tokens = (*tokens + 1.0).min(self.burst);
        }
    }

    /// How long until the key has a token again.
    pub fn wait(&self, key: &K) -> std::time::Duration {
        let buckets = self.buckets.lock().expect("rate limiter poisoned");
        let Some((tokens, at)) = buckets.get(key) else { return std::time::Duration::ZERO };
        let now_tokens = tokens + Instant::now().duration_since(*at).as_secs_f64() * self.rate;
        std::time::Duration::try_from_secs_f64(((1.0 - now_tokens) / self.rate).max(0.0))
            .unwrap_or(std::time::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A peer's sender id with a newline and an ANSI escape, as in the forged log line of issue 15.
    const FORGED: &str = "phone\n2026-11-20T09:00:00Z  INFO grapevine: \u{1b}[31mall good\u{1b}[0m";

    #[test]
    fn text_a_peer_sent_is_escaped_and_cut_for_the_log() {
        let escaped = Escaped(FORGED).to_string();
        assert!(!escaped.chars().any(char::is_control), "{escaped}");
        assert!(escaped.contains("phone\\n2026") && escaped.contains("\\u{1b}[31m"), "{escaped}");
        assert_eq!(Escaped("plain peer-7").to_string(), "plain peer-7");
        assert_eq!(Escaped("Côté").to_string(), "Côté", "printable text is left alone");
        let long = Escaped(&"x".repeat(10_000)).to_string();
        assert_eq!(long.chars().count(), LOGGED_CHARS + 1, "cut, with an ellipsis");
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn closing_on_a_protocol_error_logs_one_line_whatever_the_peer_sent() {
        // The session's own error for a message from another sender id quotes that id.
        let mut server = Session::new(Side::Server, "server");
        let mut client = Session::new(Side::Client, "phone");
        let Ok(Event::Joined { .. }) = server.receive(&client.join_frame()) else { panic!("no join") };
        let _ = client.receive(&server.accept(&[], None));
        let spoofed = grapevine_sync_proto::wire::Message::DocUnavailable {
            sender_id: FORGED.to_owned(),
            target_id: "server".to_owned(),
            document_id: DocumentId::random().to_string(),
        };
        let error = server.receive(&spoofed.encode()).unwrap_err();
        assert!(error.message.contains('\n'), "the error quotes the forged id: {error}");

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, || log_closing_on(&error));
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), 1, "one line: {log}");
        assert!(log.contains("closing on a protocol error") && log.contains("protocol_violation"), "{log}");
        assert!(!log.contains('\u{1b}'), "no escape character reaches the log: {log}");
        assert!(log.contains("phone\\n2026"), "the forged id is there, escaped: {log}");
    }
}
