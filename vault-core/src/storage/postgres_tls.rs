//! TLS to PostgreSQL: what the URL's `sslmode` and `sslrootcert` mean to the vault, and the
//! rustls connector that carries them out.
//!
//! A campaign that outgrows one machine moves its store to a managed PostgreSQL, reached
//! over a network; the database's credentials (and every query's shape) then cross that
//! network, so the connection must be encrypted and the server authenticated. The modes
//! follow libpq's names, with one rule stricter than libpq's: **TLS always authenticates
//! the server** with the CA file given in `sslrootcert` (a TLS that accepts any certificate
//! protects nothing against an active attacker on the path).
//!
//! | `sslmode` | transport | server authenticated by |
//! |---|---|---|
//! | absent, `disable`, `allow`, `prefer` | plaintext; refused to a host that is not loopback or a Unix socket unless explicitly allowed ([`PostgresOptions::allow_plaintext`](super::postgres::PostgresOptions::allow_plaintext)) | nothing |
//! | `require`, `verify-ca` | TLS (1.2 or 1.3, rustls) | a chain to `sslrootcert` (the name is not checked, as libpq's `require` with a root certificate) |
//! | `verify-full` | TLS | a chain to `sslrootcert` and the host name (or IP address) the URL connects to |
//!
//! `prefer` and `allow` never try TLS: libpq's opportunistic TLS verifies nothing, and a
//! store that sometimes encrypts is harder to reason about than one that says which. Client
//! certificates (`sslcert`, `sslkey`) are refused with a message rather than ignored.
//!
//! tokio-postgres parses only `disable`, `prefer` and `require`, and no `sslrootcert`: so
//! [`TlsSettings::split`] takes both keys out of the URL (either form: `postgres://…?k=v&…`
//! or `key=value …`) before tokio-postgres sees it, and the store sets tokio-postgres's own
//! mode to match.
//!
//! SCRAM channel binding (`tls-server-end-point`) is not offered: computing it needs the
//! certificate's signature hash, and a wrong value would fail authentication. The server
//! is already authenticated by its certificate, which is what channel binding would add.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use zeroize::Zeroizing;

/// How the connection to PostgreSQL is protected (from the URL's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS (`sslmode` absent, `disable`, `allow` or `prefer`).
    Plaintext,
    /// TLS; the certificate chains to the CA file (`require`, `verify-ca`).
    VerifyCa,
    /// TLS; the certificate chains to the CA file and names the host (`verify-full`).
    VerifyFull,
}

/// The TLS settings a PostgreSQL URL carries, taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The protection asked for.
    pub mode: TlsMode,
    /// The CA file (`sslrootcert`), PEM.
    pub root_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// Splits `url` into the URL tokio-postgres may parse (without `sslmode` and
    /// `sslrootcert`) and the TLS settings. The error names the key at fault and never
    /// quotes the URL (it may hold a password).
    pub fn split(url: &str) -> Result<(Zeroizing<String>, TlsSettings), String> {
        let (rest, pairs) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            split_uri(url)?
        } else {
            split_key_value(url)?
        };
        let mut mode = TlsMode::Plaintext;
        let mut root_cert = None;
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => mode = parse_mode(&value)?,
                "sslrootcert" if value.as_str() == "system" => {
                    return Err("sslrootcert=system (the operating system's roots) is not \
                                supported: give the path of the CA file that signed the \
                                server's certificate"
                        .to_owned());
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_str())),
                other => {
                    return Err(format!(
                        "the PostgreSQL URL sets {other}: client certificates are not \
                         supported; authenticate with a password (SCRAM) over TLS"
                    ));
                }
            }
        }
        if mode != TlsMode::Plaintext && root_cert.is_none() {
            return Err(
                "sslmode=require, verify-ca and verify-full need sslrootcert=/path/to/ca.pem \
                 (the CA that signed the server's certificate): the vault never accepts an \
                 unauthenticated server"
                    .to_owned(),
            );
        }
        Ok((rest, TlsSettings { mode, root_cert }))
    }

    /// The rustls connector for these settings (`None` for plaintext).
    pub fn connector(&self) -> Result<Option<MakeRustls>, String> {
        let Some(path) = self
            .root_cert
            .as_deref()
            .filter(|_| self.mode != TlsMode::Plaintext)
        else {
            return Ok(None);
        };
        let roots = read_roots(path)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("cannot use the CA file {}: {e}", path.display()))?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS to PostgreSQL: {e}"))?;
        let mut config = match self.mode {
            TlsMode::VerifyFull => builder.with_webpki_verifier(verifier).with_no_client_auth(),
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly {
                    inner: verifier,
                    provider,
                }))
                .with_no_client_auth(),
        };
        // PostgreSQL 17's direct TLS negotiation requires this ALPN; earlier servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Some(MakeRustls {
            connector: TlsConnector::from(Arc::new(config)),
        }))
    }
}

