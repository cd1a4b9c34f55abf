//! Group commit: the document writes of every connection on this node go through one writer task, which commits
//! whatever has queued up while the previous transaction was committing as one transaction (one fsync). Each writer
//! still waits for its own outcome, so a device hears "stored" only after the commit that holds its document.
//!
//! One failing write never fails its neighbours: if a batch hits a conflict (another node saved a document first) or
//! an error, the batch is retried one write at a time and each writer gets its own outcome.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::store::{DocumentWrite, SaveError, Store};

/// The most writes one transaction takes.
pub const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before `save` waits for room (back-pressure on the connections).
const QUEUE: usize = 4 * MAX_BATCH;

struct Pending {
    write: DocumentWrite,
    done: oneshot::Sender<Result<(), SaveError>>,
}

/// The handle connections save through.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer task; it ends when the last handle is dropped.
    #[must_use]
    pub fn start(store: Arc<dyn Store>) -> GroupCommit {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, receiver));
        GroupCommit { queue }
    }

    /// Saves one document write; returns once the transaction holding it has committed (or failed).
    ///
    /// # Errors
    /// As `Store::save_document`; `SaveError::Database` if the writer has stopped.
    pub async fn save(&self, write: DocumentWrite) -> Result<(), SaveError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { write, done })
            .await
            .map_err(|_| SaveError::Database(anyhow::anyhow!("the writer has stopped")))?;
        outcome.await.map_err(|_| SaveError::Database(anyhow::anyhow!("the writer stopped before committing")))?
    }
}

async fn run(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Pending>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        // Everything already waiting joins, but never two writes of one document (each must claim its own version).
        let mut next = None;
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(pending) if batch.iter().any(|queued| queued.write.doc_id == pending.write.doc_id) => {
                    next = Some(pending);
                    break;
                }
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        commit(store.as_ref(), batch).await;
        if let Some(pending) = next {
            commit(store.as_ref(), vec![pending]).await;
        }
    }
}

async fn commit(store: &dyn Store, batch: Vec<Pending>) {
    let started = Instant::now();
    if batch.len() == 1 {
        let Pending { write, done } = batch.into_iter().next().expect("one write");
        save_one(store, write, done).await;
        crate::metrics::group_commit(1, started.elapsed());
        return;
    }
    let writes: Vec<DocumentWrite> = batch.iter().map(|pending| pending.write.clone()).collect();
    match store.save_documents(writes).await {
        Ok(()) => {
            crate::metrics::group_commit(batch.len(), started.elapsed());
            for pending in batch {
                crate::metrics::insight_decided(&pending.write.insight.outcome);
                let _ = pending.done.send(Ok(()));
            }
        }
        Err(error) => {
            crate::metrics::group_commit(batch.len(), started.elapsed());
            tracing::debug!(%error, n_writes = batch.len(), "a batch failed; committing its writes one by one");
            for Pending { write, done } in batch {
                let started = Instant::now();
                save_one(store, write, done).await;
                crate::metrics::group_commit(1, started.elapsed());
            }
        }
    }
}

/// Saves one write alone and tells its writer; a committed decision is counted.
async fn save_one(store: &dyn Store, write: DocumentWrite, done: oneshot::Sender<Result<(), SaveError>>) {
    let outcome = write.insight.outcome.clone();
    let saved = store.save_document(write).await;
    if saved.is_ok() {
        crate::metrics::insight_decided(&outcome);
    }
    let _ = done.send(saved);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DocumentBytes, InsightRow, Outcome};
    use grapevine_sync_proto::automerge::AutoCommit;
    use grapevine_sync_proto::{DocumentId, ErrorCode};

    fn write(doc_id: DocumentId, device: &crate::store::NewDevice, expected_version: Option<i64>) -> DocumentWrite {
        DocumentWrite {
            doc_id,
            collector_id: device.collector_id,
            device_id: device.device_id,
            writer: uuid::Uuid::nil(),
            bytes: DocumentBytes::Snapshot(AutoCommit::new().save()),
            expected_version,
            insight: InsightRow::without_content(
                doc_id.as_uuid(),
                Outcome::Rejected { code: ErrorCode::InsightMalformed, message: "test".into() },
                time::OffsetDateTime::now_utc(),
            ),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_together_and_a_conflict_fails_only_its_own_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
        let device = crate::auth::issue_device(store.as_ref(), "phone", None).await.unwrap().0;
        let writer = GroupCommit::start(store.clone());
        let existing = DocumentId::random();
        writer.save(write(existing, &device, None)).await.unwrap();

        let mut saves = Vec::new();
        for i in 0..100 {
            let writer = writer.clone();
            // One in ten claims a version the document does not have: a stale writer.
            let (doc_id, expected) = if i % 10 == 0 { (existing, Some(7)) } else { (DocumentId::random(), None) };
            let write = write(doc_id, &device, expected);
            saves.push(tokio::spawn(async move { (i, writer.save(write).await) }));
        }
        for save in saves {
            let (i, outcome) = save.await.unwrap();
            if i % 10 == 0 {
                assert!(matches!(outcome, Err(SaveError::Conflict)), "write {i}: {outcome:?}");
            } else {
                assert!(outcome.is_ok(), "write {i}: {outcome:?}");
            }
        }
        assert_eq!(store.load_document(existing).await.unwrap().unwrap().version, 1);
    }
}
