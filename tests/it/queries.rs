//! The API's input handling, attacked as an outsider would: extreme and malformed dates, percent-encoding, repeated
//! parameters, unknown routes and methods, bodies that are not JSON, a token in the URL, and generated queries by
//! the hundred. Whatever comes in, the answer is a 200 or a 4xx with `{code, message}`: never a 500, never a dropped
//! connection.

use std::sync::atomic::{AtomicUsize, Ordering};

use grapevine_sync_proto::ErrorCode;
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, Phone, TestApp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

on_both_backends!(
    extreme_dates_are_refused_by_name_and_the_widest_range_is_answered,
    to_is_exclusive_up_to_the_last_day_a_query_may_name,
    query_names_and_values_are_percent_decoded,
    repeated_parameters_and_things_that_are_not_days_are_refused_by_name,
    every_error_answer_is_json_with_a_stable_code,
    a_token_in_an_api_query_string_is_refused_but_stays_valid_for_sync,
    generated_requests_never_reach_a_server_error,
);

/// The day `Phone::capture_at` dates its insights.
const CAPTURE_DAY: &str = "2026-11-20";

/// A server holding two insights in Joiner's Square, captured on `CAPTURE_DAY`.
async fn app_with_two_insights(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Barber").await;
    let (_, lat, lon) = JOINERS_SQUARE;
    phone.capture_at("drugs", lat, lon, Some(2)).await;
    phone.capture_at("asb", lat, lon, None).await;
    phone.sync(&app).await.unwrap();
    app
}

/// A GET as the analyst that must be refused with `invalid_query` and a message holding `said`.
async fn assert_invalid_query(app: &TestApp, path: &str, said: &str) {
    let (status, body) = app.get(path, Some(&app.analyst_token)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_query")), "{path}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(said), "{path}: '{message}' should say '{said}'");
}

/// Joiner's Square's total in an `areas` listing.
fn joiners_square_total(body: &Value) -> i64 {
    let areas = body["areas"].as_array().unwrap();
    let area = areas.iter().find(|area| area["code"] == JOINERS_SQUARE.0).unwrap();
    area["total"].as_i64().unwrap()
}

async fn extreme_dates_are_refused_by_name_and_the_widest_range_is_answered(backend: Backend) {
    let app = app_with_two_insights(backend).await;
    let code = JOINERS_SQUARE.0;
    // The attack: a panic (overflow working out the period before) on both backends, and a 500 on PostgreSQL.
    for path in [
        "/api/v1/priorities?from=0000-01-01&to=9999-12-31".to_owned(),
        "/api/v1/priorities?from=0001-01-01&to=9999-12-31".to_owned(),
        "/api/v1/areas?from=0000-01-01".to_owned(),
        format!("/api/v1/areas/{code}?from=0001-01-01&period=day"),
    ] {
        let said =
            if path.contains("0000") { "from=0000-01-01 is out of range" } else { "from=0001-01-01 is out of range" };
        assert_invalid_query(&app, &path, said).await;
    }
    assert_invalid_query(&app, "/api/v1/priorities?from=2026-01-01&to=9999-12-31", "to=9999-12-31 is out of range")
        .await;
    assert_invalid_query(&app, "/api/v1/areas?to=2200-01-02", "dates run from 1900-01-01 to 2200-01-01").await;

    // The range's ends are answered, and count what an open query counts.
    let widest = "from=1900-01-01&to=2200-01-01";
    assert_eq!(joiners_square_total(&app.areas(widest).await), 2);
    assert_eq!(joiners_square_total(&app.areas("").await), 2);
    let one = app.area(code, &format!("{widest}&period=year")).await;
    assert_eq!(one["total"], 2);
    assert_eq!(one["series"][0]["period_start"], "2026-01-01");
    // The period before the widest one starts in 1600: both stores read it.
    let (status, priorities) = app.get(&format!("/api/v1/priorities?{widest}"), Some(&app.analyst_token)).await;
    assert_eq!(status, 200, "{priorities}");
    assert_eq!(
        (priorities["previous_from"].as_str(), priorities["previous_to"].as_str()),
        (Some("1600-01-01"), Some("1900-01-01"))
    );
    assert_eq!(priorities["areas"][0]["total"], 2);
    assert_eq!(priorities["areas"][0]["previous_total"], 0);
}

