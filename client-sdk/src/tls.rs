//! TLS for `https://` and `wss://` servers: rustls (with ring) over Mozilla's root certificates, compiled in, so a
//! phone checks a server the same way on Android, iOS and a desktop, whatever its system trust store holds. An app can
//! add roots with [`trust_root_certificates`]: a council's own certificate authority, or a test's.

use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::SdkError;

/// Roots added by the app, for every later connection.
static EXTRA_ROOTS: LazyLock<RwLock<Vec<CertificateDer<'static>>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Trusts the certificate authorities in `pem` (one or more `CERTIFICATE` blocks) for every later connection of this
/// process, besides the public web's. Returns how many were added.
///
/// # Errors
/// `SdkError::Certificate` if `pem` holds no certificate or one that cannot be read; nothing is added then.
pub fn trust_root_certificates(pem: &[u8]) -> Result<usize, SdkError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| SdkError::Certificate(format!("not PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(SdkError::Certificate("no CERTIFICATE block in the PEM text".into()));
    }
    // Each must make a usable root; check them all before adding any.
    let mut check = RootCertStore::empty();
    for certificate in &certificates {
        check.add(certificate.clone()).map_err(|error| SdkError::Certificate(format!("not a usable root: {error}")))?;
    }
    let added = certificates.len();
    EXTRA_ROOTS.write().unwrap_or_else(PoisonError::into_inner).extend(certificates);
    Ok(added)
}

/// The TLS settings of every connection: Mozilla's roots and the app's, TLS 1.2 and 1.3, no client certificate.
pub(crate) fn client_config() -> Result<ClientConfig, SdkError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for certificate in EXTRA_ROOTS.read().unwrap_or_else(PoisonError::into_inner).iter() {
        // Checked when added.
        let _ = roots.add(certificate.clone());
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| SdkError::Certificate(format!("TLS settings: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// An HTTP client for the server's API (enrolment), with these TLS settings.
pub(crate) fn http_client() -> Result<reqwest::Client, SdkError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config()?)
        .build()
        .map_err(|error| SdkError::Network(format!("cannot set up HTTP: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_refused_and_adds_nothing() {
        assert!(matches!(trust_root_certificates(b"hello"), Err(SdkError::Certificate(_))));
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(trust_root_certificates(garbage), Err(SdkError::Certificate(_))));
        assert!(EXTRA_ROOTS.read().unwrap().is_empty());
    }
}
