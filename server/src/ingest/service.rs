//! The ingest service: the one loop a stored document changes through. Whoever changes a document (a device's sync
//! message, the server publishing the campaign, and later erasure and re-processing) says only what its change is;
//! the service loads the document, decides whether the author may write it, has the change applied, decides what the
//! insight now means (reading the stored decision for finality), saves it against the version it loaded, and goes
//! round again when another writer saved first or a boundary generation arrived meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::Context;
use grapevine_sync_proto::automerge::{ActorId, AutoCommit, ChangeHash};
use grapevine_sync_proto::doc_id::{id_is_bound, id_made_with, ID_KEY_BYTES};
use grapevine_sync_proto::document::write_server_record;
use grapevine_sync_proto::DocumentId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::decide::{decide, postcode_of, withdrawn};
use crate::geo::atlas::SharedAtlas;
use crate::group_commit::GroupCommit;
use crate::store::{normalise_postcode, DocumentBytes, DocumentWrite, Outcome, SaveError, Store, StoredDocument};

/// A document stored as this many chunks is compacted into one snapshot on its next write.
pub const COMPACT_AT_CHUNKS: i64 = 16;

/// How many times a change is tried on a document that keeps changing under it before the service gives up.
const ATTEMPTS: usize = 5;

/// Everything a change to a stored document needs: the store, the atlas it is tagged by, the writer task it is
/// saved through, this node's per-document locks and the actor the server writes its records as.
#[derive(Debug, Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    atlas: SharedAtlas,
    writer: GroupCommit,
    doc_locks: Arc<DocLocks>,
    actor: ActorId,
}

/// The device a change comes from: whose documents it may change, and which document ids it may create. One per
/// connection, so the id key is read from the store once.
pub struct Author {
    pub device_id: Uuid,
    pub collector_id: Uuid,
    /// Names this author's saves in the change feed, so a connection is not offered back what it saved itself.
    pub writer: Uuid,
    /// The id key the device's phone sent at enrolment, once read (`Author::may_create`).
    id_key: Option<Option<[u8; ID_KEY_BYTES]>>,
}

impl Author {
    /// A device of `collector_id`, with a writer id of its own.
    #[must_use]
    pub fn device(device_id: Uuid, collector_id: Uuid) -> Author {
        Author { device_id, collector_id, writer: Uuid::new_v4(), id_key: None }
    }

    /// Whether this device may create a document under `doc_id`: any version 4 id (first come), and a version 8 id
    /// only if the id key its phone registered at enrolment made it (docs/sync-protocol.md, "Who may write a
    /// document"), so someone who learns an insight's id cannot store it before its owner does.
    async fn may_create(&mut self, store: &dyn Store, doc_id: DocumentId) -> anyhow::Result<bool> {
        if !id_is_bound(doc_id.as_uuid()) {
            return Ok(true);
        }
        if self.id_key.is_none() {
            self.id_key = Some(store.device_id_key(self.device_id).await?);
        }
        Ok(self.id_key.flatten().is_some_and(|key| id_made_with(doc_id.as_uuid(), &key)))
    }
}

/// What an author may do with a document, decided from the stored document and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Stored, and the author's collector's: the author may change it.
    Own,
    /// Not stored, and the author may create it.
    New,
    /// Another collector's, or an id made for another phone: answered exactly like a document that does not exist,
    /// and never written, so its existence does not leak.
    Foreign,
}

/// A change to a document, as its author describes it; the service does the rest.
pub trait Change {
    /// Why the change may be refused (the sync: a `ProtocolError` the device hears).
    type Refusal;

    /// Whether the change may create the document. One that may not (a device asking for a document it does not
    /// have) is answered `Settled::Unavailable` when there is nothing stored the author may see.
    fn may_create(&self) -> bool;

    /// Whether the change brings anything to write. One that does is refused as `Settled::Unavailable` on a document
    /// the author may not write; one that does not is answered as for a new document, and nothing is kept.
    fn brings_changes(&self) -> bool;

    /// Gets ready to change a document the author has stored (the sync: resumes the device's sync state).
    fn prepare(&mut self, doc_id: DocumentId) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Loads `stored` (or starts a new document) with `actor` as its actor, and applies the change. Nothing of a
    /// document over the limits may be unpacked: the change checks them before loading.
    fn apply(
        &mut self,
        doc_id: DocumentId,
        stored: Option<StoredDocument>,
        actor: ActorId,
    ) -> impl Future<Output = anyhow::Result<Result<Changed, Self::Refusal>>> + Send;
}

