//! The sync client: one WebSocket connection, the automerge-repo v1 handshake, then every document that needs it
//! synced in one batch (all first messages go out together, so round trips do not grow with the number of insights).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::campaign::{campaign_document, DEFAULT_CAMPAIGN_SLUG};
use grapevine_sync_proto::campaign_doc::fingerprint;
use grapevine_sync_proto::session::{Event, Session, Side};
use grapevine_sync_proto::DocumentId;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use uuid::Uuid;

use crate::error::SdkError;
use crate::store::{Status, Store};

/// The most documents offered at once; a larger backlog goes in slices over the same connection.
pub const BATCH_SIZE: usize = 500;

/// How long a sync waits for the server to say anything before giving up (nothing is lost; sync again).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a sync moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Insights the server did not hold before and holds now.
    pub sent: usize,
    /// Insights whose status changed, with the new status.
    pub updated: Vec<(Uuid, Status)>,
    /// Insights the server would not take or give (it answers "unavailable").
    pub unavailable: Vec<Uuid>,
    /// Insights that arrived from the collector's other devices.
    pub received: usize,
    /// Whether the campaign (categories, prompts, areas) changed on the phone in this sync.
    pub campaign_updated: bool,
    /// What crossed the wire, both ways.
    pub traffic: Traffic,
}

/// Frames and bytes on one connection, as the WebSocket payloads counted them (compressed once the server takes it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub frames_sent: usize,
    pub bytes_sent: usize,
    pub frames_received: usize,
    pub bytes_received: usize,
    /// Round trips the phone waited through: the handshake, plus the most messages any one document needed (the
    /// documents of a batch go in parallel, so this is the latency depth, not a count of frames).
    pub round_trips: usize,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What became of one document in a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocOutcome {
    /// Both sides now hold exactly the same changes.
    InStep,
    /// The server does not have it or will not share it (the two look the same on purpose).
    Unavailable,
}

/// Syncs the store once with the server at `url` (e.g. `ws://127.0.0.1:8080/sync`), authenticating with `token`.
///
/// Only unsettled insights are offered (see `docs/data-model.md`), unless the server's storage lineage changed since
/// the last sync (it was restored from a backup): then every insight is offered again, so nothing the restore lost
/// stays lost.
///
/// # Errors
/// The server refuses the token (`SdkError::Server` with code `unauthorized`), cannot be reached, breaks the protocol
/// or stops answering. Nothing on the phone is lost either way; sync again.
pub async fn sync(store: &Store, url: &str, token: &str) -> Result<SyncReport, SdkError> {
    sync_with_progress(store, url, token, |_, _| {}).await
}

