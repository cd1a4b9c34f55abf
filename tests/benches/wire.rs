//! Wire-cost benchmark for issue #3: bytes and round trips per insight for batches of offline insights, and for a
//! reconnect with nothing new at growing numbers of stored insights; beside the anchor, an ODK OpenRosa submission
//! (HTTP multipart POST of the XML instance, and its 201 response) carrying the same content.
//!
//! cargo bench -p grapevine-tests --bench wire

use grapevine_client_sdk::{Channel, Draft, Location, Store as PhoneStore, SyncReport};
use grapevine_server::{Application, ServeConfig};
use grapevine_tests::{fresh_database, Backend};

/// Twenty different insights, as a batch from one phone would hold: compression gets no help from repeated text.
const INSIGHTS: [(&str, &str, u8); 20] = [
    ("road-safety", "Cars race past the school gate at home time", 2),
    ("asb", "Group of lads kicking off outside the chippy most Friday nights", 2),
    ("drugs", "Dealing from a parked car behind the leisure centre, usually after 9", 1),
    ("criminal-damage", "Bus shelter on Etruria Road smashed again", 3),
    ("feeling-unsafe", "Underpass by the canal has no lights, I go the long way round now", 1),
    ("vehicle-crime", "Two vans broken into on our street this week, tools taken", 3),
    ("burglary-theft", "Shed break-ins on the allotments, bikes gone", 3),
    ("hate-crime", "Shouting at the women coming out of the mosque on Friday", 1),
    ("fraud-scams", "Older customers getting calls pretending to be the bank", 4),
    ("violence-weapons", "Lad showed a knife in the park near the skate ramp", 1),
    ("road-safety", "Parents parking on the zigzags, kids stepping out between cars", 2),
    ("asb", "Fireworks thrown at the bus on route 4 last night", 2),
    ("exploitation", "Young kids hanging about with older men in a black Audi", 1),
    ("rural-wildlife", "Hare coursing in the fields off the A53 at dusk", 3),
    ("domestic-abuse-vawg", "Client says her partner checks her phone and keeps her money", 2),
    ("criminal-damage", "Graffiti all over the new play area, some of it nasty", 3),
    ("drugs", "Nitrous canisters all over the car park every morning", 3),
    ("feeling-unsafe", "Don't feel safe walking back from the station after dark", 2),
    ("other", "Streetlights out on half of Victoria Road for weeks", 3),
    ("asb", "Off-road bikes on the pavement by the shops, nearly hit a pram", 2),
];

fn draft(n: usize) -> Draft {
    let (category, text, feeling_safe) = INSIGHTS[n % INSIGHTS.len()];
    Draft {
        category: category.into(),
        text: text.into(),
        feeling_safe: Some(feeling_safe),
        location: Location::Gps { lat: 53.01869 + n as f64 * 1e-4, lon: -2.16979 - n as f64 * 1e-4, accuracy_m: 12.0 },
        channel: Channel::Pupil,
        captured_at: Some(time::macros::datetime!(2026-11-20 17:45 +00:00) + time::Duration::minutes(n as i64 * 37)),
        campaign: None,
    }
}

/// The bytes of one OpenRosa submission of the same insight as `draft(n)`, as ODK Collect sends it (request) and a
/// server answers (response). Headers are the ones OpenRosa requires and Collect sends; the HEAD request Collect
/// makes first is left out, in the anchor's favour.
fn openrosa_bytes(n: usize) -> (usize, usize) {
    let (category, text, feeling_safe) = INSIGHTS[n % INSIGHTS.len()];
    let (lat, lon) = (53.01869 + n as f64 * 1e-4, -2.16979 - n as f64 * 1e-4);
    let captured_at = (time::macros::datetime!(2026-11-20 17:45 +00:00) + time::Duration::minutes(n as i64 * 37))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let instance = format!(
        "<?xml version='1.0' ?><data id=\"community_safety\" version=\"2026112201\" \
         xmlns:jr=\"http://openrosa.org/javarosa\" xmlns:orx=\"http://openrosa.org/xforms\">\
         <category>{category}</category><text>{text}</text><feeling_safe>{feeling_safe}</feeling_safe>\
         <location>{lat:.6} {lon:.6} 0.0 12.0</location><channel>pupil</channel>\
         <captured_at>{captured_at}</captured_at>\
         <meta><instanceID>uuid:0f8e7c3a-6f0b-4b8e-9a43-2c1d5e6f7a8b</instanceID></meta></data>"
    );
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"xml_submission_file\"; filename=\"submission.xml\"\r\n\
         Content-Type: text/xml\r\n\r\n{instance}\r\n--{boundary}--\r\n"
    );
    let request = format!(
        "POST /submission HTTP/1.1\r\nHost: grapevine.example.org\r\nX-OpenRosa-Version: 1.0\r\n\
         Date: Fri, 20 Nov 2026 17:45:00 GMT\r\nUser-Agent: org.odk.collect.android/v2024.3.0\r\n\
         Authorization: Bearer gvd_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response_body = "<OpenRosaResponse xmlns=\"http://openrosa.org/http/response\">\
         <message nature=\"submit_success\">Form received successfully.</message></OpenRosaResponse>";
    let response = format!(
        "HTTP/1.1 201 Created\r\nX-OpenRosa-Version: 1.0\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {}\r\nDate: Fri, 20 Nov 2026 17:45:01 GMT\r\n\r\n{response_body}",
        response_body.len()
    );
    (request.len(), response.len())
}

