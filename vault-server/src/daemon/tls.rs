//! The server's TLS configuration, read from the `[tls]` section's files at start. The
//! accept loop that runs the handshakes, under their deadline, is in `connections.rs`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::DaemonError;

/// The server's TLS settings from the `[tls]` section's files: what tonic's own TLS would
/// set up (ALPN `h2`; with a client CA, client certificates verified against it, optional
/// unless `require_client_cert`), on rustls with the ring provider.
pub(super) fn server_tls(tls: &super::config::TlsConfig) -> Result<TlsAcceptor, DaemonError> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            DaemonError::Serve(format!("cannot read TLS {what} {}: {e}", path.display()))
        })
    };
    let bad = |path: &Path, what: &str, e: &dyn std::fmt::Display| {
        DaemonError::Serve(format!("TLS {what} {}: {e}", path.display()))
    };
    let certs = |path: &Path, what: &str| -> Result<Vec<CertificateDer<'static>>, DaemonError> {
        CertificateDer::pem_slice_iter(&read(path, what)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(path, what, &e))
    };
    let chain = certs(&tls.cert_file, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key_file, "key")?)
        .map_err(|e| bad(&tls.key_file, "key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| DaemonError::Serve(format!("TLS configuration: {e}")))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca, "client CA")? {
                roots.add(cert).map_err(|e| bad(ca, "client CA", &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if tls.require_client_cert.unwrap_or(false) {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder
                .with_client_cert_verifier(verifier.build().map_err(|e| bad(ca, "client CA", &e))?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad(&tls.cert_file, "certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
