//! What a `vaultctl` command can fail with, and the exit status each failure means.
//!
//! `vaultctl` prints a failure as one line on stderr, `vaultctl: <message>`, and exits 1;
//! clap's own usage errors exit 2; an import that finished with rejected rows exits 3
//! ([`EXIT_REJECTED_ROWS`]). The messages are part of the command line's output
//! (docs/cli.md; the CLI tests compare some byte for byte).

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use vault_core::storage::StoreError;
use vault_core::storage::copy::CopyError;

use crate::client;

/// Exit status of an import that finished with rejected rows: not 1 (a failure) nor 2 (what
/// clap exits with on a usage error), so a script tells the three apart.
pub const EXIT_REJECTED_ROWS: u8 = 3;

/// A failed `vaultctl` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// Reaching or calling the daemon failed, or the output could not be written.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// `--token-file` was given and cannot be read.
    #[error("cannot read --token-file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No token anywhere, and no client certificate to stand in for one.
    #[error(
        "no token: pass --token, set VAULT_TOKEN, pass --token-file, make {} readable, or \
         connect with a registered client certificate (--cert, --key) ({source})",
        path.display()
    )]
    NoToken {
        /// The admin token file looked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// A file could not be read, written or resolved: `cannot <verb> <path>: <why>`.
    #[error("cannot {verb} {}: {source}", path.display())]
    File {
        /// `read`, `write`, `resolve`.
        verb: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A private file (personal data) could not be written whole: `cannot <step> <path>: <why>`.
    #[error(transparent)]
    PrivateFile(#[from] vault_core::fsutil::WriteError),
    /// Standard input could not be read.
    #[error("cannot read standard input: {0}")]
    Stdin(#[source] io::Error),
    /// A file given on the command line does not hold what it should: `<path>: <why>`.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--witness` key is not a witness's verifier key.
    #[error("--witness {arg}: {reason}")]
    BadWitness {
        /// The argument as given.
        arg: String,
        /// Why.
        reason: String,
    },
    /// Fewer `--witness` keys than `--require-witnesses` asks for.
    #[error(
        "--require-witnesses {required} needs at least {required} --witness keys, {given} given"
    )]
    TooFewWitnesses {
        /// Cosignatures required.
        required: usize,
        /// Witness keys given.
        given: usize,
    },
    /// `--json` with a `--format` other than json.
    #[error("--json prints the report as JSON: drop --format {format}, or --json")]
    FormatAndJson {
        /// The format asked for.
        format: String,
    },
    /// A field both set and cleared by `supporter update`.
    #[error("{field} is both set and cleared: pass one of them")]
    SetAndCleared {
        /// The field's path.
        field: String,
    },
    /// `supporter update` with nothing to change.
    #[error("nothing to change: pass the fields to set, or --clear FIELD")]
    NothingToChange,
    /// Neither of two alternative arguments was given.
    #[error("pass {0}")]
    Missing(&'static str),
    /// `import` without a purpose.
    #[error(
        "import needs --purpose (or VAULT_PURPOSE): the purpose the supporters are imported for"
    )]
    NoImportPurpose,
    /// `audit public-key --vkey` against a daemon that has none.
    #[error("the daemon does not give a vkey (an older version)")]
    NoVkey,
    /// `audit pin` or `verify-since` before the first signed checkpoint.
    #[error("the log has no signed checkpoint yet")]
    NoCheckpoint,
    /// The daemon replied with what it should not have.
    #[error("{0}")]
    BadReply(&'static str),
    /// The export document is not text.
    #[error("the export document is not UTF-8")]
    ExportNotUtf8,
    /// The daemon sent something other than an erasure journal.
    #[error("the daemon sent something other than an erasure journal: {0}")]
    NotAJournal(String),
    /// A log does not verify (offline, or against a pinned checkpoint).
    #[error("verification failed: {0}")]
    Verification(String),
    /// JSON could not be written.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A vault operation run by the command line itself failed.
    #[error("{0}")]
    Vault(#[from] vault_core::Error),
    /// A store could not be reached or opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// `migrate` found no embedded store.
    #[error("no embedded store in {} (pass the daemon's --data-dir)", dir.display())]
    NoStore {
        /// Where it looked.
        dir: PathBuf,
    },
    /// `migrate` could not open the embedded store.
    #[error("cannot open the embedded store in {} (stop the daemon first): {source}", dir.display())]
    OpenStore {
        /// The store's directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// `migrate` failed part way.
    #[error("migration to {to} failed: {source}")]
    Migration {
        /// The destination.
        to: String,
        /// Why.
        #[source]
        source: CopyError,
    },
    /// `restore` failed.
    #[error("restore failed: {0}")]
    Restore(#[source] vault_core::Error),
    /// An import finished with rejected rows (its summary was printed).
    #[error(
        "{rejected} of {rows} rows rejected and not imported (listed above); exit status \
         {EXIT_REJECTED_ROWS}. Fix them and import the file again (rows already imported \
         change nothing), or pass --allow-rejects"
    )]
    RejectedRows {
        /// Rows rejected.
        rejected: u64,
        /// Rows read.
        rows: u64,
    },
}

impl From<tonic::Status> for CtlError {
    fn from(status: tonic::Status) -> Self {
        Self::Client(client::Error::Call(status))
    }
}

impl CtlError {
    /// The exit status this failure means: [`EXIT_REJECTED_ROWS`] for an import that
    /// finished with rejected rows, 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }

    /// [`Self::exit_code`] as a number.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::RejectedRows { .. } => EXIT_REJECTED_ROWS,
            _ => 1,
        }
    }

    /// `<path>: <reason>`.
    pub(crate) fn bad_file(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// `cannot <verb> <path>: <why>`, as a closure for `map_err`.
    pub(crate) fn file(
        verb: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::File { verb, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_exit_codes() {
        let e = CtlError::RejectedRows {
            rejected: 2,
            rows: 5,
        };
        assert!(e.to_string().starts_with("2 of 5 rows rejected"), "{e}");
        assert!(e.to_string().contains("exit status 3."), "{e}");
        assert_eq!(e.exit_status(), 3);
        let e = CtlError::file("read", std::path::Path::new("/x"))(io::ErrorKind::NotFound.into());
        assert_eq!(e.to_string(), "cannot read /x: entity not found");
        assert_eq!(e.exit_status(), 1);
        let e: CtlError = tonic::Status::permission_denied("no").into();
        assert_eq!(e.to_string(), "PermissionDenied: no");
    }
}
