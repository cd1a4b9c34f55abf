//! Wire-cost benchmark for issue #3: bytes and round trips per insight for batches of offline insights, and for a
//! reconnect with nothing new at growing numbers of stored insights; beside the anchor, an ODK OpenRosa submission
//! (HTTP multipart POST of the XML instance, and its 201 response) carrying the same content.
//!
//! cargo bench -p grapevine-tests --bench wire

use grapevine_client_sdk::{Channel, Draft, Location, Store as PhoneStore, SyncReport};
use grapevine_server::{Application, ServeConfig};
use grapevine_tests::{fresh_database, Backend};

const TEXT: &str = "Cars race past the school gate at home time";

fn draft(n: usize) -> Draft {
    Draft {
        category: "road-safety".into(),
        text: TEXT.into(),
        feeling_safe: Some(2),
        location: Location::Gps { lat: 53.01869 + n as f64 * 1e-6, lon: -2.16979, accuracy_m: 12.0 },
        channel: Channel::Pupil,
        captured_at: Some(time::macros::datetime!(2026-11-20 17:45 +00:00)),
        campaign: None,
    }
}

/// The bytes of one OpenRosa submission of the same insight, as ODK Collect sends it (request) and a server answers
/// (response). Headers are the ones OpenRosa requires and Collect sends; the HEAD request Collect makes first is left
/// out, in the anchor's favour.
fn openrosa_bytes() -> (usize, usize) {
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let instance = format!(
        "<?xml version='1.0' ?><data id=\"community_safety\" version=\"2026112201\" \
         xmlns:jr=\"http://openrosa.org/javarosa\" xmlns:orx=\"http://openrosa.org/xforms\">\
         <category>road-safety</category><text>{TEXT}</text><feeling_safe>2</feeling_safe>\
         <location>53.01869 -2.16979 0.0 12.0</location><channel>pupil</channel>\
         <captured_at>2026-11-20T17:45:00.000+00:00</captured_at>\
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
    let (request, response) = openrosa_bytes();
    let anchor = request + response;

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
        row(&format!("first sync of {batch} offline insight(s)"), batch, &report, Some(anchor));
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
    println!("\nOpenRosa anchor: request {request} bytes + response {response} bytes = {anchor} bytes per insight.");
}