/// [`sync`], telling `progress(done, total)` how many of the documents to exchange are done, after each slice.
///
/// # Errors
/// As [`sync`].
pub async fn sync_with_progress(
    store: &Store,
    url: &str,
    token: &str,
    mut progress: impl FnMut(usize, usize) + Send,
) -> Result<SyncReport, SdkError> {
    let seen = store.seen().await?;
    let campaign_id = campaign_document(DEFAULT_CAMPAIGN_SLUG);
    let mut campaign = match campaign_id {
        Some(doc_id) => store.published(doc_id).await?,
        None => None,
    };
    let held = campaign.as_mut().map(fingerprint).unwrap_or_default();
    let mut connection = SyncConnection::open_with(url, token, store.peer_id(), Some(seen), Some(held)).await?;
    let known_lineage = store.server_storage_id().await?;
    let offer_everything = connection.server_storage_id.is_some() && connection.server_storage_id != known_lineage;
    let before: HashMap<Uuid, Status> =
        store.list().await?.into_iter().map(|listed| (listed.id, listed.status)).collect();
    let mut batch = Vec::new();
    for mut local in store.documents_to_sync(offer_everything).await? {
        match local.sync_state.as_deref() {
            Some(state) => connection.resume(local.doc_id, Some(state)),
            // Never synced, so new to the server: it goes whole in its first message.
            None => connection.offer_whole(local.doc_id, &mut local.doc),
        }
        batch.push((local.doc_id, local.doc));
    }
    // What the collector's other devices wrote while this phone was away: our copy if we have one, else a new one.
    // The campaign, when announced, is synced on its own (it is read-only and is not an insight).
    let mut published = Vec::new();
    for doc_id in connection.catch_up.clone() {
        if Some(doc_id) == campaign_id {
            published.push((doc_id, campaign.take().unwrap_or_default()));
            continue;
        }
        if batch.iter().any(|(offered, _)| *offered == doc_id) {
            continue;
        }
        match store.local_document(doc_id).await? {
            Some(local) => {
                connection.resume(doc_id, local.sync_state.as_deref());
                batch.push((doc_id, local.doc));
            }
            None => batch.push((doc_id, AutoCommit::new())),
        }
    }
    // In slices, so a long-offline phone's backlog neither sits in memory all at once nor bursts past the server's
    // per-device budget.
    let mut outcomes = Vec::with_capacity(batch.len());
    let total = batch.len();
    progress(0, total);
    for slice in batch.chunks_mut(BATCH_SIZE) {
        match connection.sync_batch(slice).await {
            Ok(slice_outcomes) => outcomes.extend(slice_outcomes),
            Err(error) => {
                // The server's decisions that arrived before the connection failed (a server shutting down sends
                // every committed reply, then closes) are kept: each document already in step is saved.
                let in_step: Vec<_> = batch
                    .iter_mut()
                    .filter_map(|(doc_id, doc)| {
                        connection.is_in_step(*doc_id, doc).then(|| (*doc_id, doc, connection.sync_state(*doc_id)))
                    })
                    .collect();
                store.save_synced(in_step).await?;
                return Err(error);
            }
        }
        progress(outcomes.len(), total);
    }
    let published_outcomes =
        if published.is_empty() { Vec::new() } else { connection.sync_batch(&mut published).await? };
    let states: Vec<Option<Vec<u8>>> = batch.iter().map(|(doc_id, _)| connection.sync_state(*doc_id)).collect();
    let server_storage_id = connection.server_storage_id.clone();
    let catch_up_to = connection.catch_up_to;
    let traffic = connection.traffic;
    connection.close().await;
    let mut report = SyncReport { traffic, ..SyncReport::default() };
    for ((doc_id, doc), outcome) in published.iter_mut().zip(published_outcomes) {
        if outcome == DocOutcome::InStep {
            store.save_published(*doc_id, doc).await?;
            report.campaign_updated = true;
        }
    }
    let mut in_step = Vec::new();
    for (((doc_id, doc), outcome), state) in batch.iter_mut().zip(outcomes).zip(states) {
        if outcome == DocOutcome::Unavailable {
            if before.contains_key(&doc_id.as_uuid()) {
                report.unavailable.push(doc_id.as_uuid());
            }
        } else {
            in_step.push((*doc_id, doc, state));
        }
    }
    let ids: Vec<Uuid> = in_step.iter().map(|(doc_id, _, _)| doc_id.as_uuid()).collect();
    for (insight_id, (status, is_new)) in ids.into_iter().zip(store.save_synced(in_step).await?) {
        let previous = before.get(&insight_id);
        if is_new {
            report.received += 1;
        } else if previous == Some(&Status::Captured) {
            report.sent += 1;
        }
        if previous != Some(&status) {
            report.updated.push((insight_id, status));
        }
    }
    if offer_everything {
        if let Some(lineage) = &server_storage_id {
            store.set_server_storage_id(lineage).await?;
        }
    }
    // Only now that every announced document is durably on the phone does it count as seen.
    if let Some(catch_up_to) = catch_up_to.filter(|&to| to > seen) {
        store.set_seen(catch_up_to).await?;
    }
    Ok(report)
}

/// Syncs a batch of documents over one connection; one outcome per document, in order. The network half of
/// [`sync`], usable with any documents (tests use it to act as another client).
///
/// # Errors
/// As [`sync`].
pub async fn sync_documents(
    url: &str,
    token: &str,
    peer_id: &str,
    docs: &mut [(DocumentId, AutoCommit)],
) -> Result<Vec<DocOutcome>, SdkError> {
    let mut connection = SyncConnection::open(url, token, peer_id).await?;
    let outcomes = connection.sync_batch(docs).await?;
    connection.close().await;
    Ok(outcomes)
}

/// One authenticated connection to a server, past the handshake.
pub struct SyncConnection {
    socket: Socket,
    session: Session,
    /// The server's storage lineage, from its handshake.
    pub server_storage_id: Option<String>,
    /// The documents the server announced it will offer (written by the collector's other devices meanwhile).
    pub catch_up: Vec<DocumentId>,
    /// How far the phone will have seen the collector's writes once it holds `catch_up`.
    pub catch_up_to: Option<i64>,
    /// What this connection has carried so far.
    pub traffic: Traffic,
}

impl Traffic {
    fn count_sent(&mut self, frame: &[u8]) {
        self.frames_sent += 1;
        self.bytes_sent += frame.len();
    }

    fn count_received(&mut self, frame: &[u8]) {
        self.frames_received += 1;
        self.bytes_received += frame.len();
    }
}

impl SyncConnection {
    async fn send(&mut self, frame: Vec<u8>) -> Result<(), SdkError> {
        self.traffic.count_sent(&frame);
        send(&mut self.socket, frame).await
    }