async fn to_is_exclusive_up_to_the_last_day_a_query_may_name(backend: Backend) {
    let app = app_with_two_insights(backend).await;
    // `to=9999-12-31` took 9999-12-31 in (the calendar cannot step past it, so the year 9999 "ended" on its own last
    // day); it is now out of range, and every `to` a query may name is a day the period stops before.
    assert_invalid_query(&app, "/api/v1/areas?from=2026-01-01&to=9999-12-31", "to=9999-12-31 is out of range").await;
    assert_eq!(joiners_square_total(&app.areas(&format!("to={CAPTURE_DAY}")).await), 0, "to is exclusive");
    assert_eq!(joiners_square_total(&app.areas("from=2026-11-19&to=2026-11-21").await), 2);
    assert_eq!(joiners_square_total(&app.areas(&format!("from={CAPTURE_DAY}&to=2026-11-21")).await), 2);
    assert_eq!(joiners_square_total(&app.areas("from=2026-11-21&to=2200-01-01").await), 0, "from is inclusive");
    assert_eq!(joiners_square_total(&app.areas(&format!("from={CAPTURE_DAY}&to=2200-01-01")).await), 2);
    let (status, priorities) =
        app.get("/api/v1/priorities?from=2026-11-21&to=2200-01-01", Some(&app.analyst_token)).await;
    assert_eq!(status, 200, "{priorities}");
    assert_eq!(priorities["areas"][0]["previous_total"], 2, "the period before ends the day before from");
}

async fn query_names_and_values_are_percent_decoded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A boundary set whose name has a space, as the issue's `set=police%20neighbourhoods` asked for.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("neighbourhoods.geojson");
    let square = serde_json::json!({
        "type": "FeatureCollection",
        "features": [{
            "type": "Feature",
            "properties": { "NHCD": "SK01", "NHNM": "Stoke Central" },
            "geometry": { "type": "Polygon", "coordinates": [[
                [-2.3, 52.9], [-2.0, 52.9], [-2.0, 53.1], [-2.3, 53.1], [-2.3, 52.9]
            ]] }
        }]
    });
    std::fs::write(&file, square.to_string()).unwrap();
    let imported = std::process::Command::new(env!("CARGO_BIN_EXE_grapevine-under-test"))
        .args(["boundaries", "import", file.to_str().unwrap(), "--set", "police neighbourhoods"])
        .args(["--database-url", &app.database_url])
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let app = app.restart().await;
    let phone = Phone::new(&app, "Barber").await;
    let (_, lat, lon) = JOINERS_SQUARE;
    phone.capture_at("drugs", lat, lon, None).await;
    phone.sync(&app).await.unwrap();

    for query in ["set=police%20neighbourhoods", "set=police+neighbourhoods", "%73et=police%20neighbourhoods"] {
        let body = app.areas(query).await;
        assert_eq!(body["boundaries"]["set"], "police neighbourhoods", "{query}");
        assert_eq!(body["areas"][0]["code"], "SK01");
        assert_eq!(body["areas"][0]["total"], 1, "{query}");
    }
    let one = app.area("SK%30%31", "set=police%20neighbourhoods&from=2026%2D11%2D20&to=2026-11-21").await;
    assert_eq!((one["code"].as_str(), one["total"].as_i64()), (Some("SK01"), Some(1)));
    let (status, priorities) = app
        .get(
            "/api/v1/priorities?set=police%20neighbourhoods&area=SK%301&from=2026-11-01&to=2026-12-01",
            Some(&app.analyst_token),
        )
        .await;
    assert_eq!(status, 200, "{priorities}");
    assert_eq!(priorities["areas"][0]["code"], "SK01");
    assert_eq!(priorities["areas"][0]["top_concerns"], serde_json::json!(["drugs"]));
    // A name that decodes to nothing known is refused as what it decodes to.
    assert_invalid_query(&app, "/api/v1/areas?s%65ts=wards", "unknown parameter 'sets'").await;
}

