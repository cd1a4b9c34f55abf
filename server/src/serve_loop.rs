//! The accept loop: every TCP connection is served by hyper's HTTP/1 connection with a header-read timeout, and one
//! network address may hold only so many connections at once. `axum::serve` offers neither, and without them 300
//! connections each sending half a request header held the server's sockets for as long as they liked (slowloris).
//!
//! Graceful shutdown is as before: on the shutdown token the loop stops accepting, asks every HTTP connection to
//! finish its request in flight and close, and waits for them; upgraded sync connections close on the same token
//! and are waited for by the application's task tracker. Each request knows its peer (`ConnectInfo<SocketAddr>`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;

/// How long the accept loop pauses after `accept` fails (out of file descriptors, say), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits on HTTP connections, before any request is read.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// A connection must send a request's whole header within this long (the first request, and each later one on
    /// a kept-alive connection), or it is closed.
    pub header_read_timeout: Duration,
    /// The most connections one address (an IPv4 address, or an IPv6 /64) may hold open at once, sync WebSockets
    /// included; one more is closed as soon as it is accepted. A trusted reverse proxy (`--trusted-proxy`) is not
    /// capped: it carries many clients' connections, which are told apart only by `X-Forwarded-For`, and that
    /// arrives after the connection is accepted; the proxy caps its clients itself.
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { header_read_timeout: Duration::from_secs(10), max_per_address: 128 }
    }
}

/// Open connections per address.
#[derive(Debug, Default)]
struct AddressCounts {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count; given back when dropped.
#[derive(Debug)]
struct AddressSlot {
    counts: Arc<AddressCounts>,
    key: Option<IpAddr>,
}

impl AddressCounts {
    /// A place for a new connection from `peer`, or `None` when its address holds its cap already. Exempt addresses
    /// (the trusted proxies) always get one and are not counted.
    fn take(self: &Arc<Self>, peer: IpAddr, max_per_address: usize, exempt: &[IpAddr]) -> Option<AddressSlot> {
        let peer = peer.to_canonical();
        if exempt.iter().any(|exempt| exempt.to_canonical() == peer) {
            return Some(AddressSlot { counts: self.clone(), key: None });
        }
        let key = crate::http::enrol::budget_key(Some(peer));
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= max_per_address {
            return None;
        }
        *count += 1;
        Some(AddressSlot { counts: self.clone(), key: Some(key) })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.counts.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

/// A TCP stream that holds its address's place and its place in the open-connections gauge for as long as it
/// lives: through hyper's connection and, after an upgrade, inside the sync WebSocket, so a WebSocket still counts
/// against its address.
struct CountedStream {
    stream: TcpStream,
    _slot: AddressSlot,
    _open: crate::metrics::OpenGuard,
}

impl AsyncRead for CountedStream {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(context, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `stopping` is cancelled, then waits for every HTTP connection to finish.
/// Connections from `trusted_proxies` are not capped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    trusted_proxies: Vec<IpAddr>,
    stopping: CancellationToken,
) {
    let counts = Arc::new(AddressCounts::default());
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stopping.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Some(slot) = counts.take(peer.ip(), limits.max_per_address, &trusted_proxies) else {
            // Dropping the stream closes it before anything is read; the log line is debug, as an attacker could
            // otherwise fill the log.
            crate::metrics::tcp_connection_refused("per_address_cap");
            tracing::debug!(%peer, max = limits.max_per_address, "refused a connection: too many from its address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = CountedStream { stream, _slot: slot, _open: crate::metrics::tcp_connection_opened() };
        let span = tracing::debug_span!("connection", %peer);
        connections.spawn(
            serve_connection(stream, peer, router.clone(), limits.header_read_timeout, stopping.clone())
                .instrument(span),
        );
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: CountedStream,
    peer: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    stopping: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = stopping.cancelled() => {
            // Finish the request in flight, then close; an idle kept-alive connection closes at once.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = outcome {
        // A header-read timeout, a reset, a malformed request: the peer's doing, so debug.
        tracing::debug!(%error, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_its_cap_and_a_closed_connection_gives_its_place_back() {
        let counts = Arc::new(AddressCounts::default());
        let one = address("192.0.2.1");
        let first = counts.take(one, 2, &[]).expect("first");
        let _second = counts.take(one, 2, &[]).expect("second");
        assert!(counts.take(one, 2, &[]).is_none(), "a third from one address is refused");
        assert!(counts.take(address("192.0.2.2"), 2, &[]).is_some(), "another address is not");
        let mapped = address("::ffff:192.0.2.1");
        assert!(counts.take(mapped, 2, &[]).is_none(), "the same address as IPv4-mapped IPv6 counts as itself");
        drop(first);
        assert!(counts.take(one, 2, &[]).is_some(), "a closed connection's place is free again");
    }

    #[test]
    fn an_ipv6_network_is_one_address_and_a_trusted_proxy_is_not_capped() {
        let counts = Arc::new(AddressCounts::default());
        let proxy = address("10.0.0.2");
        let _held = counts.take(address("2001:db8:1:2::1"), 1, &[proxy]).unwrap();
        assert!(counts.take(address("2001:db8:1:2::ffff"), 1, &[proxy]).is_none(), "the same /64");
        assert!(counts.take(address("2001:db8:1:3::1"), 1, &[proxy]).is_some(), "another /64");
        let held: Vec<_> = (0..10).map(|_| counts.take(proxy, 1, &[proxy]).expect("a proxy is never capped")).collect();
        assert_eq!(held.len(), 10);
        assert!(counts.open.lock().unwrap().get(&proxy).is_none(), "and not counted");
    }
}