/// A document with a change applied, and its heads before, so the service can tell whether anything changed and
/// save only the new changes.
pub struct Changed {
    pub doc: AutoCommit,
    pub heads_before: Vec<ChangeHash>,
}

/// What a change came to.
pub enum Settled<R> {
    /// Nothing stored the author may see, and the change may not create it: answered like an unknown document.
    Unavailable,
    /// The change was refused; nothing was stored.
    Refused(R),
    /// The change was applied; `saved` when that made a new version, stored and committed. `doc` is the document as
    /// it now stands (for a foreign document, the change applied to nothing, which is never kept); boxed, as it is
    /// large and the other outcomes are small.
    Applied { doc: Box<AutoCommit>, access: Access, saved: bool },
}

impl Service {
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        atlas: SharedAtlas,
        writer: GroupCommit,
        doc_locks: Arc<DocLocks>,
        actor: ActorId,
    ) -> Service {
        Service { store, atlas, writer, doc_locks, actor }
    }

    /// The atlas changes are tagged by.
    #[must_use]
    pub fn atlas(&self) -> &SharedAtlas {
        &self.atlas
    }

    /// Holds the document `doc_id` against every change on this node (what offering a stored document to a device
    /// reads under).
    pub async fn lock(&self, doc_id: DocumentId) -> DocGuard<'_> {
        self.doc_locks.lock(doc_id).await
    }

    /// Applies `author`'s change to the document `doc_id`: load → authorise → apply → decide → save, again while
    /// another writer saves first or a boundary generation arrives. Serialised per document on this node; the
    /// store's version check catches a writer on another node. Returns with the document's lock, held until the
    /// caller drops it, so the caller answers from the document before anyone else changes it.
    ///
    /// # Errors
    /// The store fails, the document cannot be loaded or decided, or it kept changing for every attempt.
    pub async fn apply<C>(
        &self,
        author: &mut Author,
        doc_id: DocumentId,
        change: &mut C,
    ) -> anyhow::Result<(Settled<C::Refusal>, DocGuard<'_>)>
    where
        C: Change + Send,
        C::Refusal: Send,
    {
        let lock = self.doc_locks.lock(doc_id).await;
        let settled = self.until_saved(doc_id, &mut OnDocument { service: self, author, doc_id, change }).await?;
        Ok((settled, lock))
    }

    /// Writes the published document `doc_id` (one the server writes and every device reads) through the same
    /// loop: load, `change` (which says whether it changed anything), save against the version loaded. Whether it
    /// wrote.
    ///
    /// # Errors
    /// The store fails, the stored document cannot be loaded, `change` fails, or the document kept changing for
    /// every attempt.
    pub async fn publish<F>(&self, doc_id: DocumentId, change: F) -> anyhow::Result<bool>
    where
        F: FnMut(&mut AutoCommit) -> anyhow::Result<bool> + Send,
    {
        let mut attempt = OnPublished { store: self.store.as_ref(), actor: &self.actor, doc_id, change };
        self.until_saved(doc_id, &mut attempt).await
    }

    /// Runs `attempt` until it is not beaten to the save: another writer saving first sends it round again (loading
    /// what that writer saved), and so does a boundary generation added since the atlas was loaded (reloading it).
    async fn until_saved<A: Attempt + Send>(&self, doc_id: DocumentId, attempt: &mut A) -> anyhow::Result<A::Output> {
        for _attempt in 0..ATTEMPTS {
            match attempt.once().await? {
                Ok(output) => return Ok(output),
                Err(SaveError::Conflict) => {
                    tracing::debug!(%doc_id, "another writer saved first; merging and trying again");
                }
                Err(SaveError::StaleBoundaries) => {
                    tracing::info!(%doc_id, "a boundary generation was added; reloading and tagging again");
                    self.atlas.refresh(self.store.as_ref()).await?;
                }
                Err(SaveError::Database(error)) => return Err(error),
            }
        }
        anyhow::bail!("document {doc_id} kept changing under us")
    }

    /// Whether the server decided, when it last stored the insight, that it is withdrawn: the stored decision, not
    /// the stored document's flag, which a later change may have set back to false.
    async fn stored_withdrawn(&self, doc_id: DocumentId) -> anyhow::Result<bool> {
        let row = self.store.insight(doc_id.as_uuid()).await?;
        Ok(row.is_some_and(|row| row.outcome == Outcome::Withdrawn))
    }
}

