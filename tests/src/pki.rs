//! Test certificates for the TLS tests (X.509, RFC 5280): a CA and the leaves it signs, as
//! PEM to write (with [`crate::write`]) where the daemon's `[tls]` section points.

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A certificate authority with its key.
pub struct Ca {
    /// Its self-signed certificate.
    pub cert: rcgen::Certificate,
    /// Its private key, which signs the leaves.
    pub key: KeyPair,
}

/// A self-signed CA named `name`.
pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// A leaf certificate for `names` signed by `ca`: (certificate PEM, key PEM, certificate
/// DER).
pub fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    super::leaks::watch_pem_key(&key.serialize_pem());
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}
