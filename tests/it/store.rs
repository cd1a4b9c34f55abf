//! The store's own guarantees, on both backends: versioned writes and compaction.

use grapevine_server::store::{DocumentBytes, DocumentWrite, InsightRow, Outcome, SaveError};
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{AutoCommit, ReadDoc, ROOT};
use grapevine_sync_proto::DocumentId;
use grapevine_tests::{Backend, TestApp};

fn write(
    doc_id: DocumentId,
    collector_id: uuid::Uuid,
    device_id: uuid::Uuid,
    bytes: DocumentBytes,
    expected: Option<i64>,
) -> DocumentWrite {
    DocumentWrite {
        doc_id,
        collector_id,
        device_id,
        writer: uuid::Uuid::new_v4(),
        bytes,
        expected_version: expected,
        insight: InsightRow::without_content(
            doc_id.as_uuid(),
            Outcome::Rejected { code: "insight_malformed".into(), message: "test".into() },
            time::OffsetDateTime::now_utc(),
        ),
    }
}

async fn a_stale_write_is_refused_and_chunks_add_up_to_the_document(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let device = grapevine_server::auth::issue_device(app.store.as_ref(), "writer", None).await.unwrap().0;
    let doc_id = DocumentId::random();
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "n", 0_i64).unwrap();
    let (collector, device_id) = (device.collector_id, device.device_id);
    app.store
        .save_document(write(doc_id, collector, device_id, DocumentBytes::Snapshot(doc.save()), None))
        .await
        .unwrap();
    let again =
        app.store.save_document(write(doc_id, collector, device_id, DocumentBytes::Snapshot(doc.save()), None)).await;
    assert!(matches!(again, Err(SaveError::Conflict)), "a second creation of one document is a conflict");

    // Appended changes, then a stale writer, then a compaction.
    for n in 1..=3_i64 {
        let stored = app.store.load_document(doc_id).await.unwrap().unwrap();
        let mut doc = AutoCommit::load(&stored.bytes).unwrap();
        let heads = doc.get_heads();
        doc.put(ROOT, "n", n).unwrap();
        let changes = DocumentBytes::Changes(doc.save_after(&heads));
        app.store.save_document(write(doc_id, collector, device_id, changes, Some(stored.version))).await.unwrap();
    }
    let stored = app.store.load_document(doc_id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.n_chunks), (4, 4));
    let stale = write(doc_id, collector, device_id, DocumentBytes::Changes(Vec::new()), Some(stored.version - 1));
    assert!(matches!(app.store.save_document(stale).await, Err(SaveError::Conflict)));
    let mut doc = AutoCommit::load(&stored.bytes).unwrap();
    assert_eq!(doc.get(ROOT, "n").unwrap().unwrap().0.to_i64(), Some(3), "the chunks add up to the latest state");
    let compacted = DocumentBytes::Snapshot(doc.save());
    app.store.save_document(write(doc_id, collector, device_id, compacted, Some(stored.version))).await.unwrap();
    let after = app.store.load_document(doc_id).await.unwrap().unwrap();
    assert_eq!((after.version, after.n_chunks), (5, 1));
    let reloaded = AutoCommit::load(&after.bytes).unwrap();
    assert_eq!(reloaded.get_all(ROOT, "n").unwrap().len(), 1);
    assert_eq!(reloaded.get(ROOT, "n").unwrap().unwrap().0.to_i64(), Some(3), "compaction lost no change");
}

on_both_backends!(a_stale_write_is_refused_and_chunks_add_up_to_the_document);