async fn repeated_parameters_and_things_that_are_not_days_are_refused_by_name(backend: Backend) {
    let app = app_with_two_insights(backend).await;
    let code = JOINERS_SQUARE.0;
    // Before, the last of each silently won.
    assert_invalid_query(&app, "/api/v1/areas?from=2026-01-01&from=2026-11-21", "from is given more than once").await;
    assert_invalid_query(
        &app,
        &format!("/api/v1/areas/{code}?period=day&period=week"),
        "period is given more than once",
    )
    .await;
    assert_invalid_query(
        &app,
        "/api/v1/priorities?from=2026-01-01&to=2026-12-01&t%6F=2026-12-02",
        "to is given more than once",
    )
    .await;
    // Before, each of these was read as a day.
    for not_a_day in ["2026-W01-1", "20260101", "2026-01-01T23:59:59Z", "2026-001", "%2B2026-01-01"] {
        assert_invalid_query(&app, &format!("/api/v1/areas?to={not_a_day}"), "is not a date written YYYY-MM-DD").await;
        assert_invalid_query(&app, &format!("/api/v1/priorities?from={not_a_day}&to=2027-01-01"), "from=").await;
    }
    assert_invalid_query(&app, "/api/v1/areas?from=2026-02-30", "from=2026-02-30 is not a day of the calendar").await;
}

/// A request with a method, a path, headers and a body: the status, the headers and the JSON body (`Null` if none).
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("http://{}{path}", app.addr)).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