/// `sslmode` values, libpq's names.
fn parse_mode(value: &str) -> Result<TlsMode, String> {
    match value {
        "disable" | "allow" | "prefer" => Ok(TlsMode::Plaintext),
        "require" | "verify-ca" => Ok(TlsMode::VerifyCa),
        "verify-full" => Ok(TlsMode::VerifyFull),
        _ => Err(
            "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full"
                .to_owned(),
        ),
    }
}

/// The keys this module takes out of the URL (the others stay for tokio-postgres).
fn is_tls_key(key: &str) -> bool {
    matches!(
        key,
        "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "sslpassword" | "sslcrl"
    )
}

type Split = (Zeroizing<String>, Vec<(String, Zeroizing<String>)>);

/// `postgres://…?a=b&c=d`: the query's TLS pairs (percent-decoded) and the URL without them.
fn split_uri(url: &str) -> Result<Split, String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((Zeroizing::new(url.to_owned()), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        if is_tls_key(&key) {
            taken.push((key.to_string(), percent_decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let mut rest = Zeroizing::new(base.to_owned());
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, taken))
}

fn percent_decode(s: &str) -> Result<Zeroizing<String>, String> {
    let bytes = s.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("the PostgreSQL URL has a bad %-escape in its query")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| "the PostgreSQL URL's query is not UTF-8 once decoded".to_owned())
}

/// `host=h sslmode=verify-full …` (libpq's keyword form: values may be single-quoted, with
/// backslash escapes): the TLS pairs and the string without them, other pairs verbatim.
fn split_key_value(s: &str) -> Result<Split, String> {
    let bytes = s.as_bytes();
    let mut kept: Vec<&str> = Vec::new();
    let mut taken = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            // Not ours to judge: tokio-postgres reports the malformed pair.
            kept.push(&s[start..]);
            break;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Zeroizing::new(Vec::new());
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(
                            "the PostgreSQL connection string has an unclosed quote".to_owned()
                        );
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        value.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        if is_tls_key(key) {
            let value = String::from_utf8(value.to_vec())
                .map_err(|_| format!("the PostgreSQL connection string's {key} is not UTF-8"))?;
            taken.push((key.to_owned(), Zeroizing::new(value)));
        } else {
            kept.push(&s[start..i]);
        }
    }
    Ok((Zeroizing::new(kept.join(" ")), taken))
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the PostgreSQL CA file {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| format!("the PostgreSQL CA file {} is not PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| {
            format!(
                "the PostgreSQL CA file {} holds a bad certificate: {e}",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!(
            "the PostgreSQL CA file {} holds no certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// Whether every host `config` connects to is this machine: a Unix socket, `localhost`, or
/// a loopback address (host names other than `localhost` are not resolved here: they count
/// as remote).
pub fn is_loopback(config: &tokio_postgres::Config) -> bool {
    let hosts_local = config.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    });
    hosts_local && config.get_hostaddrs().iter().all(IpAddr::is_loopback)
}

/// Checks the chain and the validity dates but not the name (`require`, `verify-ca`).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS hook, on rustls: one per pool, cloned per connection.
#[derive(Clone)]
pub struct MakeRustls {
    connector: TlsConnector,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustls")
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the PostgreSQL host is not a valid TLS server name",
            )
        })?;
        Ok(RustlsConnect {
            connector: self.connector.clone(),
            name,
        })
    }
}

