//! Slowloris: a connection that never finishes its request header is closed after the header-read timeout, and one
//! address cannot hold more than its share of connections (a trusted reverse proxy is not capped). Before the accept
//! loop, 300 connections holding half a header stayed open for as long as they liked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grapevine_tests::{Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PARTIAL_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: grapevine.test\r\nX-Slow: ";

/// A TCP connection to `server` from the loopback address `from` (Linux routes all of 127.0.0.0/8 to itself).
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Finishes a request begun with `PARTIAL_HEADER` and returns the status line.
async fn finish_request(stream: &mut TcpStream) -> String {
    stream.write_all(b"1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Reads until the server closes; how long that took, or `None` if it had not closed within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut sink)).await {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_header_is_closed_after_the_timeout() {
    let app = TestApp::spawn_configured(Backend::Sqlite, |config| {
        config.connection_limits.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(PARTIAL_HEADER).await.unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(10)).await;
    let closed = closed.expect("a connection holding half a header is closed");
    assert!(closed >= Duration::from_millis(900), "not before the timeout: {closed:?}");

    // Nor may a connection hold a socket by sending nothing at all.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await.is_some(), "a silent connection is closed");

    // A client that sends its header in time is served, on a kept-alive connection too.
    let mut prompt = TcpStream::connect(app.addr).await.unwrap();
    prompt.write_all(PARTIAL_HEADER).await.unwrap();
    assert_eq!(finish_request(&mut prompt).await, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_cap_of_connections_and_another_address_is_still_served() {
    let app = TestApp::spawn_configured(Backend::Sqlite, |config| {
        config.connection_limits.max_per_address = 3;
        config.connection_limits.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", app.addr).await;
        stream.write_all(PARTIAL_HEADER).await.unwrap();
        held.push(stream);
    }
    let mut over = connect_from("127.0.0.1", app.addr).await;
    let closed = closed_within(&mut over, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a fourth connection from one address is closed at once");
    let metrics = grapevine_server::metrics::render();
    let refused = "grapevine_tcp_connections_refused_total{reason=\"per_address_cap\"} ";
    assert!(metrics.lines().any(|line| line.starts_with(refused)), "the refusal is counted: {metrics}");

    let mut other = connect_from("127.0.0.2", app.addr).await;
    other.write_all(PARTIAL_HEADER).await.unwrap();
    assert_eq!(finish_request(&mut other).await, "HTTP/1.1 200 OK", "another address is served");
    assert_eq!(finish_request(&mut held[0]).await, "HTTP/1.1 200 OK", "the held connections are unharmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    let app = TestApp::spawn_configured(Backend::Sqlite, |config| {
        config.connection_limits.max_per_address = 2;
        config.connection_limits.header_read_timeout = Duration::from_secs(60);
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from("127.0.0.1", app.addr).await;
        stream.write_all(PARTIAL_HEADER).await.unwrap();
        held.push(stream);
    }
    for stream in &mut held {
        assert_eq!(finish_request(stream).await, "HTTP/1.1 200 OK", "each of the proxy's connections is served");
    }
}