/// One go at a change: load, change, save. `Ok(Err(_))` is a save that lost (`until_saved` decides what next).
trait Attempt {
    type Output;

    fn once(&mut self) -> impl Future<Output = anyhow::Result<Result<Self::Output, SaveError>>> + Send;
}

/// An author's change to an insight document.
struct OnDocument<'a, C> {
    service: &'a Service,
    author: &'a mut Author,
    doc_id: DocumentId,
    change: &'a mut C,
}

impl<C> Attempt for OnDocument<'_, C>
where
    C: Change + Send,
    C::Refusal: Send,
{
    type Output = Settled<C::Refusal>;

    async fn once(&mut self) -> anyhow::Result<Result<Settled<C::Refusal>, SaveError>> {
        let OnDocument { service, ref mut author, doc_id, ref mut change } = *self;
        let stored = service.store.load_document(doc_id).await?;
        // A document owned by someone else is answered exactly like one that does not exist: a change that may not
        // create it, or one that brings no changes, gets what an unknown id gets. Changes to it are refused, as a
        // document that does not exist and cannot be created (docs/sync-protocol.md, "Who may write a document").
        // So is a new document under an id made for another phone: it is not this device's to create.
        let access = match &stored {
            Some(stored) if stored.collector_id == author.collector_id => Access::Own,
            Some(_) => Access::Foreign,
            None if author.may_create(service.store.as_ref(), doc_id).await? => Access::New,
            None => Access::Foreign,
        };
        let stored = stored.filter(|_| access == Access::Own);
        if stored.is_none() && (!change.may_create() || (access == Access::Foreign && change.brings_changes())) {
            return Ok(Ok(Settled::Unavailable));
        }
        let (expected_version, n_chunks) =
            stored.as_ref().map_or((None, 0), |stored| (Some(stored.version), stored.n_chunks));
        // Withdrawal is final: once stored withdrawn, no later change counts the insight again.
        let withdrawn_before = stored.is_some() && service.stored_withdrawn(doc_id).await?;
        if stored.is_some() {
            change.prepare(doc_id).await?;
        }
        let Changed { mut doc, heads_before } = match change.apply(doc_id, stored, service.actor.clone()).await? {
            Ok(changed) => changed,
            Err(refusal) => return Ok(Ok(Settled::Refused(refusal))),
        };
        let saved = doc.get_heads() != heads_before && access != Access::Foreign;
        if saved {
            let now = OffsetDateTime::now_utc();
            let postcode_centroid = match postcode_of(&doc) {
                Some(postcode) if !withdrawn_before => {
                    service.store.postcode_centroid(&normalise_postcode(&postcode)).await?
                }
                _ => None,
            };
            let atlas = service.atlas.get();
            let first_write = expected_version.is_none();
            let (decided_doc, decision, bytes) = document_work(move || {
                let decision = if withdrawn_before {
                    withdrawn(doc_id, now)
                } else {
                    decide(&doc, doc_id, &atlas, postcode_centroid, now)
                };
                write_server_record(&mut doc, &decision.record)?;
                // Append only the new changes; fold everything into one snapshot when the chunks pile up.
                let bytes = if first_write || n_chunks + 1 >= COMPACT_AT_CHUNKS {
                    DocumentBytes::Snapshot(doc.save())
                } else {
                    DocumentBytes::Changes(doc.save_after(&heads_before))
                };
                anyhow::Ok((doc, decision, bytes))
            })
            .await??;
            doc = decided_doc;
            let write = DocumentWrite {
                doc_id,
                collector_id: author.collector_id,
                device_id: author.device_id,
                writer: author.writer,
                bytes,
                expected_version,
                insight: decision.row,
            };
            if let Err(lost) = service.writer.save(write).await {
                return Ok(Err(lost));
            }
        }
        Ok(Ok(Settled::Applied { doc: Box::new(doc), access, saved }))
    }
}

/// The server's change to a published document.
struct OnPublished<'a, F> {
    store: &'a dyn Store,
    actor: &'a ActorId,
    doc_id: DocumentId,
    change: F,
}

