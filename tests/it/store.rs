//! The store's own guarantees, on both backends: versioned writes and compaction.

use grapevine_server::store::{AreaTag, DayRange, DocumentBytes, DocumentWrite, InsightRow, Outcome, SaveError};
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

/// An insight row filed under `area` (or rejected, for `None`) on a day of 2026.
fn filed(doc_id: DocumentId, area: Option<&str>, day: u8, category: &str, feeling_safe: u8) -> InsightRow {
    let outcome = match area {
        Some(area) => Outcome::Filed { area_code: area.into() },
        None => Outcome::Rejected { code: "insight_malformed".into(), message: "test".into() },
    };
    let mut row = InsightRow::without_content(doc_id.as_uuid(), outcome, time::OffsetDateTime::now_utc());
    row.captured_at = Some(time::macros::datetime!(2026-03-01 10:00 +00:00) + time::Duration::days(i64::from(day) - 1));
    row.category = Some(category.into());
    row.feeling_safe = Some(feeling_safe);
    row.channel = Some("pupil".into());
    if let Some(area) = area {
        row.tags = vec![AreaTag { generation_id: 1, area_code: area.into(), near_boundary: false }];
    }
    row
}

/// Totals per area on the bundled generation, over everything.
async fn totals(store: &dyn grapevine_server::store::Store) -> Vec<(String, i64)> {
    let rollups = store.rollup(1, DayRange::default(), None, false, false).await.unwrap();
    rollups.into_iter().map(|rollup| (rollup.area_code, rollup.all.n)).collect()
}

/// A batch moves many insights into, between and out of roll-up cells in one transaction; the counts match a count
/// of the rows themselves, emptied cells are gone, and a batch naming one document twice is refused whole.
async fn a_batch_moves_the_roll_ups_exactly_like_single_writes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let device = grapevine_server::auth::issue_device(app.store.as_ref(), "importer", None).await.unwrap().0;
    let (collector, device_id) = (device.collector_id, device.device_id);
    let areas = ["E05008737", "E05008738", "E05008739"];
    let docs: Vec<DocumentId> = (0..60).map(|_| DocumentId::random()).collect();
    let first: Vec<DocumentWrite> = docs
        .iter()
        .enumerate()
        .map(|(i, &doc_id)| {
            let mut write =
                write(doc_id, collector, device_id, DocumentBytes::Snapshot(AutoCommit::new().save()), None);
            write.insight = filed(doc_id, Some(areas[i % 3]), u8::try_from(1 + i % 2).unwrap(), "drugs", 3);
            write
        })
        .collect();
    app.store.save_documents(first).await.unwrap();
    assert_eq!(
        totals(app.store.as_ref()).await,
        vec![(areas[0].into(), 20), (areas[1].into(), 20), (areas[2].into(), 20)]
    );

    // Second batch: every insight of the first area moves to the second, every one of the third is rejected.
    let second: Vec<DocumentWrite> = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(i, &doc_id)| {
            let changes = DocumentBytes::Changes(Vec::new());
            let mut write = write(doc_id, collector, device_id, changes, Some(1));
            let area = if i % 3 == 0 { Some(areas[1]) } else { None };
            write.insight = filed(doc_id, area, u8::try_from(1 + i % 2).unwrap(), "drugs", 5);
            write
        })
        .collect();
    app.store.save_documents(second).await.unwrap();
    assert_eq!(
        totals(app.store.as_ref()).await,
        vec![(areas[1].into(), 40)],
        "emptied areas are pruned, not left at zero"
    );
    let year = DayRange::default();
    let counts = app.store.rollup(1, year, Some(areas[1]), true, true).await.unwrap();
    let all = counts[0].all;
    assert_eq!((all.n, all.feeling_safe_n, all.feeling_safe_sum, all.channels[2]), (40, 40, 20 * 3 + 20 * 5, 40));
    assert_eq!(counts[0].contributors, Some(1), "one collector wrote them all");
    assert!(app.store.rollup(1, year, Some(areas[0]), true, true).await.unwrap().is_empty());
    let per_category = app.store.category_counts(1, year, None).await.unwrap();
    assert_eq!(
        per_category
            .iter()
            .map(|count| (count.area_code.as_str(), count.category.as_str(), count.n))
            .collect::<Vec<_>>(),
        vec![(areas[1], "drugs", 40)],
        "the priorities counts agree, with no all-categories row and no emptied area"
    );

    // The same document twice in one save: refused, and nothing of the batch is written.
    let again = docs[1];
    let fresh = DocumentId::random();
    let twice = vec![
        write(fresh, collector, device_id, DocumentBytes::Snapshot(AutoCommit::new().save()), None),
        write(again, collector, device_id, DocumentBytes::Changes(Vec::new()), Some(1)),
        write(again, collector, device_id, DocumentBytes::Changes(Vec::new()), Some(1)),
    ];
    assert!(matches!(app.store.save_documents(twice).await, Err(SaveError::Database(_))));
    assert!(app.store.load_document(fresh).await.unwrap().is_none());
    assert_eq!(app.store.load_document(again).await.unwrap().unwrap().version, 1);

    // A stale version anywhere in a batch refuses the whole batch.
    let fresh = DocumentId::random();
    let stale = vec![
        write(fresh, collector, device_id, DocumentBytes::Snapshot(AutoCommit::new().save()), None),
        write(docs[0], collector, device_id, DocumentBytes::Changes(Vec::new()), Some(1)),
    ];
    assert!(matches!(app.store.save_documents(stale).await, Err(SaveError::Conflict)));
    assert!(app.store.load_document(fresh).await.unwrap().is_none());
    assert_eq!(totals(app.store.as_ref()).await, vec![(areas[1].into(), 40)]);
}

on_both_backends!(a_batch_moves_the_roll_ups_exactly_like_single_writes);
