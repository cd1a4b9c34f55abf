//! The SDK over TLS, as a deployment runs it: a TLS-terminating proxy in front of the server (here a few lines of
//! tokio-rustls), the phone enrolling at `https://` and syncing over `wss://`. The proxy's certificate comes from a
//! test authority; the phone trusts it only once the app adds it.

use std::net::SocketAddr;
use std::sync::Arc;

use grapevine_client_sdk::{sync_enrolled, trust_root_certificates, SdkError, Status};
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, Phone, TestApp};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate for `localhost`, signed by itself: its PEM (for the phone to trust) and the proxy's TLS settings.
fn localhost_certificate() -> (String, Arc<rustls::ServerConfig>) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a test certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
        .unwrap();
    (cert.pem(), Arc::new(config))
}

/// Terminates TLS on a free port and forwards each connection to the server in the clear.
async fn tls_proxy(upstream: SocketAddr, config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(client).await else { return };
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

async fn a_phone_enrols_and_syncs_over_tls_once_it_trusts_the_certificate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let code = app.create_invitation("Hanley barbers", 2, time::Duration::days(1)).await;
    let (pem, config) = localhost_certificate();
    let proxy = tls_proxy(app.addr, config).await;
    let server = format!("https://localhost:{}", proxy.port());
    let phone = Phone::with_token(String::new()).await;

    // A certificate from an authority the phone does not trust: refused, nothing enrolled, the invitation unused.
    let refused = grapevine_client_sdk::enrol(&phone.store, &server, &code, "Phone").await.unwrap_err();
    assert!(matches!(&refused, SdkError::Network(message) if message.contains("certificate")), "{refused}");
    assert!(phone.store.enrolment().await.unwrap().is_none());

    // Trusted: enrol over https, sync over wss, and the insight is filed.
    assert_eq!(trust_root_certificates(pem.as_bytes()).unwrap(), 1);
    let enrolment = grapevine_client_sdk::enrol(&phone.store, &server, &code, "Phone").await.unwrap();
    assert!(enrolment.sync_url().starts_with("wss://localhost:"), "{}", enrolment.sync_url());
    let (area, lat, lon) = JOINERS_SQUARE;
    let id = phone.capture_at("drugs", lat, lon, Some(2)).await;
    let report = sync_enrolled(&phone.store).await.unwrap();
    assert_eq!(report.sent, 1);
    assert!(
        matches!(phone.store.get(id).await.unwrap().status, Status::Filed { ref area_code, .. } if area_code == area)
    );
    assert_eq!(app.totals().await, (vec![(area.to_owned(), 1)], 0));
}

on_both_backends!(a_phone_enrols_and_syncs_over_tls_once_it_trusts_the_certificate);