    async fn next_frame(&mut self) -> Result<Vec<u8>, SdkError> {
        let frame = next_frame(&mut self.socket).await?;
        self.traffic.count_received(&frame);
        Ok(frame)
    }

    /// Connects, authenticates and completes the handshake.
    ///
    /// # Errors
    /// As [`sync`].
    pub async fn open(url: &str, token: &str, peer_id: &str) -> Result<SyncConnection, SdkError> {
        SyncConnection::open_seen(url, token, peer_id, None).await
    }

    /// Opens a connection, telling the server how far this phone has seen the collector's writes, so it announces
    /// what changed since.
    ///
    /// # Errors
    /// As [`sync`].
    pub async fn open_seen(
        url: &str,
        token: &str,
        peer_id: &str,
        seen: Option<i64>,
    ) -> Result<SyncConnection, SdkError> {
        SyncConnection::open_with(url, token, peer_id, seen, None).await
    }

    /// Opens a connection as [`SyncConnection::open_seen`], also telling the server the fingerprint of the campaign
    /// copy this phone holds (`""` for none), so it announces the campaign when the phone's copy is stale.
    ///
    /// # Errors
    /// As [`sync`].
    pub async fn open_with(
        url: &str,
        token: &str,
        peer_id: &str,
        seen: Option<i64>,
        campaign: Option<String>,
    ) -> Result<SyncConnection, SdkError> {
        let mut socket = connect(url, token).await?;
        // Frames are compressed when the server takes it (a Grapevine server does; the JavaScript one does not).
        let mut session = Session::new(Side::Client, peer_id).with_compression();
        if let Some(seen) = seen {
            session = session.with_seen(seen);
        }
        if let Some(campaign) = campaign {
            session = session.with_campaign(campaign);
        }
        let mut traffic = Traffic { round_trips: 1, ..Traffic::default() };
        let join = session.join_frame();
        traffic.count_sent(&join);
        send(&mut socket, join).await?;
        loop {
            let frame = next_frame(&mut socket).await?;
            traffic.count_received(&frame);
            match session.receive(&frame)? {
                Event::Accepted { storage_id, catch_up, catch_up_to, .. } => {
                    return Ok(SyncConnection {
                        socket,
                        session,
                        server_storage_id: storage_id,
                        catch_up,
                        catch_up_to,
                        traffic,
                    });
                }
                Event::RemoteError { code, message } => return Err(remote_error(code, message)),
                _ => {}
            }
        }
    }

    /// Resumes a document from its persisted sync state (a state that does not decode is ignored: the sync then
    /// starts from nothing, which costs a round trip, never correctness).
    pub fn resume(&mut self, doc_id: DocumentId, persisted: Option<&[u8]>) {
        if let Some(persisted) = persisted {
            let _ = self.session.resume(doc_id, persisted);
        }
    }

    /// Sends a document the server has never seen whole in its first message, when the server takes that (see
    /// `Session::offer_whole`); otherwise the sync starts as for any document without a sync state.
    pub fn offer_whole(&mut self, doc_id: DocumentId, doc: &mut AutoCommit) {
        self.session.offer_whole(doc_id, doc);
    }

    /// Whether the server holds everything of `doc` this phone has, and this phone everything the server sent.
    pub fn is_in_step(&self, doc_id: DocumentId, doc: &mut AutoCommit) -> bool {
        self.session.is_in_step(doc_id, doc)
    }

    /// The sync state to persist for a document after a sync.
    #[must_use]
    pub fn sync_state(&self, doc_id: DocumentId) -> Option<Vec<u8>> {
        self.session.sync_state(doc_id)
    }

