//! The connection to the daemon: plaintext on loopback, TLS with `--ca-cert`, mutual TLS
//! with `--cert` and `--key`. Failures say what failed and what to check.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::Error;

/// How to reach the daemon over TLS: the CA that signed its certificate and, for mutual
/// TLS, the client's certificate and key (PEM files).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificate(s) the daemon's certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate, for mutual TLS.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
    /// Name the daemon's certificate must carry (default: the address's host).
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// Whether any TLS option was given.
    pub fn any(&self) -> bool {
        self.ca_cert.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// The URL of the daemon at `addr`: `http://…` or `https://…` as given, or a bare
/// `host:port` (the form `--listen` takes), which means TLS when TLS options are given.
pub fn daemon_url(addr: &str, tls: &TlsFiles) -> Result<String, Error> {
    let a = addr.trim();
    let url = if a.starts_with("http://") || a.starts_with("https://") {
        a.to_owned()
    } else if a.contains("://") {
        return Err(Error::AddressScheme { addr: a.to_owned() });
    } else if tls.any() {
        format!("https://{a}")
    } else {
        format!("http://{a}")
    };
    if url.starts_with("http://") && tls.any() {
        return Err(Error::PlaintextAddress { addr: a.to_owned() });
    }
    if url.starts_with("https://") && tls.ca_cert.is_none() {
        return Err(Error::NoCaCert { addr: a.to_owned() });
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(Error::HalfIdentity);
    }
    Ok(url)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Connects to the daemon at `addr` (see [`daemon_url`]), over TLS when `tls` says so.
pub async fn connect(addr: &str, tls: &TlsFiles) -> Result<Channel, Error> {
    let url = daemon_url(addr, tls)?;
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|source| Error::BadAddress {
        addr: addr.to_owned(),
        source,
    })?;
    // Said, not assumed: a request is several small writes, which Nagle's algorithm would
    // hold back for the daemon's delayed ACK.
    endpoint = endpoint.tcp_nodelay(true);
    let secure = url.starts_with("https://");
    if secure {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &tls.ca_cert {
            config = config.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            let key = zeroize::Zeroizing::new(read("client key", key)?);
            config = config.identity(Identity::from_pem(
                read("client certificate", cert)?,
                key.as_slice(),
            ));
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|source| Error::TlsSettings { source })?;
    }
    endpoint.connect().await.map_err(|source| Error::Connect {
        url,
        secure,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_every_form_and_tls_options_must_agree() {
        let none = TlsFiles::default();
        let ca = TlsFiles {
            ca_cert: Some("ca.pem".into()),
            ..TlsFiles::default()
        };
        assert_eq!(
            daemon_url("127.0.0.1:50051", &none).unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(daemon_url(" http://h:1 ", &none).unwrap(), "http://h:1");
        assert_eq!(daemon_url("h:1", &ca).unwrap(), "https://h:1");
        assert_eq!(daemon_url("https://h:1", &ca).unwrap(), "https://h:1");
        let err = |addr: &str, tls: &TlsFiles| daemon_url(addr, tls).unwrap_err().to_string();
        assert!(err("https://h:1", &none).contains("--ca-cert"));
        assert!(err("http://h:1", &ca).contains("plaintext"));
        assert!(err("ftp://h:1", &none).contains("HOST:PORT"));
        let half = TlsFiles {
            cert: Some("c.pem".into()),
            ..ca.clone()
        };
        assert!(err("h:1", &half).contains("--cert and --key"));
    }
}