fn row(what: &str, n: usize, report: &SyncReport, anchor: Option<usize>) {
    let bytes = report.traffic.bytes_sent + report.traffic.bytes_received;
    let per_insight = bytes as f64 / n.max(1) as f64;
    let anchor_cell = anchor.map_or_else(String::new, |a| format!("{a} bytes"));
    let ratio = anchor.map_or_else(String::new, |a| format!("{:.2}", per_insight / a as f64));
    println!(
        "| {what} | {} sent + {} received = {bytes} bytes; {per_insight:.0} per insight | {} | {anchor_cell} | {ratio} |",
        report.traffic.bytes_sent, report.traffic.bytes_received, report.traffic.round_trips
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _) = fresh_database(Backend::Sqlite, &dir).await;
    let app = Application::build(ServeConfig::new("127.0.0.1:0".parse().unwrap(), database_url.clone())).await.unwrap();
    let url = format!("ws://{}/sync", app.local_addr().unwrap());
    let store = grapevine_server::store::open(&database_url).await.unwrap();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    // The anchor of a batch is the mean of its insights' submissions; of a reconnect, the mean over the twenty.
    let anchor_of = |batch: usize| (0..batch).map(|n| openrosa_bytes(n).0 + openrosa_bytes(n).1).sum::<usize>() / batch;
    let anchor = anchor_of(INSIGHTS.len());

    println!(
        "| what | Grapevine (WebSocket payloads, both ways) | round trips | anchor: OpenRosa per insight | ratio |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for batch in [1, 20, 100] {
        let (_, token) = grapevine_server::auth::issue_device(store.as_ref(), "batch", None).await.unwrap();
        let phone = PhoneStore::open(dir.path().join(format!("batch-{batch}"))).await.unwrap();
        // The phone has been online once already (it holds the campaign), as an enrolled phone has: the batch
        // measures the insights only.
        let first = grapevine_client_sdk::sync(&phone, &url, &token).await.unwrap();
        if batch == 1 {
            let bytes = first.traffic.bytes_sent + first.traffic.bytes_received;
            println!(
                "| the campaign, once, at the first sync (categories in two languages, prompts, 211 areas) | {bytes} bytes | {} | | |",
                first.traffic.round_trips
            );
        }
        for n in 0..batch {
            phone.capture(draft(n)).await.unwrap();
        }
        let report = grapevine_client_sdk::sync(&phone, &url, &token).await.unwrap();
        assert_eq!(report.sent, batch);
        row(&format!("first sync of {batch} offline insight(s)"), batch, &report, Some(anchor_of(batch)));
    }
    for stored in [10, 1_000, 10_000] {
        let (_, token) = grapevine_server::auth::issue_device(store.as_ref(), "stored", None).await.unwrap();
        let phone = PhoneStore::open(dir.path().join(format!("stored-{stored}"))).await.unwrap();
        for n in 0..stored {
            phone.capture(draft(n)).await.unwrap();
        }
        grapevine_client_sdk::sync(&phone, &url, &token).await.unwrap();
        let quiet = grapevine_client_sdk::sync(&phone, &url, &token).await.unwrap();
        assert_eq!(quiet.sent + quiet.received, 0);
        let bytes = quiet.traffic.bytes_sent + quiet.traffic.bytes_received;
        println!(
            "| reconnect with nothing new, {stored} insights on the phone | {bytes} bytes in total | {} | {} bytes per insight re-announced; Grapevine re-announces none | |",
            quiet.traffic.round_trips, anchor
        );
    }
    let (request, response) = (0..INSIGHTS.len()).map(openrosa_bytes).fold((0, 0), |(q, r), (a, b)| (q + a, r + b));
    println!(
        "\nOpenRosa anchor, mean over the twenty insights: request {} bytes + response {} bytes = {anchor} bytes.",
        request / INSIGHTS.len(),
        response / INSIGHTS.len()
    );
}
