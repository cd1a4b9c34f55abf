//! The audit trail (docs/audit.md): appends make one hash chain that verifies; the database refuses to change or
//! remove an entry; an entry changed or removed behind the server's back (its trigger dropped first) is named by
//! `grapevine audit verify`, the real binary; two stores over one database appending at once keep one gap-free
//! chain; `grapevine audit list` filters by actor, action and time.

use std::sync::Arc;

use futures_util::TryStreamExt;
use grapevine_server::audit::{self, AuditEntry, AuditFilter, AuditOutcome, BrokenLink, NewAuditEntry, Verified};
use grapevine_server::store::{self, Store};
use grapevine_tests::{fresh_database, Backend, DropDatabase};
use serde_json::{json, Value};

use crate::command::{grapevine, stdout};

/// A fresh database with its store, and what keeps them alive until the test ends.
struct Trail {
    backend: Backend,
    database_url: String,
    store: Arc<dyn Store>,
    _drop_database: DropDatabase,
    _dir: tempfile::TempDir,
}

impl Trail {
    async fn new(backend: Backend) -> Trail {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, postgres_database) = fresh_database(backend, &dir).await;
        let store = store::open(&database_url).await.unwrap();
        Trail { backend, database_url, store, _drop_database: DropDatabase(postgres_database), _dir: dir }
    }

    async fn append(&self, actor: &str, action: &str) -> AuditEntry {
        self.store.append_audit(entry(actor, action)).await.unwrap()
    }

    async fn stored(&self, filter: AuditFilter) -> Vec<AuditEntry> {
        self.store.audit_entries(filter).try_collect().await.unwrap()
    }

    /// Runs one statement beside the store, as someone with the database's password would.
    async fn execute_raw(&self, statement: &str) -> Result<(), String> {
        use sqlx::Connection;
        let outcome = match self.backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&self.database_url).await.unwrap();
                sqlx::query(statement).execute(&mut connection).await.map(drop)
            }
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&self.database_url).await.unwrap();
                sqlx::query(statement).execute(&mut connection).await.map(drop)
            }
        };
        outcome.map_err(|error| error.to_string())
    }

    /// Drops the triggers that keep the table append-only: what someone covering their tracks does first.
    async fn drop_triggers(&self) {
        let statements: &[&str] = match self.backend {
            Backend::Sqlite => &["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
            Backend::Postgres => &["DROP TRIGGER audit_log_append_only ON audit_log"],
        };
        for statement in statements {
            self.execute_raw(statement).await.unwrap();
        }
    }

    /// `grapevine audit ARGS… --database-url URL`.
    fn audit(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["audit"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--database-url", &self.database_url]);
        grapevine(&all)
    }
}

fn entry(actor: &str, action: &str) -> NewAuditEntry {
    NewAuditEntry {
        actor: actor.into(),
        role: "admin".into(),
        action: action.into(),
        target: "E05008737".into(),
        outcome: AuditOutcome::Allowed,
        client_addr: Some("192.0.2.7".into()),
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        detail: json!({"filter": {"area": "E05008737", "since": "2026-01-01"}, "rows": 42}),
    }
}

fn stderr(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "expected a failure: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn appended_entries_make_a_chain_that_verifies_and_read_back_exactly(backend: Backend) {
    let trail = Trail::new(backend).await;
    assert_eq!(stdout(&trail.audit(&["verify"])).trim(), format!("intact: 0 entries; head hash {}", "0".repeat(64)));

    let mut appended = Vec::new();
    for (i, outcome) in [AuditOutcome::Allowed, AuditOutcome::Refused, AuditOutcome::Failed].into_iter().enumerate() {
        let mut new = entry(&format!("person{i}@example.org"), "insights.read");
        new.outcome = outcome;
        new.client_addr = (i != 1).then(|| "2001:db8::1".to_owned());
        new.detail = json!({"rows": i, "filter": {"categories": ["lighting", "youth"], "é": null}});
        appended.push(trail.store.append_audit(new).await.unwrap());
    }
    assert_eq!(appended.iter().map(|entry| entry.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(appended[0].prev_hash, audit::GENESIS_HASH);
    assert_eq!(appended[2].prev_hash, appended[1].hash);
    assert!(appended.windows(2).all(|pair| pair[0].at <= pair[1].at), "times never go back");
    assert_eq!(trail.stored(AuditFilter::default()).await, appended, "every field reads back as appended");
    assert_eq!(
        audit::verify_store(trail.store.as_ref()).await.unwrap(),
        Verified::Intact { n: 3, head: appended[2].hash }
    );
    let verified = stdout(&trail.audit(&["verify"]));
    assert_eq!(verified.trim(), format!("intact: 3 entries; head hash {}", audit::hex(&appended[2].hash)));
}

on_both_backends!(appended_entries_make_a_chain_that_verifies_and_read_back_exactly);

/// A detail that could not be hashed the same way twice (a fraction) is refused, and nothing is appended.
async fn an_entry_whose_detail_holds_a_fraction_is_refused_whole(backend: Backend) {
    let trail = Trail::new(backend).await;
    trail.append("a@example.org", "token.add").await;
    let mut new = entry("b@example.org", "insights.read");
    new.detail = json!({"within_km": 1.5});
    let error = format!("{:#}", trail.store.append_audit(new).await.unwrap_err());
    assert!(error.contains("fractional number (1.5)"), "{error}");
    assert_eq!(trail.stored(AuditFilter::default()).await.len(), 1);
    assert_eq!(trail.append("c@example.org", "token.add").await.seq, 2, "no seq was taken");
}

on_both_backends!(an_entry_whose_detail_holds_a_fraction_is_refused_whole);

async fn the_database_refuses_to_update_or_delete_an_entry(backend: Backend) {
    let trail = Trail::new(backend).await;
    for i in 0..3 {
        trail.append(&format!("person{i}@example.org"), "token.add").await;
    }
    let mut statements = vec![
        ("UPDATE audit_log SET outcome = 'allowed' WHERE seq = 2", "cannot be updated"),
        ("UPDATE audit_log SET hash = prev_hash", "cannot be updated"),
        ("DELETE FROM audit_log WHERE seq = 3", "cannot be deleted"),
        ("DELETE FROM audit_log", "cannot be deleted"),
    ];
    if backend == Backend::Postgres {
        statements.push(("TRUNCATE audit_log", "cannot be truncated"));
    }
    for (statement, refusal) in statements {
        let error = trail.execute_raw(statement).await.expect_err(statement);
        assert!(error.contains("audit_log is append-only") && error.contains(refusal), "{statement}: {error}");
    }
    assert_eq!(trail.stored(AuditFilter::default()).await.len(), 3);
    assert!(stdout(&trail.audit(&["verify"])).starts_with("intact: 3 entries"));
}

on_both_backends!(the_database_refuses_to_update_or_delete_an_entry);

async fn an_entry_edited_behind_the_servers_back_is_named_by_verify(backend: Backend) {
    let trail = Trail::new(backend).await;
    for i in 0..5 {
        trail.append(&format!("person{i}@example.org"), "insights.read").await;
    }
    trail.drop_triggers().await;
    trail.execute_raw("UPDATE audit_log SET actor = 'someone.else@example.org' WHERE seq = 3").await.unwrap();

    let refusal = stderr(&trail.audit(&["verify"]));
    assert!(refusal.contains("broken at entry 3: its fields do not give its hash"), "{refusal}");
    assert_eq!(
        audit::verify_store(trail.store.as_ref()).await.unwrap(),
        Verified::Broken { seq: 3, reason: BrokenLink::HashMismatch }
    );
}

on_both_backends!(an_entry_edited_behind_the_servers_back_is_named_by_verify);

/// Covering tracks with a recomputed hash moves the break to the next entry, whose `prev_hash` no longer matches.
async fn an_edited_entry_given_a_new_hash_breaks_the_link_to_the_next(backend: Backend) {
    let trail = Trail::new(backend).await;
    for i in 0..4 {
        trail.append(&format!("person{i}@example.org"), "insights.read").await;
    }
    let mut forged = trail.stored(AuditFilter::default()).await.remove(1);
    forged.outcome = AuditOutcome::Allowed;
    forged.target = "nothing to see".into();
    let hash = forged.compute_hash().unwrap();
    trail.drop_triggers().await;
    let hex = audit::hex(&hash);
    let literal = if backend == Backend::Postgres { format!("'\\x{hex}'::bytea") } else { format!("X'{hex}'") };
    trail
        .execute_raw(&format!("UPDATE audit_log SET target = 'nothing to see', hash = {literal} WHERE seq = 2"))
        .await
        .unwrap();
    let refusal = stderr(&trail.audit(&["verify"]));
    assert!(refusal.contains("broken at entry 3: its prev_hash is not the hash of the entry before it"), "{refusal}");
}

on_both_backends!(an_edited_entry_given_a_new_hash_breaks_the_link_to_the_next);

async fn a_deleted_middle_entry_is_named_by_verify(backend: Backend) {
    let trail = Trail::new(backend).await;
    for i in 0..5 {
        trail.append(&format!("person{i}@example.org"), "insights.export").await;
    }
    trail.drop_triggers().await;
    trail.execute_raw("DELETE FROM audit_log WHERE seq = 3").await.unwrap();
    let refusal = stderr(&trail.audit(&["verify"]));
    assert!(refusal.contains("broken at entry 3: the entry is missing (the next entry present is 4)"), "{refusal}");
}

on_both_backends!(a_deleted_middle_entry_is_named_by_verify);

/// Two stores over one database (two nodes over one PostgreSQL; two processes' pools over one SQLite file) appending
/// at once: every append gets its own seq, none is lost, and the chain verifies.
async fn two_stores_appending_at_once_keep_one_gap_free_chain(backend: Backend) {
    const EACH: usize = 100;
    let trail = Trail::new(backend).await;
    let other = store::open(&trail.database_url).await.unwrap();
    let mut nodes = Vec::new();
    for (node, store) in [("node-a", trail.store.clone()), ("node-b", other)] {
        nodes.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..EACH {
                seqs.push(store.append_audit(entry(node, "token.add")).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for node in nodes {
        let appended = node.await.unwrap();
        assert!(appended.windows(2).all(|pair| pair[0] < pair[1]), "one node's appends follow each other");
        seqs.extend(appended);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=2 * EACH as i64).collect::<Vec<_>>(), "no seq taken twice, none skipped");
    let stored = trail.stored(AuditFilter::default()).await;
    for node in ["node-a", "node-b"] {
        assert_eq!(stored.iter().filter(|entry| entry.actor == node).count(), EACH);
    }
    assert!(stdout(&trail.audit(&["verify"])).starts_with(&format!("intact: {} entries", 2 * EACH)));
}

on_both_backends!(two_stores_appending_at_once_keep_one_gap_free_chain);

/// The seqs `audit list --json ARGS…` printed, one JSON object a line.
fn listed_seqs(trail: &Trail, args: &[&str]) -> Vec<i64> {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    stdout(&trail.audit(&all))
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["seq"].as_i64().unwrap())
        .collect()
}

async fn audit_list_filters_by_actor_action_and_time(backend: Backend) {
    let trail = Trail::new(backend).await;
    let mut appended = Vec::new();
    for (actor, action) in [
        ("ana@example.org", "insights.read"),
        ("ben@example.org", "token.add"),
        ("ana@example.org", "token.add"),
        ("ben@example.org", "insights.read"),
        ("ana@example.org", "insights.read"),
    ] {
        appended.push(trail.append(actor, action).await);
    }
    assert_eq!(listed_seqs(&trail, &[]), [1, 2, 3, 4, 5]);
    assert_eq!(listed_seqs(&trail, &["--actor", "ana@example.org"]), [1, 3, 5]);
    assert_eq!(listed_seqs(&trail, &["--action", "token.add"]), [2, 3]);
    assert_eq!(listed_seqs(&trail, &["--actor", "ben@example.org", "--action", "insights.read"]), [4]);
    assert!(listed_seqs(&trail, &["--actor", "nobody@example.org"]).is_empty());

    // Times: at or after --since, before --until; the entries' own times decide what is expected.
    let third = audit::canonical_time(appended[2].at);
    let expected_since: Vec<i64> =
        appended.iter().filter(|entry| entry.at >= appended[2].at).map(|entry| entry.seq).collect();
    let expected_until: Vec<i64> =
        appended.iter().filter(|entry| entry.at < appended[2].at).map(|entry| entry.seq).collect();
    assert_eq!(listed_seqs(&trail, &["--since", &third]), expected_since);
    assert_eq!(listed_seqs(&trail, &["--until", &third]), expected_until);
    let today = appended[0].at.date().to_string();
    assert_eq!(listed_seqs(&trail, &["--since", &today, "--until", &today]), [1, 2, 3, 4, 5], "a date is its day");
    assert!(listed_seqs(&trail, &["--until", "2000-01-01"]).is_empty());
    assert!(listed_seqs(&trail, &["--since", "2999-01-01T00:00:00Z"]).is_empty());

    // Every field, as JSON.
    let line = stdout(&trail.audit(&["list", "--json", "--actor", "ben@example.org", "--action", "token.add"]));
    let listed: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(listed["seq"], 2);
    assert_eq!(listed["outcome"], "allowed");
    assert_eq!(listed["detail"]["rows"], 42);
    assert_eq!(listed["hash"], audit::hex(&appended[1].hash));
    assert_eq!(listed["prev_hash"], audit::hex(&appended[0].hash));
    assert_eq!(listed["at"], audit::canonical_time(appended[1].at));
    // And as text: a header, then a line an entry.
    let table = stdout(&trail.audit(&["list", "--actor", "ana@example.org"]));
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().nth(2).unwrap().trim_start().starts_with("3  "), "{table}");
}

on_both_backends!(audit_list_filters_by_actor_action_and_time);

async fn audit_list_refuses_an_unreadable_or_empty_time_range(backend: Backend) {
    let trail = Trail::new(backend).await;
    let refusal = stderr(&trail.audit(&["list", "--since", "last tuesday"]));
    assert!(refusal.contains("'last tuesday' is neither a date (YYYY-MM-DD) nor an RFC 3339 time"), "{refusal}");
    let refusal = stderr(&trail.audit(&["list", "--since", "2026-12-06", "--until", "2026-12-05"]));
    assert!(refusal.contains("--since (2026-12-06T00:00:00.000000Z) must be before --until"), "{refusal}");
}

on_both_backends!(audit_list_refuses_an_unreadable_or_empty_time_range);

/// A row changed into something no entry can be (its detail no JSON at all) stops `verify` with an error naming it.
async fn an_entry_that_cannot_be_read_stops_verify_naming_it(backend: Backend) {
    let trail = Trail::new(backend).await;
    for i in 0..3 {
        trail.append(&format!("person{i}@example.org"), "insights.read").await;
    }
    trail.drop_triggers().await;
    trail.execute_raw("UPDATE audit_log SET detail = 'rows: 42' WHERE seq = 2").await.unwrap();
    let refusal = stderr(&trail.audit(&["verify"]));
    assert!(refusal.contains("audit entry 2: its detail is not JSON"), "{refusal}");
}

on_both_backends!(an_entry_that_cannot_be_read_stops_verify_naming_it);