impl<F> Attempt for OnPublished<'_, F>
where
    F: FnMut(&mut AutoCommit) -> anyhow::Result<bool> + Send,
{
    type Output = bool;

    async fn once(&mut self) -> anyhow::Result<Result<bool, SaveError>> {
        let stored = self.store.load_published(self.doc_id).await?;
        let (mut doc, version) = match &stored {
            Some((bytes, version)) => {
                (AutoCommit::load(bytes).context("loading a published document")?, Some(*version))
            }
            None => (AutoCommit::new(), None),
        };
        doc.set_actor(self.actor.clone());
        if !(self.change)(&mut doc)? {
            return Ok(Ok(false));
        }
        // A published document carries no tags, so its save is never stale; another node publishing first is.
        Ok(self.store.save_published(self.doc_id, doc.save(), version).await.map(|()| true))
    }
}

/// Loading, applying, deciding and saving an Automerge document is CPU work: it runs on the blocking pool, at most
/// one per core at once, so the async workers keep serving other connections (and `/healthz`) whatever a device
/// sends.
static DOCUMENT_WORK: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
});

/// Runs document work off the async workers, in the current span.
///
/// # Errors
/// The work panicked.
pub async fn document_work<T, F>(work: F) -> anyhow::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _permit = DOCUMENT_WORK.acquire().await.context("the document work pool is closed")?;
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        work()
    })
    .await
    .context("document work failed")
}

/// Per-document locks, so two connections of one collector never interleave a load and a save of one document.
/// Entries are dropped as soon as nobody holds them, so the map stays as small as the work in flight.
#[derive(Debug, Default)]
pub struct DocLocks {
    locks: Mutex<HashMap<DocumentId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a document is being processed.
pub struct DocGuard<'a> {
    locks: &'a DocLocks,
    doc_id: DocumentId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl DocLocks {
    pub async fn lock(&self, doc_id: DocumentId) -> DocGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().expect("doc lock map poisoned");
            locks.entry(doc_id).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        DocGuard { locks: self, doc_id, guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().expect("doc lock map poisoned").len()
    }
}

impl Drop for DocGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().expect("doc lock map poisoned");
        drop(self.guard.take());
        if locks.get(&self.doc_id).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            locks.remove(&self.doc_id);
        }
    }
}

