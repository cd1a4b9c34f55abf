//! The sync client: one WebSocket connection, the automerge-repo v1 handshake, then every document that needs it
//! synced in one batch (all first messages go out together, so round trips do not grow with the number of insights).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::session::{Event, Session, Side};
use grapevine_sync_proto::DocumentId;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use uuid::Uuid;

use crate::error::SdkError;
use crate::store::{Status, Store};

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
    let mut connection = SyncConnection::open(url, token, store.peer_id()).await?;
    let known_lineage = store.server_storage_id().await?;
    let offer_everything = connection.server_storage_id.is_some() && connection.server_storage_id != known_lineage;
    let before: HashMap<Uuid, Status> =
        store.list().await?.into_iter().map(|listed| (listed.id, listed.status)).collect();
    let mut docs = store.documents_to_sync(offer_everything).await?;
    let outcomes = connection.sync_batch(&mut docs).await?;
    let server_storage_id = connection.server_storage_id.clone();
    connection.close().await;
    let mut report = SyncReport::default();
    for ((doc_id, doc), outcome) in docs.iter_mut().zip(outcomes) {
        let insight_id = doc_id.as_uuid();
        if outcome == DocOutcome::Unavailable {
            report.unavailable.push(insight_id);
            continue;
        }
        let status = store.save_synced(*doc_id, doc, true).await?;
        let previous = before.get(&insight_id);
        if previous == Some(&Status::Captured) {
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
}

impl SyncConnection {
    /// Connects, authenticates and completes the handshake.
    ///
    /// # Errors
    /// As [`sync`].
    pub async fn open(url: &str, token: &str, peer_id: &str) -> Result<SyncConnection, SdkError> {
        let mut socket = connect(url, token).await?;
        let mut session = Session::new(Side::Client, peer_id);
        send(&mut socket, session.join_frame()).await?;
        loop {
            match session.receive(&next_frame(&mut socket).await?)? {
                Event::Accepted { storage_id, .. } => {
                    return Ok(SyncConnection { socket, session, server_storage_id: storage_id })
                }
                Event::RemoteError { code, message } => return Err(remote_error(code, message)),
                _ => {}
            }
        }
    }

    /// Syncs a batch: every document's first message at once, then answers until each document is in step with the
    /// server or unavailable. Round trips do not grow with the size of the batch.
    ///
    /// # Errors
    /// As [`sync`].
    pub async fn sync_batch(&mut self, docs: &mut [(DocumentId, AutoCommit)]) -> Result<Vec<DocOutcome>, SdkError> {
        let index: HashMap<DocumentId, usize> = docs.iter().enumerate().map(|(i, (doc_id, _))| (*doc_id, i)).collect();
        let mut outcomes = vec![None; docs.len()];
        for (doc_id, doc) in docs.iter_mut() {
            if let Some(frame) = self.session.generate(*doc_id, doc) {
                send(&mut self.socket, frame).await?;
            }
        }
        let mut n_pending = docs.len();
        while n_pending > 0 {
            match self.session.receive(&next_frame(&mut self.socket).await?)? {
                Event::Sync { doc_id, message, .. } => {
                    let Some(&i) = index.get(&doc_id) else { continue };
                    let doc = &mut docs[i].1;
                    self.session.apply(doc_id, doc, message)?;
                    if let Some(frame) = self.session.generate(doc_id, doc) {
                        send(&mut self.socket, frame).await?;
                    }
                    if outcomes[i].is_none() && self.session.is_in_step(doc_id, doc) {
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
            let Ok(frame) = tokio::time::timeout_at(deadline, next_frame(&mut self.socket)).await else {
                return Ok(false);
            };
            match self.session.receive(&frame?)? {
                Event::Sync { doc_id, message, .. } => {
                    let doc = docs.entry(doc_id).or_default();
                    self.session.apply(doc_id, doc, message)?;
                    if let Some(frame) = self.session.generate(doc_id, doc) {
                        send(&mut self.socket, frame).await?;
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
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _response)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            // The server refused the upgrade; its body is `{"code", "message"}`.
            let status = response.status();
            let body = response.body().as_deref().unwrap_or_default();
            let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
            let field =
                |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_owned);
            Err(SdkError::Server {
                code: field("code").unwrap_or_else(|| format!("http_{}", status.as_u16())),
                message: field("message").unwrap_or_else(|| status.to_string()),
            })
        }
        Err(error) => Err(SdkError::Network(format!("{url}: {error}"))),
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