    /// Syncs a batch: every document's first message at once, then answers until each document is in step with the
    /// server or unavailable. Round trips do not grow with the size of the batch.
    ///
    /// # Errors
    /// As [`sync`].
    pub async fn sync_batch(&mut self, docs: &mut [(DocumentId, AutoCommit)]) -> Result<Vec<DocOutcome>, SdkError> {
        let index: HashMap<DocumentId, usize> = docs.iter().enumerate().map(|(i, (doc_id, _))| (*doc_id, i)).collect();
        let mut outcomes = vec![None; docs.len()];
        let mut depth = vec![0_usize; docs.len()];
        for (i, (doc_id, doc)) in docs.iter_mut().enumerate() {
            if let Some(frame) = self.session.generate(*doc_id, doc) {
                depth[i] += 1;
                self.send(frame).await?;
            }
        }
        let mut n_pending = docs.len();
        while n_pending > 0 {
            let frame = self.next_frame().await?;
            match self.session.receive(&frame)? {
                Event::Sync { doc_id, message, .. } => {
                    let Some(&i) = index.get(&doc_id) else { continue };
                    let doc = &mut docs[i].1;
                    self.session.apply(doc_id, doc, message)?;
                    // A message that leaves both sides holding the same heads (the server's decision, usually) is
                    // not answered: the answer would only tell the server what it already sent. Its sync state for
                    // the document then stops one message short, which costs at most that message again, if the
                    // document is ever synced again.
                    let in_step = self.session.is_in_step(doc_id, doc);
                    if !in_step {
                        if let Some(frame) = self.session.generate(doc_id, doc) {
                            depth[i] += 1;
                            self.send(frame).await?;
                        }
                    }
                    if outcomes[i].is_none() && in_step {
                        outcomes[i] = Some(DocOutcome::InStep);
                        n_pending -= 1;
                    }
                }
                Event::DocUnavailable { doc_id } => {
                    if let Some(&i) = index.get(&doc_id) {
                        if outcomes[i].is_none() {
                            outcomes[i] = Some(DocOutcome::Unavailable);
                            n_pending -= 1;
                        }
                    }
                }
                Event::RemoteError { code, message } => return Err(remote_error(code, message)),
                Event::Joined { .. } | Event::Accepted { .. } | Event::Ignored => {}
            }
        }
        self.traffic.round_trips += depth.into_iter().max().unwrap_or(0);
        Ok(outcomes.into_iter().map(|outcome| outcome.unwrap_or(DocOutcome::Unavailable)).collect())
    }

    /// Follows what the server pushes: changes to documents in `docs`, and documents of this collector that `docs`
    /// lacks (written through another device), which are added. Every message is answered. Returns `true` once
    /// `done(docs)` holds, `false` if `timeout` passes first.
    ///
    /// # Errors
    /// As [`sync`].
    pub async fn follow(
        &mut self,
        docs: &mut HashMap<DocumentId, AutoCommit>,
        timeout: Duration,
        mut done: impl FnMut(&mut HashMap<DocumentId, AutoCommit>) -> bool,
    ) -> Result<bool, SdkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(docs) {
            let Ok(frame) = tokio::time::timeout_at(deadline, self.next_frame()).await else {
                return Ok(false);
            };
            match self.session.receive(&frame?)? {
                Event::Sync { doc_id, message, .. } => {
                    let doc = docs.entry(doc_id).or_default();
                    self.session.apply(doc_id, doc, message)?;
                    if let Some(frame) = self.session.generate(doc_id, doc) {
                        self.send(frame).await?;
                    }
                }
                Event::RemoteError { code, message } => return Err(remote_error(code, message)),
                _ => {}
            }
        }
        Ok(true)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

async fn connect(url: &str, token: &str) -> Result<Socket, SdkError> {
    let mut request = url.into_client_request().map_err(|error| SdkError::Network(format!("{url}: {error}")))?;
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| SdkError::Server { code: "unauthorized".into(), message: "the token is not valid text".into() })?;
    request.headers_mut().insert("authorization", bearer);
    let tls = tokio_tungstenite::Connector::Rustls(Arc::new(crate::tls::client_config()?));
    match tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(tls)).await {
        Ok((socket, _response)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            // The server refused the upgrade (a missing, unknown or revoked token).
            Err(server_refusal(response.status().as_u16(), response.body().as_deref().unwrap_or_default()))
        }
        Err(error) => Err(SdkError::Network(format!("{url}: {error}"))),
    }
}

/// An HTTP refusal from the server, whose body is `{"code", "message"}`, as an error carrying the code.
pub(crate) fn server_refusal(status: u16, body: &[u8]) -> SdkError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_owned);
    SdkError::Server {
        code: field("code").unwrap_or_else(|| format!("http_{status}")),
        message: field("message").unwrap_or_else(|| format!("HTTP {status}")),
    }
}

async fn send(socket: &mut Socket, frame: Vec<u8>) -> Result<(), SdkError> {
    socket.send(WsMessage::Binary(frame.into())).await.map_err(|error| SdkError::Network(error.to_string()))
}

async fn next_frame(socket: &mut Socket) -> Result<Vec<u8>, SdkError> {
    loop {
        let message = tokio::time::timeout(IDLE_TIMEOUT, socket.next())
            .await
            .map_err(|_| SdkError::Timeout(format!("no answer from the server in {IDLE_TIMEOUT:?}")))?;
        match message {
            Some(Ok(WsMessage::Binary(frame))) => return Ok(frame.to_vec()),
            Some(Ok(WsMessage::Close(_))) | None => {
                return Err(SdkError::Network("the server closed the connection".into()))
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(SdkError::Network(error.to_string())),
        }
    }
}

fn remote_error(code: Option<grapevine_sync_proto::ErrorCode>, message: String) -> SdkError {
    SdkError::Server { code: code.map_or_else(|| "unknown".to_owned(), |code| code.as_str().to_owned()), message }
}
