//! Response bodies streamed as they are made: the audit trail (`/api/v1/audit`, `/audit.csv`) and the exports. A
//! producer runs in a task of its own and hands chunks through a bounded channel, so it waits while the client reads
//! slowly and memory holds only what is in flight; a chunk that is an error ends the response abruptly, so a client
//! never takes a download cut short for a whole one. The pages (`web`) use the same helpers.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

/// A body of the chunks `chunks` yields.
pub fn body<S, B>(chunks: S) -> Body
where
    S: Stream<Item = std::io::Result<B>> + Send + 'static,
    B: Into<Bytes> + 'static,
{
    Body::from_stream(chunks.map(|chunk| chunk.map(Into::into)))
}

/// A download: its type, the name a browser saves it as, and its body.
pub fn attachment(content_type: &'static str, filename: &str, body: Body) -> Response {
    // File names are made by the server from letters, digits, `-` and `.`; anything else is replaced, so the header
    // never needs escaping.
    let filename: String = filename
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') { c } else { '_' })
        .collect();
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

/// How a producer says whether its stream begins (the permission check passed, say) or is refused.
pub struct Started<E>(oneshot::Sender<Result<(), E>>);

impl<E> Started<E> {
    /// The stream begins: the response is sent, and chunks follow.
    pub fn begin(self) {
        let _ = self.0.send(Ok(()));
    }

    /// The stream is refused: the caller answers `error` instead (a status, not a broken body).
    pub fn refuse(self, error: E) {
        let _ = self.0.send(Err(error));
    }
}

/// Where a producer sends its chunks.
pub struct Feed(mpsc::Sender<std::io::Result<Bytes>>);

impl Feed {
    /// Sends a chunk, waiting while the client is slow; `false` when the client has gone (stop producing).
    pub async fn send(&self, chunk: std::io::Result<Bytes>) -> bool {
        self.0.send(chunk).await.is_ok()
    }
}

/// Runs `produce` in a task of its own (so it may own what its stream borrows) and answers once it has said,
/// through `Started`, whether the stream begins: the body of its chunks, or its refusal. At most `in_flight` chunks
/// wait for the client.
///
/// # Errors
/// The producer's refusal, or an internal error if it stopped before saying.
pub async fn spawn<E, F, Fut>(in_flight: usize, produce: F) -> Result<Body, E>
where
    E: From<anyhow::Error> + Send + 'static,
    F: FnOnce(Started<E>, Feed) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (started, allowed) = oneshot::channel();
    let (sender, receiver) = mpsc::channel(in_flight);
    tokio::spawn(produce(Started(started), Feed(sender)));
    allowed.await.map_err(|_| E::from(anyhow::anyhow!("the stream's producer stopped before it started")))??;
    Ok(body(futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    })))
}
