//! Property tests on a simulated, seeded network: several phones and a server exchanging frames through sessions,
//! with frames dropped, duplicated and reordered and connections cut at random. Afterwards, on a clean network, every
//! replica converges and every insight is extracted exactly once.
//!
//! The server here is a model of the real one's per-document cycle (apply, and on change extract and write back a
//! decision): enough to exercise the engine, with no I/O.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use automerge::{AutoCommit, ReadDoc};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::document::{
    read_insight, read_server_record, write_insight, write_server_record, ServerRecord, ServerStatus,
};
use crate::insight::{Channel, Insight, Location};
use crate::session::{Event, Session, Side};
use crate::DocumentId;

/// What can happen to a frame in flight.
#[derive(Debug, Clone, Copy)]
struct Faults {
    drop: f64,
    duplicate: f64,
    reorder: f64,
    cut: f64,
}

const CLEAN: Faults = Faults { drop: 0.0, duplicate: 0.0, reorder: 0.0, cut: 0.0 };

struct Phone {
    docs: BTreeMap<DocumentId, AutoCommit>,
    session: Session,
    to_server: VecDeque<Vec<u8>>,
    to_phone: VecDeque<Vec<u8>>,
    server_session: Session,
    /// Both ends speak `deflate-1`: a frame lost, repeated or overtaken within a connection then breaks the
    /// dictionary of the frames after it, which the receiver refuses, and the phone reconnects.
    compressed: bool,
}

struct Server {
    docs: HashMap<DocumentId, AutoCommit>,
    /// How many times each insight was extracted into the (modelled) relational table as a *new* row.
    n_new_rows: HashMap<DocumentId, usize>,
}

impl Server {
    /// The real server's cycle for one document message: apply, and if it changed, extract and decide.
    fn handle(
        &mut self,
        session: &mut Session,
        doc_id: DocumentId,
        message: automerge::sync::Message,
    ) -> Option<Vec<u8>> {
        let doc = self.docs.entry(doc_id).or_default();
        let before = doc.get_heads();
        session.apply(doc_id, doc, message).ok()?;
        if doc.get_heads() != before && read_insight(doc).is_ok() {
            // An upsert keyed by insight id: only the first extraction makes a new row.
            let rows = self.n_new_rows.entry(doc_id).or_insert(0);
            if *rows == 0 {
                *rows = 1;
            }
            let record = ServerRecord {
                status: ServerStatus::Filed { area_code: "E05008737".into(), area_name: "Joiner's Square".into() },
                processed_at: time::macros::datetime!(2026-11-22 12:00 UTC),
            };
            write_server_record(doc, &record).ok()?;
        }
        session.generate(doc_id, doc)
    }
}

fn insight_doc(rng: &mut StdRng) -> (DocumentId, AutoCommit) {
    let insight = Insight {
        id: uuid::Uuid::from_u128(rng.random()),
        captured_at: time::macros::datetime!(2026-11-20 17:45 +00:00),
        campaign: "community-safety".into(),
        category: "asb".into(),
        text: format!("report {}", rng.random::<u16>()),
        feeling_safe: Some(rng.random_range(1..=5)),
        location: Location::None,
        channel: Channel::Pupil,
    };
    let mut doc = AutoCommit::new();
    write_insight(&mut doc, &insight).unwrap();
    (DocumentId::for_insight(insight.id), doc)
}

fn connect(phone: &mut Phone, index: usize) {
    let (client, server) = (Session::new(Side::Client, format!("phone-{index}")), Session::new(Side::Server, "server"));
    (phone.session, phone.server_session) =
        if phone.compressed { (client.with_compression(), server.with_compression()) } else { (client, server) };
    phone.to_server.clear();
    phone.to_phone.clear();
    phone.to_server.push_back(phone.session.join_frame());
}

/// Offers every document the phone holds, as the SDK's batch does.
fn offer_all(phone: &mut Phone) {
    for (doc_id, doc) in &mut phone.docs {
        if let Some(frame) = phone.session.generate(*doc_id, doc) {
            phone.to_server.push_back(frame);
        }
    }
}

fn take(queue: &mut VecDeque<Vec<u8>>, rng: &mut StdRng, faults: Faults) -> Option<Vec<u8>> {
    let index = if queue.len() > 1 && rng.random_bool(faults.reorder) { rng.random_range(0..queue.len()) } else { 0 };
    let frame = queue.remove(index)?;
    if rng.random_bool(faults.duplicate) {
        queue.push_back(frame.clone());
    }
    if rng.random_bool(faults.drop) {
        return None;
    }
    Some(frame)
}