/// One connection's handshake.
pub struct RustlsConnect {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.connector
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, TlsSettings) {
        let (rest, settings) = TlsSettings::split(url).unwrap();
        (rest.to_string(), settings)
    }

    #[test]
    fn a_uri_loses_its_tls_keys_and_keeps_the_rest() {
        let (rest, s) = split(
            "postgres://u:p%40ss@db.example.fr:5432/vault?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        );
        assert_eq!(
            rest,
            "postgres://u:p%40ss@db.example.fr:5432/vault?application_name=x&connect_timeout=3"
        );
        assert_eq!(s.mode, TlsMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        let (rest, s) = split("postgresql://h/d?sslmode=disable");
        assert_eq!(
            (rest.as_str(), s.mode),
            ("postgresql://h/d", TlsMode::Plaintext)
        );
        let (rest, s) = split("postgres://h/d");
        assert_eq!(
            (rest.as_str(), s.mode),
            ("postgres://h/d", TlsMode::Plaintext)
        );
    }

    #[test]
    fn a_keyword_string_loses_its_tls_keys_and_keeps_quoted_values() {
        let (rest, s) = split(
            "host=db.example.fr password='a b\\'c' sslmode = require sslrootcert='/ca dir/ca.pem' dbname=v",
        );
        assert_eq!(rest, "host=db.example.fr password='a b\\'c' dbname=v");
        assert_eq!(s.mode, TlsMode::VerifyCa);
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/ca dir/ca.pem")));
        rest.parse::<tokio_postgres::Config>().unwrap();
    }

    #[test]
    fn tls_without_a_ca_file_and_unknown_modes_are_refused() {
        for url in [
            "postgres://h/d?sslmode=require",
            "postgres://h/d?sslmode=verify-full",
            "host=h sslmode=verify-ca",
        ] {
            let err = TlsSettings::split(url).unwrap_err();
            assert!(err.contains("sslrootcert"), "{url}: {err}");
        }
        let err = TlsSettings::split("postgres://h/d?sslmode=secure").unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
        let err = TlsSettings::split("postgres://h/d?sslmode=verify-full&sslrootcert=system")
            .unwrap_err();
        assert!(err.contains("CA file"), "{err}");
        let err = TlsSettings::split("host=h sslcert=/c.pem").unwrap_err();
        assert!(err.contains("client certificates"), "{err}");
    }

    #[test]
    fn errors_never_quote_the_url() {
        for url in [
            "postgres://u:hunter2@h/d?sslmode=require",
            "postgres://u:hunter2@h/d?sslmode=nope",
            "host=h password=hunter2 sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
        ] {
            let err = match TlsSettings::split(url) {
                Err(e) => e,
                Ok((_, s)) => s.connector().unwrap_err(),
            };
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let settings = TlsSettings {
            mode: TlsMode::VerifyFull,
            root_cert: Some(path),
        };
        let err = settings.connector().unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
    }

    #[test]
    fn loopback_is_unix_sockets_localhost_and_loopback_addresses() {
        let local = [
            "postgres://u@127.0.0.1/d",
            "postgres://u@localhost/d",
            "postgres://u@[::1]:5433/d",
            "host=/var/run/postgresql dbname=d",
            "dbname=d",
        ];
        for url in local {
            assert!(is_loopback(&url.parse().unwrap()), "{url}");
        }
        let remote = [
            "postgres://u@10.0.0.5/d",
            "postgres://u@db.example.fr/d",
            "host=127.0.0.1,db.example.fr dbname=d",
            "host=localhost hostaddr=192.0.2.1 dbname=d",
        ];
        for url in remote {
            assert!(!is_loopback(&url.parse().unwrap()), "{url}");
        }
    }
}