/// The actor this server process writes its records as. One per process: two nodes never share an actor.
#[must_use]
pub fn process_actor() -> ActorId {
    ActorId::from(Uuid::new_v4().as_bytes().as_slice())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use grapevine_sync_proto::automerge::transaction::Transactable;
    use grapevine_sync_proto::automerge::ReadDoc;
    use grapevine_sync_proto::document::{write_insight, write_withdrawn};
    use grapevine_sync_proto::{Channel, Insight, Location};

    use super::*;
    use crate::geo::atlas::{Atlas, DEFAULT_SET};

    /// A change made on the server, with no sync session: what erasure or re-processing would bring. The service
    /// needs nothing of the transport.
    struct Edit<F>(F);

    impl<F: FnMut(&mut AutoCommit) + Send> Change for Edit<F> {
        type Refusal = Infallible;

        fn may_create(&self) -> bool {
            true
        }

        fn brings_changes(&self) -> bool {
            true
        }

        async fn prepare(&mut self, _doc_id: DocumentId) -> anyhow::Result<()> {
            Ok(())
        }

        async fn apply(
            &mut self,
            _doc_id: DocumentId,
            stored: Option<StoredDocument>,
            actor: ActorId,
        ) -> anyhow::Result<Result<Changed, Infallible>> {
            let mut doc = match stored {
                Some(stored) => AutoCommit::load(&stored.bytes)?,
                None => AutoCommit::new(),
            };
            doc.set_actor(actor);
            let heads_before = doc.get_heads();
            (self.0)(&mut doc);
            Ok(Ok(Changed { doc, heads_before }))
        }
    }

    /// What the service settled on, without the document.
    fn summary<R>(settled: &Settled<R>) -> Option<(Access, bool)> {
        match settled {
            Settled::Applied { access, saved, .. } => Some((*access, *saved)),
            Settled::Unavailable | Settled::Refused(_) => None,
        }
    }

    #[tokio::test]
    async fn a_change_from_outside_the_sync_is_authorised_decided_and_kept_withdrawn() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
        let atlas = SharedAtlas::new(Atlas::load(store.as_ref(), DEFAULT_SET).await.unwrap());
        let writer = GroupCommit::start(store.clone());
        let service = Service::new(store.clone(), atlas, writer, Arc::default(), process_actor());
        let owner = store.add_device("owner", "owner-token-hash", None).await.unwrap();
        let other = store.add_device("other", "other-token-hash", None).await.unwrap();
        let (mut owner, mut other) =
            (Author::device(owner.device_id, owner.collector_id), Author::device(other.device_id, other.collector_id));
        let insight = Insight {
            id: Uuid::new_v4(),
            captured_at: OffsetDateTime::now_utc() - time::Duration::hours(1),
            campaign: "community-safety".into(),
            category: "asb".into(),
            text: "Fireworks thrown at the bus shelter".into(),
            feeling_safe: Some(2),
            location: Location::Area { code: "E05008714".into() },
            channel: Channel::YouthWorker,
        };
        let doc_id = DocumentId::for_insight(insight.id);
        let outcome = || async { store.insight(insight.id).await.unwrap().map(|row| row.outcome) };

        let write = |doc: &mut AutoCommit| write_insight(doc, &insight).unwrap();
        let (settled, _) = service.apply(&mut owner, doc_id, &mut Edit(write)).await.unwrap();
        assert_eq!(summary(&settled), Some((Access::New, true)));
        assert_eq!(outcome().await, Some(Outcome::Filed { area_code: "E05008714".into() }));

        // Another collector's author is answered as if the document did not exist, and changes nothing.
        let (settled, _) = service.apply(&mut other, doc_id, &mut Edit(write_withdrawn_now)).await.unwrap();
        assert!(matches!(settled, Settled::Unavailable));
        assert_eq!(outcome().await, Some(Outcome::Filed { area_code: "E05008714".into() }));

        // Nothing changed, nothing saved.
        let (settled, _) = service.apply(&mut owner, doc_id, &mut Edit(|_: &mut AutoCommit| {})).await.unwrap();
        assert_eq!(summary(&settled), Some((Access::Own, false)));

        // Withdrawal is final: the stored decision counts, not the document's flag set back.
        let (settled, _) = service.apply(&mut owner, doc_id, &mut Edit(write_withdrawn_now)).await.unwrap();
        assert_eq!(summary(&settled), Some((Access::Own, true)));
        assert_eq!(outcome().await, Some(Outcome::Withdrawn));
        let take_back = |doc: &mut AutoCommit| {
            doc.put(grapevine_sync_proto::automerge::ROOT, "withdrawn", false).unwrap();
        };
        let (settled, _) = service.apply(&mut owner, doc_id, &mut Edit(take_back)).await.unwrap();
        assert_eq!(summary(&settled), Some((Access::Own, true)));
        assert_eq!(outcome().await, Some(Outcome::Withdrawn));
    }

    fn write_withdrawn_now(doc: &mut AutoCommit) {
        write_withdrawn(doc).unwrap();
    }

    #[tokio::test]
    async fn publishing_writes_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
        let atlas = SharedAtlas::new(Atlas::load(store.as_ref(), DEFAULT_SET).await.unwrap());
        let service =
            Service::new(store.clone(), atlas, GroupCommit::start(store.clone()), Arc::default(), process_actor());
        let doc_id = DocumentId::random();
        let say = |text: &'static str| {
            move |doc: &mut AutoCommit| {
                let root = grapevine_sync_proto::automerge::ROOT;
                let same =
                    matches!(doc.get(root.clone(), "says"), Ok(Some((value, _))) if value.to_str() == Some(text));
                if !same {
                    doc.put(root, "says", text)?;
                }
                Ok(!same)
            }
        };
        assert!(service.publish(doc_id, say("hello")).await.unwrap());
        assert!(!service.publish(doc_id, say("hello")).await.unwrap(), "the same again writes nothing");
        assert!(service.publish(doc_id, say("goodbye")).await.unwrap());
        let (bytes, _) = store.load_published(doc_id).await.unwrap().unwrap();
        let published = AutoCommit::load(&bytes).unwrap();
        let says = published.get(grapevine_sync_proto::automerge::ROOT, "says").unwrap().unwrap().0;
        assert_eq!(says.to_str(), Some("goodbye"));
    }

    #[tokio::test]
    async fn doc_locks_serialise_one_document_and_clean_up() {
        let locks = Arc::new(DocLocks::default());
        let doc_id = DocumentId::random();
        let first = locks.lock(doc_id).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock(doc_id).await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the second holder waits for the first");
        let _other = locks.lock(DocumentId::random()).await;
        drop(first);
        waiter.await.unwrap();
        drop(_other);
        assert_eq!(locks.len(), 0);
    }
}
