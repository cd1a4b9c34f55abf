//! The store's own guarantees, on both backends: versioned writes and compaction.

use grapevine_server::store::{AreaTag, DayRange, DocumentBytes, DocumentWrite, InsightRow, Outcome, SaveError};
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{AutoCommit, ReadDoc, ROOT};
use grapevine_sync_proto::{DocumentId, ErrorCode};
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
            Outcome::Rejected { code: ErrorCode::InsightMalformed, message: "test".into() },
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
        None => Outcome::Rejected { code: ErrorCode::InsightMalformed, message: "test".into() },
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

/// Runs one statement on the test's database, beside the store (to stage what a migration leaves behind).
async fn execute_raw(backend: Backend, database_url: &str, statement: &str) {
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(database_url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// Distinct contributors are exact over any period, whatever number of cells tiles it: collectors arrive in a cell's
/// set with their first insight and leave it with their last. Writers racing into the same new cells (several
/// PostgreSQL transactions at once) all count. And roll-ups a migration left to be rebuilt come back the same from
/// the stored tags.
async fn contributor_sets_are_exact_under_races_and_survive_a_rebuild(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let area = "E05008737";
    let mut collectors = Vec::new();
    for i in 0..6 {
        collectors
            .push(grapevine_server::auth::issue_device(app.store.as_ref(), &format!("c{i}"), None).await.unwrap().0);
    }
    // Every collector files one insight on 1 March and one on 20 April, all at once: twelve transactions racing
    // into the same cells (day, week, month, quarter, year; the category and all categories).
    let mut racing = Vec::new();
    for (i, device) in collectors.iter().enumerate() {
        for day in [1, 51] {
            let store = app.store.clone();
            let (collector, device_id) = (device.collector_id, device.device_id);
            let category = if i % 2 == 0 { "drugs" } else { "road-safety" };
            racing.push(tokio::spawn(async move {
                let doc_id = DocumentId::random();
                let mut write =
                    write(doc_id, collector, device_id, DocumentBytes::Snapshot(AutoCommit::new().save()), None);
                write.insight = filed(doc_id, Some(area), day, category, 4);
                // A lost race is retried, as the sync path does.
                loop {
                    match store.save_documents(vec![write.clone()]).await {
                        Err(SaveError::Conflict) => tokio::task::yield_now().await,
                        result => break result.map(|()| doc_id),
                    }
                }
            }));
        }
    }
    let mut docs = Vec::new();
    for task in racing {
        docs.push(task.await.unwrap().unwrap());
    }
    // 1 March to 21 April is tiled by a month, weeks and days: a union of many cells' sets.
    let ragged =
        DayRange { from: Some(time::macros::date!(2026 - 03 - 01)), to: Some(time::macros::date!(2026 - 04 - 22)) };
    let contributors = |rollups: &[grapevine_server::store::AreaRollup]| {
        let mut counts = vec![("*".to_owned(), rollups[0].contributors)];
        counts.extend(rollups[0].by_category.iter().map(|category| (category.category.clone(), category.contributors)));
        counts
    };
    let before = app.store.rollup(1, ragged, Some(area), true, true).await.unwrap();
    assert_eq!(before[0].all.n, 12, "every racing write counted");
    assert_eq!(
        contributors(&before),
        vec![("*".into(), Some(6)), ("drugs".into(), Some(3)), ("road-safety".into(), Some(3))]
    );

    // The first collector's two insights are rejected on edit: it leaves every set; the others stay.
    let (first, first_device) = (collectors[0].collector_id, collectors[0].device_id);
    let edits: Vec<DocumentWrite> = docs[..2]
        .iter()
        .map(|&doc_id| {
            let mut edit = write(doc_id, first, first_device, DocumentBytes::Changes(Vec::new()), Some(1));
            edit.insight = filed(doc_id, None, 1, "drugs", 4);
            edit
        })
        .collect();
    app.store.save_documents(edits).await.unwrap();
    let after = app.store.rollup(1, ragged, Some(area), true, true).await.unwrap();
    assert_eq!(after[0].all.n, 10);
    assert_eq!(
        contributors(&after),
        vec![("*".into(), Some(5)), ("drugs".into(), Some(2)), ("road-safety".into(), Some(3))]
    );
    let every_area = app.store.rollup(1, ragged, None, false, true).await.unwrap();
    assert_eq!((every_area.len(), every_area[0].contributors), (1, Some(5)));

    // What migration 0008 leaves: no roll-ups, the generation pending. Opening the store rebuilds it.
    let everything = app.store.rollup(1, DayRange::default(), None, true, true).await.unwrap();
    execute_raw(backend, &app.database_url, "DELETE FROM rollups").await;
    execute_raw(backend, &app.database_url, "INSERT INTO rollups_pending (generation_id) VALUES (1)").await;
    assert!(app.store.rollup(1, ragged, Some(area), true, true).await.unwrap().is_empty());
    let reopened = grapevine_server::store::open(&app.database_url).await.unwrap();
    assert_eq!(reopened.rollup(1, ragged, Some(area), true, true).await.unwrap(), after);
    assert_eq!(reopened.rollup(1, DayRange::default(), None, true, true).await.unwrap(), everything);
    let again = grapevine_server::store::open(&app.database_url).await.unwrap();
    assert_eq!(again.rollup(1, ragged, Some(area), true, true).await.unwrap(), after, "a rebuild happens once");
}

on_both_backends!(contributor_sets_are_exact_under_races_and_survive_a_rebuild);

/// Migration 0009 partitions a PostgreSQL database's tags and roll-ups by generation: a database written at 0008
/// opens with every tag moved into its generation's partition and the roll-ups rebuilt there from the tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partitioning_migration_keeps_every_tag_and_rebuilds_the_roll_ups() {
    let dir = tempfile::tempdir().unwrap();
    let (url, name) = grapevine_tests::fresh_database(Backend::Postgres, &dir).await;
    let _drop = grapevine_tests::DropDatabase(name);
    // The migrations as released up to 0008, run by a migrator that knows no later ones.
    let released = dir.path().join("migrations");
    std::fs::create_dir(&released).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/migrations/postgres");
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file.get(..4).and_then(|number| number.parse::<i64>().ok()).is_some_and(|number| number <= 8) {
            std::fs::copy(&path, released.join(file)).unwrap();
        }
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(released.as_path()).await.unwrap().run(&pool).await.unwrap();
    let generation: i64 = sqlx::query_scalar(
        "INSERT INTO boundary_generations (set_name, generation, source) VALUES ('wards', 1, 'bundled') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let collectors = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    for (i, collector) in collectors.iter().enumerate() {
        sqlx::query("INSERT INTO collectors (id, label) VALUES ($1, 'barber')")
            .bind(collector)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO devices (id, collector_id, label, token_hash) VALUES ($1, $2, 'phone', $3)")
            .bind(uuid::Uuid::new_v4())
            .bind(collector)
            .bind(format!("hash {i}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    // Three insights by two collectors in one ward, over two days.
    for (i, (collector, day)) in [(0, 20), (0, 21), (1, 21)].into_iter().enumerate() {
        let (id, doc_id) = (uuid::Uuid::new_v4(), format!("doc{i}"));
        sqlx::query("INSERT INTO documents (doc_id, collector_id, version) VALUES ($1, $2, 1)")
            .bind(&doc_id)
            .bind(collectors[collector])
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_day, category, feeling_safe, channel,
                 status, area_code, processed_at)
             SELECT $1, $2, $3, d.id, $4, 'drugs', 2, 'staff', 'filed', 'E05008737', now()
             FROM devices AS d WHERE d.collector_id = $3",
        )
        .bind(id)
        .bind(&doc_id)
        .bind(collectors[collector])
        .bind(time::Date::from_calendar_date(2026, time::Month::November, day).unwrap())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO insight_areas VALUES ($1, $2, 'E05008737', false)")
            .bind(id)
            .bind(generation)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = grapevine_server::store::open(&url).await.unwrap();
    let days =
        DayRange { from: Some(time::macros::date!(2026 - 11 - 20)), to: Some(time::macros::date!(2026 - 11 - 22)) };
    let rolled = store.rollup(generation, days, Some("E05008737"), true, true).await.unwrap();
    assert_eq!((rolled[0].all.n, rolled[0].all.feeling_safe_sum, rolled[0].contributors), (3, 6, Some(2)));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (partitioned_tags, pending): (i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT COUNT(*) FROM insight_areas_g{generation}), (SELECT COUNT(*) FROM rollups_pending)"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((partitioned_tags, pending), (3, 0), "every tag in its generation's partition, nothing pending");
    let partitioned: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relkind = 'p' AND relname IN ('rollups', 'insight_areas') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(partitioned, vec!["insight_areas", "rollups"]);
    pool.close().await;
}

/// A re-tag builds the new generation whole (on PostgreSQL through binary `COPY`, whose dates count days from
/// 2000-01-01): every cell comes out as the incremental writes made it, days before 2000 included.
async fn a_new_generation_rolls_up_exactly_like_the_incremental_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let area = "E05008737";
    let mut writes = Vec::new();
    for (i, (year, month, day, category)) in
        [(1999, 12, 31, "drugs"), (2000, 1, 1, "drugs"), (2026, 2, 28, "road-safety"), (2026, 3, 1, "drugs")]
            .into_iter()
            .enumerate()
    {
        let device = grapevine_server::auth::issue_device(app.store.as_ref(), &format!("c{i}"), None).await.unwrap().0;
        let doc_id = DocumentId::random();
        let mut write = write(
            doc_id,
            device.collector_id,
            device.device_id,
            DocumentBytes::Snapshot(AutoCommit::new().save()),
            None,
        );
        write.insight = filed(doc_id, Some(area), 1, category, 3);
        let date = time::Date::from_calendar_date(year, time::Month::try_from(month).unwrap(), day).unwrap();
        write.insight.captured_at = Some(date.with_hms(12, 0, 0).unwrap().assume_utc());
        write.insight.tag_point = Some((53.0, -2.17));
        writes.push(write);
    }
    app.store.save_documents(writes).await.unwrap();

    let everywhere_one_area = |_: &grapevine_server::store::TaggableInsight| (area.to_owned(), false);
    let areas = vec![grapevine_server::store::StoredArea {
        code: area.into(),
        name: "Joiner's Square".into(),
        geometry: r#"{"type":"Polygon","coordinates":[[[-3,52],[-1,52],[-1,54],[-3,54],[-3,52]]]}"#.into(),
    }];
    let info =
        app.store.add_generation("wards", "test: the same ward again", areas, &everywhere_one_area).await.unwrap();
    for kind in grapevine_server::store::rollup::PeriodKind::ALL {
        let old = app.store.series(1, area, kind, DayRange::default()).await.unwrap();
        let new = app.store.series(info.id, area, kind, DayRange::default()).await.unwrap();
        assert_eq!(old, new, "{kind:?} cells");
    }
    let days = app.store.series(info.id, area, grapevine_server::store::rollup::PeriodKind::Day, DayRange::default());
    let starts: Vec<time::Date> = days.await.unwrap().iter().map(|point| point.period_start).collect();
    assert_eq!(starts[0], time::macros::date!(1999 - 12 - 31), "a day before 2000 survives the copy");
    assert_eq!(starts.len(), 4);
    let by_category = app.store.rollup(info.id, DayRange::default(), Some(area), true, true).await.unwrap();
    assert_eq!(by_category, app.store.rollup(1, DayRange::default(), Some(area), true, true).await.unwrap());
    assert_eq!(by_category[0].contributors, Some(4));
}

on_both_backends!(a_new_generation_rolls_up_exactly_like_the_incremental_one);