/// One step of one phone's connection; returns whether anything moved.
fn step(phone: &mut Phone, index: usize, server: &mut Server, rng: &mut StdRng, faults: Faults) -> bool {
    if rng.random_bool(faults.cut) {
        connect(phone, index);
        return true;
    }
    let mut moved = false;
    if let Some(frame) = take(&mut phone.to_server, rng, faults) {
        moved = true;
        match phone.server_session.receive(&frame) {
            Ok(Event::Joined { .. }) => {
                phone.to_phone.push_back(phone.server_session.accept(&[], None));
            }
            Ok(Event::Sync { doc_id, message, .. }) => {
                if let Some(reply) = server.handle(&mut phone.server_session, doc_id, message) {
                    phone.to_phone.push_back(reply);
                }
            }
            // A frame out of order before the handshake is a protocol error: the real server closes, so do we.
            Err(_) => connect(phone, index),
            Ok(_) => {}
        }
    } else if !phone.to_server.is_empty() {
        moved = true;
    }
    if let Some(frame) = take(&mut phone.to_phone, rng, faults) {
        moved = true;
        match phone.session.receive(&frame) {
            Ok(Event::Accepted { .. }) => offer_all(phone),
            Ok(Event::Sync { doc_id, message, .. }) => {
                let doc = phone.docs.entry(doc_id).or_default();
                if phone.session.apply(doc_id, doc, message).is_ok() {
                    if let Some(reply) = phone.session.generate(doc_id, doc) {
                        phone.to_server.push_back(reply);
                    }
                }
            }
            Err(_) => connect(phone, index),
            Ok(_) => {}
        }
    } else if !phone.to_phone.is_empty() {
        moved = true;
    }
    moved
}

fn run(seed: u64, n_phones: usize, n_docs: usize, n_chaos_steps: usize, faults: Faults, compressed: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = Server { docs: HashMap::new(), n_new_rows: HashMap::new() };
    let mut phones: Vec<Phone> = (0..n_phones)
        .map(|index| Phone {
            docs: (0..n_docs).map(|_| insight_doc(&mut rng)).collect(),
            session: Session::new(Side::Client, format!("phone-{index}")),
            server_session: Session::new(Side::Server, "server"),
            to_server: VecDeque::new(),
            to_phone: VecDeque::new(),
            compressed,
        })
        .collect();
    let all_ids: HashSet<DocumentId> = phones.iter().flat_map(|phone| phone.docs.keys().copied()).collect();
    for (index, phone) in phones.iter_mut().enumerate() {
        connect(phone, index);
    }
    for _ in 0..n_chaos_steps {
        let index = rng.random_range(0..phones.len());
        step(&mut phones[index], index, &mut server, &mut rng, faults);
    }
    // Then the network heals: each phone reconnects and syncs until nothing moves.
    for (index, phone) in phones.iter_mut().enumerate() {
        connect(phone, index);
        let mut n_steps = 0;
        while step(phone, index, &mut server, &mut rng, CLEAN) {
            n_steps += 1;
            assert!(n_steps < 10_000, "seed {seed}: phone {index} never went quiet");
        }
    }
    for (index, phone) in phones.iter_mut().enumerate() {
        for (doc_id, doc) in &mut phone.docs {
            let on_server = server.docs.get_mut(doc_id).expect("every insight reached the server");
            assert_eq!(doc.get_heads(), on_server.get_heads(), "seed {seed}: phone {index} diverged on {doc_id}");
            assert!(read_server_record(doc).is_some(), "seed {seed}: phone {index} never heard the decision");
        }
    }
    let extracted: HashSet<DocumentId> = server.n_new_rows.keys().copied().collect();
    assert_eq!(extracted, all_ids, "seed {seed}: every insight extracted");
    assert!(server.n_new_rows.values().all(|&n| n == 1), "seed {seed}: an insight counted twice");
    for doc in server.docs.values() {
        assert!(doc.get(automerge::ROOT, "text").unwrap().is_some());
    }
}

#[test]
fn a_clean_network_converges_in_one_pass() {
    run(1, 3, 20, 0, CLEAN, false);
    run(1, 3, 20, 0, CLEAN, true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_and_count_once_whatever_the_network_does(
        seed in any::<u64>(),
        n_phones in 1_usize..4,
        n_docs in 1_usize..12,
        n_chaos_steps in 0_usize..400,
        drop in 0.0..0.3_f64,
        duplicate in 0.0..0.3_f64,
        reorder in 0.0..0.5_f64,
        cut in 0.0..0.05_f64,
        compressed in any::<bool>(),
    ) {
        run(seed, n_phones, n_docs, n_chaos_steps, Faults { drop, duplicate, reorder, cut }, compressed);
    }
}
