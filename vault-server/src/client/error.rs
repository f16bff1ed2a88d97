//! What can go wrong on the client side, in words a user can act on.
//!
//! Each variant's message is the line `vaultctl` prints after `vaultctl: ` (docs/cli.md); a
//! test of the CLI compares some of them byte for byte, so a wording change is an output
//! change. Causes are kept as `#[source]` where there is one.

use std::io;
use std::path::PathBuf;

/// A client-side failure: the daemon could not be reached, a call failed, the output could
/// not be written, or an import stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address has a scheme other than `http://` or `https://`.
    #[error("bad address {addr}: use http://HOST:PORT, https://HOST:PORT or HOST:PORT")]
    AddressScheme {
        /// The address as given.
        addr: String,
    },
    /// TLS options were given with a plaintext `http://` address.
    #[error(
        "TLS options were given but the address {addr} is plaintext (http://): use \
         https://HOST:PORT or a bare HOST:PORT"
    )]
    PlaintextAddress {
        /// The address as given.
        addr: String,
    },
    /// A TLS address without the CA certificate to check the daemon's certificate with.
    #[error(
        "{addr} is a TLS address: pass --ca-cert FILE (or VAULT_CA_CERT), the CA certificate \
         that signed the daemon's certificate"
    )]
    NoCaCert {
        /// The address as given.
        addr: String,
    },
    /// A client certificate without its key, or a key without its certificate.
    #[error("mutual TLS needs both --cert and --key (or VAULT_CERT and VAULT_KEY)")]
    HalfIdentity,
    /// A TLS file (CA certificate, client certificate or key) could not be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    TlsFile {
        /// Which file: `CA certificate`, `client certificate`, `client key`.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The address is not one the transport can use.
    #[error("bad address {addr}: {source}")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS files do not make a usable TLS configuration.
    #[error("TLS settings: {}", cause_chain(source))]
    TlsSettings {
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The daemon could not be reached.
    #[error("cannot connect to {url}: {} ({})", cause_chain(source), connect_hint(*secure))]
    Connect {
        /// The URL tried.
        url: String,
        /// Whether over TLS (the hint differs).
        secure: bool,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// A token or purpose holds bytes that metadata cannot carry.
    #[error("the {0} contains characters that cannot be sent")]
    Unsendable(&'static str),
    /// A call failed: the daemon's status, or a connection failure made on this side.
    #[error("{}", status_line(.0))]
    Call(#[from] tonic::Status),
    /// Standard output could not be written (other than a closed pipe, which ends quietly).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    /// A date argument is not `YYYY-MM-DD`.
    #[error("{0:?} is not a date: expected YYYY-MM-DD")]
    BadDate(String),
    /// The CSV file cannot be imported as given (its reason names the file, row or column).
    #[error("{0}")]
    Csv(String),
    /// The import's file reader could not start.
    #[error("cannot start the file reader: {0}")]
    ReaderStart(#[source] io::Error),
    /// The import's file reader stopped without saying what it read.
    #[error("the file reader stopped unexpectedly")]
    ReaderStopped,
    /// The file stopped being readable part way.
    #[error("{reason} (after {rows} rows; the rows before were imported)")]
    ImportFile {
        /// What went wrong reading it.
        reason: String,
        /// Rows read before.
        rows: u64,
    },
    /// The first `Import` call failed: nothing was imported.
    #[error(
        "import failed: {} (re-running the file is safe: rows already imported change \
         nothing)",
        status_line(.0)
    )]
    ImportFailed(tonic::Status),
    /// A later `Import` call failed: the rows of the calls before it were imported.
    #[error(
        "import stopped at the call starting with file row {first_row}: {}. Rows before it \
         were imported ({created} created, {updated} updated, {unchanged} unchanged); rows \
         from it on may be partly imported. Re-running the file is safe: rows already \
         imported change nothing",
        status_line(status)
    )]
    ImportStopped {
        /// The file row the failed call started with.
        first_row: u64,
        /// Supporters created by the calls before.
        created: u64,
        /// Supporters updated by the calls before.
        updated: u64,
        /// Rows unchanged in the calls before.
        unchanged: u64,
        /// The failed call's status.
        status: tonic::Status,
    },
}

fn connect_hint(secure: bool) -> &'static str {
    if secure {
        "is the daemon running there with TLS on, signed by --ca-cert, for this host name \
         (--tls-server-name)?"
    } else {
        "is the daemon running there? If it serves TLS, use https:// with --ca-cert"
    }
}

/// An error and its causes, outermost first (`transport error: …: connection refused`).
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// A gRPC status as one line: `Code: message`. A status made on this side (the connection
/// failed: it has a cause, a daemon's reply has none) gets its causes and what to check.
pub fn status_line(s: &tonic::Status) -> String {
    let mut line = format!("{:?}: {}", s.code(), s.message());
    if let Some(cause) = std::error::Error::source(s) {
        line.push_str(": ");
        line.push_str(&cause_chain(cause));
        line.push_str(
            " (the connection to the daemon failed: is it running at that address? If it \
             serves TLS, use https:// with --ca-cert)",
        );
    }
    line
}