/// Asserts an answer is `{code, message}` with this status and code, and returns the message.
fn coded(answer: &(u16, reqwest::header::HeaderMap, Value), status: u16, code: ErrorCode) -> String {
    let (got, _, body) = answer;
    assert_eq!((*got, body["code"].as_str()), (status, Some(code.as_str())), "{body}");
    let message = body["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty());
    message
}

async fn every_error_answer_is_json_with_a_stable_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let analyst = format!("Bearer {}", app.analyst_token);
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // Unknown paths, with and without a token.
    for path in ["/no-such-page", "/api/v1/area", "/api/v2/areas", "/api/v1/areas/E05008737/extra", "/sync/"] {
        let message = coded(&send(&app, get.clone(), path, &[], "").await, 404, ErrorCode::NotFound);
        assert!(message.contains(path), "{message}");
    }
    coded(&send(&app, get.clone(), "/nope", &[("authorization", &analyst)], "").await, 404, ErrorCode::NotFound);

    // Methods a route does not take: 405 with a code, and the Allow header still says which it does.
    let answer = send(&app, post.clone(), "/api/v1/areas", &[("authorization", &analyst)], "").await;
    assert!(coded(&answer, 405, ErrorCode::MethodNotAllowed).contains("POST /api/v1/areas"));
    assert!(answer.1["allow"].to_str().unwrap().contains("GET"), "{:?}", answer.1);
    let answer = send(&app, get.clone(), "/api/v1/enrol", &[], "").await;
    coded(&answer, 405, ErrorCode::MethodNotAllowed);
    assert_eq!(answer.1["allow"], "POST");
    coded(&send(&app, reqwest::Method::DELETE, "/healthz", &[], "").await, 405, ErrorCode::MethodNotAllowed);

    // Enrolment bodies that are not what it takes: the field named, and no serde or axum internals.
    let enrol = |headers: &'static [(&'static str, &'static str)], body: &'static str| {
        send(&app, reqwest::Method::POST, "/api/v1/enrol", headers, body)
    };
    let json: &[(&str, &str)] = &[("content-type", "application/json")];
    let messages = [
        (
            coded(&enrol(&[], r#"{"code": "x"}"#).await, 415, ErrorCode::InvalidRequest),
            "Content-Type: application/json",
        ),
        (coded(&enrol(json, "{not json").await, 422, ErrorCode::InvalidRequest), "the body is not JSON"),
        (coded(&enrol(json, r#"{"label": "Sam"}"#).await, 422, ErrorCode::InvalidRequest), "missing field `code`"),
        (
            coded(&enrol(json, r#"{"code": "x", "label": 5}"#).await, 422, ErrorCode::InvalidRequest),
            "label: invalid type",
        ),
        (
            coded(&enrol(json, r#"{"code": "x", "pin": 1}"#).await, 422, ErrorCode::InvalidRequest),
            "unknown field `pin`",
        ),
    ];
    for (message, said) in messages {
        assert!(message.contains(said), "'{message}' should say '{said}'");
        assert!(
            !message.contains("Failed to") && !message.contains("Semantic") && !message.contains("Error("),
            "{message}"
        );
    }
    // A code in the URL would be logged by every proxy on the way: refused before anything is looked up.
    let message = coded(
        &send(&app, post.clone(), "/api/v1/enrol?code=abcd", json, r#"{"code": "x"}"#).await,
        422,
        ErrorCode::InvalidQuery,
    );
    assert!(message.contains("'code'") && message.contains("JSON body"), "{message}");

    // A path parameter that is not UTF-8 once decoded.
    coded(
        &send(&app, get.clone(), "/api/v1/areas/%FF%FE", &[("authorization", &analyst)], "").await,
        422,
        ErrorCode::InvalidRequest,
    );
    // The WebSocket endpoint asked without an upgrade: axum's plain-text refusal, as JSON.
    let device = format!("Bearer {}", app.add_device("Browser").await);
    let message = coded(
        &send(&app, get.clone(), "/sync", &[("authorization", &device)], "").await,
        400,
        ErrorCode::InvalidRequest,
    );
    assert!(message.to_lowercase().contains("upgrade"), "{message}");
    // What was right before stays right.
    let (status, _, _) = send(&app, get, "/healthz", &[], "").await;
    assert_eq!(status, 200);
}

async fn a_token_in_an_api_query_string_is_refused_but_stays_valid_for_sync(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.analyst_token.clone();
    for path in [
        format!("/api/v1/areas?token={token}"),
        format!("/api/v1/areas/E05008737?from=2026-01-01&token={token}"),
        format!("/api/v1/priorities?from=2026-01-01&to=2026-02-01&%74oken={token}"),
        "/api/v1/areas?token=".to_owned(),
    ] {
        // Refused with the header present too: the token has leaked into a URL either way.
        for header in [None, Some(token.as_str())] {
            let (status, body) = app.get(&path, header).await;
            assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{path}: {body}");
            assert!(body["message"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
        }
    }
    let (status, body) = app.post_json("/api/v1/enrol?token=x", r#"{"code": "x"}"#).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");

    // Browsers cannot set headers on a WebSocket, so /sync still takes ?token=.
    let device = app.add_device("Browser").await;
    let (mut socket, response) = tokio_tungstenite::connect_async(format!("{}?token={device}", app.sync_url()))
        .await
        .expect("sync accepts ?token=");
    assert_eq!(response.status(), 101);
    socket.close(None).await.unwrap();
}

/// The requests an outsider might send, built from names the API knows and some it does not, values that are almost
/// dates, extreme dates, numbers and noise, each maybe percent-encoded.
#[derive(Debug, Clone)]
enum Request {
    Areas(String),
    Area(String, String),
    Priorities(String),
    Enrol(String, String),
}

fn piece() -> impl Strategy<Value = String> {
    let dates = prop::sample::select(vec![
        "0000-01-01",
        "0001-01-01",
        "9999-12-31",
        "1899-12-31",
        "1900-01-01",
        "2026-11-20",
        "2026-11-21",
        "2199-12-31",
        "2200-01-01",
        "2200-01-02",
        "2026-W01-1",
        "20260101",
        "2026-01-01T23:59:59Z",
        "-0001-01-01",
        "+10000-01-01",
        "2026-02-30",
        "2026-001",
    ]);
    let words = prop::sample::select(vec![
        "from",
        "to",
        "set",
        "generation",
        "period",
        "area",
        "token",
        "wards",
        "day",
        "week",
        "year",
        "E05008737",
    ]);
    prop_oneof![
        4 => dates.prop_map(str::to_owned),
        3 => words.prop_map(str::to_owned),
        1 => (0u16..=9999, 0u8..=13, 0u8..=32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        1 => any::<i64>().prop_map(|number| number.to_string()),
        1 => "[A-Za-z0-9._~:+-]{0,10}",
        // Anything at all, percent-encoded so it reaches the server as written.
        1 => ".{0,10}".prop_map(|noise| form_urlencoded::byte_serialize(noise.as_bytes()).collect()),
        1 => "(%[0-9A-Fa-f]{2}){1,4}",
    ]
}

/// A value for a parameter the endpoint takes: mostly one it could accept (so requests reach the store), else any
/// piece.
fn value_for(name: &'static str) -> BoxedStrategy<String> {
    let likely: BoxedStrategy<String> = match name {
        "from" | "to" => (1900i32..=2199, 1u8..=12, 1u8..=28)
            .prop_map(|(year, month, day)| format!("{year:04}-{month:02}-{day:02}"))
            .boxed(),
        "period" => {
            prop::sample::select(vec!["day", "week", "month", "quarter", "year"]).prop_map(str::to_owned).boxed()
        }
        "set" => Just("wards".to_owned()).boxed(),
        "generation" => Just("1".to_owned()).boxed(),
        _ => Just(JOINERS_SQUARE.0.to_owned()).boxed(),
    };
    prop_oneof![6 => likely, 1 => piece()].boxed()
}

/// A query string for an endpoint taking `names`: its own parameters in any order (repeats included), maybe
/// percent-encoded byte by byte, and now and then any name at all.
fn query(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    let pair = (prop::sample::select(names), any::<bool>())
        .prop_flat_map(|(name, encoded)| (Just(name), value_for(name), Just(encoded)))
        .prop_map(|(name, value, encoded)| {
            if encoded {
                format!("{name}={}", value.bytes().map(|byte| format!("%{byte:02X}")).collect::<String>())
            } else {
                format!("{name}={value}")
            }
        });
    let anything = (piece(), prop::option::of(piece()))
        .prop_map(|(name, value)| value.map_or_else(|| name.clone(), |value| format!("{name}={value}")));
    prop::collection::vec(prop_oneof![8 => pair, 1 => anything], 0..4).prop_map(|pairs| pairs.join("&"))
}

fn request() -> impl Strategy<Value = Request> {
    let code = prop_oneof![
        2 => Just(JOINERS_SQUARE.0.to_owned()),
        1 => piece().prop_map(|code| form_urlencoded::byte_serialize(code.as_bytes()).collect()),
        1 => "(%[0-9A-Fa-f]{2}){1,3}",
    ];
    let body = prop_oneof![
        Just(r#"{"code": "abcd efgh jk"}"#.to_owned()),
        piece().prop_map(|code| serde_json::json!({ "code": code, "label": code }).to_string()),
        ".{0,30}",
    ];
    // A period every endpoint takes, put before the rest of a query half the time, so that generated requests
    // reach the store about as often as the parser refuses them.
    let with_period = |names: &'static [&'static str]| {
        let period = (0i64..=109_572, 1i64..=800).prop_map(|(start, length)| {
            let from = time::macros::date!(1900 - 01 - 01) + time::Duration::days(start);
            let to = (from + time::Duration::days(length)).min(time::macros::date!(2200 - 01 - 01));
            format!("from={from}&to={to}")
        });
        (prop::option::of(period), query(names)).prop_map(|(period, query)| match period {
            Some(period) if query.is_empty() => period,
            Some(period) => format!("{period}&{query}"),
            None => query,
        })
    };
    prop_oneof![
        with_period(&["set", "generation", "from", "to"]).prop_map(Request::Areas),
        (code, with_period(&["set", "generation", "from", "to", "period"]))
            .prop_map(|(code, query)| Request::Area(code, query)),
        with_period(&["set", "generation", "from", "to", "area"]).prop_map(Request::Priorities),
        (prop::option::weighted(0.3, query(&["code", "label"])), body)
            .prop_map(|(query, body)| Request::Enrol(query.unwrap_or_default(), body)),
    ]
}

/// Sends one generated request and checks the answer: 200 or 201 with a JSON object, or a 4xx with a known code and a
/// message; returns the status. A dropped connection fails the send.
async fn check(app: &TestApp, request: &Request) -> Result<u16, TestCaseError> {
    let analyst = format!("Bearer {}", app.analyst_token);
    let auth = [("authorization", analyst.as_str())];
    let (method, path, headers, body) = match request {
        Request::Areas(query) => (reqwest::Method::GET, format!("/api/v1/areas?{query}"), &auth[..], ""),
        Request::Area(code, query) => (reqwest::Method::GET, format!("/api/v1/areas/{code}?{query}"), &auth[..], ""),
        Request::Priorities(query) => (reqwest::Method::GET, format!("/api/v1/priorities?{query}"), &auth[..], ""),
        Request::Enrol(query, body) => (
            reqwest::Method::POST,
            format!("/api/v1/enrol?{query}"),
            &[("content-type", "application/json")][..],
            body.as_str(),
        ),
    };
    let (status, _, answer) = send(app, method, &path, headers, body).await;
    if status == 200 || status == 201 {
        prop_assert!(answer.is_object(), "{path}: {status} {answer}");
    } else {
        prop_assert!((400..500).contains(&status), "{path} {body}: {status} {answer}");
        let code = answer["code"].as_str().and_then(ErrorCode::parse);
        prop_assert!(code.is_some(), "{path} {body}: {status} {answer}");
        prop_assert!(answer["message"].as_str().is_some_and(|message| !message.is_empty()), "{path}: {answer}");
    }
    Ok(status)
}

async fn generated_requests_never_reach_a_server_error(backend: Backend) {
    let app = app_with_two_insights(backend).await;
    // The extremes, every endpoint, every time; then generated requests, shrunk to the smallest that fails.
    for path in ["0000-01-01", "0001-01-01", "9999-12-31", "1900-01-01", "2200-01-01"].iter().flat_map(|extreme| {
        [
            Request::Areas(format!("from={extreme}")),
            Request::Areas(format!("to={extreme}")),
            Request::Area(JOINERS_SQUARE.0.to_owned(), format!("from={extreme}&period=day")),
            Request::Priorities(format!("from={extreme}&to=9999-12-31")),
            Request::Priorities(format!("from={extreme}&to=2200-01-01")),
            Request::Priorities(format!("from=1900-01-01&to={extreme}")),
        ]
    }) {
        check(&app, &path).await.unwrap();
    }
    let runtime = tokio::runtime::Handle::current();
    let (answered, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let outcome = tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config { cases: 96, failure_persistence: None, ..Config::default() });
        runner.run(&request(), |request| {
            let status = runtime.block_on(check(&app, &request))?;
            (if status < 300 { &answered } else { &refused }).fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // The generator reaches the store as well as the parser's refusals.
    let (answered, refused) = (answered.into_inner(), refused.into_inner());
    assert!(answered >= 10 && refused >= 10, "{answered} answered, {refused} refused");
}
