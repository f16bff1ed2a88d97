//! `vaultctl`, the vault's command line: the clap tree, the typed failure ([`CtlError`]) with
//! its exit status, and one module per command group. `bin/vaultctl.rs` only calls
//! [`main`]. Talks to a running daemon over gRPC, except `migrate`, `restore` and `audit
//! verify`, which run offline, without one.
//!
//! Address and token come from flags, the environment (`VAULT_ADDR`, `VAULT_TOKEN`), or the
//! admin token file the daemon wrote on first start; a flag beats the environment, and an
//! explicit `--token-file` beats `VAULT_TOKEN`. `--ca-cert` (with `--cert`/`--key` for
//! mutual TLS) reaches a daemon that serves TLS; a registered client certificate may stand
//! in for the token. Output is JSON on stdout (the rights, key, backup, retention, import,
//! watch, `report processing` and `audit public-key` commands print readable lines unless
//! `--json`); failures print one line on stderr and exit non-zero. docs/cli.md gives each
//! command's output shape.
//!
//! Each command returns the text to print (empty when it printed as it went) or a
//! [`CtlError`]; [`main`] prints either and picks the exit status.

// Doc comments on the clap types are the command line's --help text, written for a
// terminal: `<file>` and `[:<channel>]` are placeholders there, not HTML or intra-doc links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod admin;
mod audit;
mod consent;
mod error;
mod import;
mod purpose;
mod report;
mod rights;
mod store;
mod supporter;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::{CtlError, EXIT_REJECTED_ROWS};

use crate::client::output::write_line;
use crate::client::{CallMetadata, Session, TlsFiles, Token};
use crate::daemon::config::{ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR, DEFAULT_LISTEN};

#[derive(Debug, Parser)]
#[command(
    name = "vaultctl",
    version,
    about = "Command line for the vault daemon"
)]
pub(crate) struct Cli {
    /// Daemon address: http://HOST:PORT, https://HOST:PORT, or HOST:PORT (TLS when a TLS
    /// option is given).
    #[arg(long, env = "VAULT_ADDR", default_value_t = format!("http://{DEFAULT_LISTEN}"), global = true)]
    addr: String,
    /// CA certificate (PEM) that signed the daemon's TLS certificate; means TLS.
    #[arg(long, env = "VAULT_CA_CERT", global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --key; a registered certificate
    /// identifies the client without a token.
    #[arg(long, env = "VAULT_CERT", global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "VAULT_KEY", global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Name the daemon's certificate must carry (default: the address's host).
    #[arg(
        long,
        env = "VAULT_TLS_SERVER_NAME",
        global = true,
        value_name = "NAME"
    )]
    tls_server_name: Option<String>,
    /// Bearer token (prefer VAULT_TOKEN or a token file: flags are visible to other users).
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File holding the token (default: <data-dir>/admin.token); when given, it beats
    /// VAULT_TOKEN.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Purpose of the call (`x-vault-purpose`), required for supporter, consent, import and
    /// watch commands (rights commands default to data-subject-rights).
    #[arg(long, env = "VAULT_PURPOSE", global = true)]
    purpose: Option<String>,
    /// The daemon's data directory, to find the admin token file.
    #[arg(long, env = "VAULT_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,
    /// Print JSON instead of readable lines (rights, keys, backup, retention, import, watch,
    /// report processing, audit public-key); accepted by every command, where the output is
    /// JSON anyway it changes nothing (docs/cli.md).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Supporter records.
    #[command(subcommand)]
    Supporter(supporter::SupporterCommand),
    /// Consent of a supporter.
    #[command(subcommand)]
    Consent(consent::ConsentCommand),
    /// Clients of the vault (admin).
    #[command(subcommand)]
    Client(admin::ClientCommand),
    /// The purpose registry (admin).
    #[command(subcommand)]
    Purpose(purpose::PurposeCommand),
    /// Separation of duties (admin): propose what widens access to personal data, list the
    /// proposals, approve another admin's.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Copy the embedded store (in --data-dir) into PostgreSQL, table by table, without
    /// decrypting anything. Stop the daemon first; the destination must be empty. Needs no
    /// daemon and no token.
    Migrate(store::MigrateArgs),
    /// Reports (admin and dpo roles).
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// The tamper-evident access log (auditor and dpo roles; `verify` runs offline).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write a consistent, encrypted backup of the store while the daemon serves (admin).
    /// The backup holds ciphertext only, never the root key: keep the root key file apart.
    Backup {
        /// A new (or empty) directory on the daemon's machine; a relative path is taken
        /// from the current directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into --data-dir (or the PostgreSQL database of --database-url),
    /// offline: stop the daemon (every replica) first. Needs no daemon and no token, but the
    /// root key file that made the backup. Erasures made since the backup are replayed from
    /// the target store's journal and the --journal files; without a journal at least as new
    /// as the backup (the store is lost), it refuses unless told the risk is accepted.
    Restore(store::RestoreArgs),
    /// The erasure journal (admin): ids, times and request references, no personal data.
    #[command(subcommand)]
    Erasures(store::ErasuresCommand),
    /// Data-subject rights (dpo role): export, erasure, restriction, objection, tickets.
    /// Calls on personal data declare the purpose data-subject-rights unless --purpose says
    /// otherwise.
    #[command(subcommand)]
    Rights(rights::RightsCommand),
    /// Key epochs (admin).
    #[command(subcommand)]
    Keys(store::KeysCommand),
    /// Retention (admin).
    #[command(subcommand)]
    Retention(store::RetentionCommand),
    /// Import supporters from a CSV file under --purpose, with a progress bar and a summary.
    Import(Box<import::ImportArgs>),
    /// Follow the change feed (ids and kinds, never personal data) under --purpose: only the
    /// people that purpose has a basis for, and its own consent events.
    Watch {
        /// Start after this cursor (default: the oldest retained change).
        #[arg(long)]
        cursor: Option<String>,
        /// Keep following; without it, stop once caught up (no event for a second).
        #[arg(long)]
        follow: bool,
    },
}

/// `vaultctl`'s `main`: parses the command line (clap exits 2 on a usage error), runs the
/// command, prints its output on stdout, or `vaultctl: <message>` on stderr with the
/// failure's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CtlError::Runtime)
        .and_then(|runtime| runtime.block_on(run(cli)));
    let printed = done.and_then(|text| {
        // Streaming commands print as they go and return nothing more.
        if !text.is_empty() {
            write_line(&mut std::io::stdout(), &text)?;
        }
        Ok(())
    });
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vaultctl: {e}");
            e.exit_code()
        }
    }
}

/// Runs the command: the offline ones first, then those that call the daemon.
async fn run(cli: Cli) -> Result<String, CtlError> {
    let json = cli.json;
    let session = match cli.command {
        Command::Migrate(ref args) => return store::migrate(&cli.data_dir, args).await,
        Command::Restore(ref args) => return store::restore(&cli.data_dir, args).await,
        Command::Audit(audit::AuditCommand::Verify(ref args)) => {
            return audit::verify_offline(args);
        }
        _ => cli.session().await?,
    };
    let purpose = cli.purpose.as_deref();
    match cli.command {
        Command::Supporter(c) => supporter::run(&session.with_purpose(purpose), c).await,
        Command::Consent(c) => consent::run(&session.with_purpose(purpose), c).await,
        Command::Client(c) => admin::clients(&session, c).await,
        Command::Admin(c) => admin::run(&session, c).await,
        Command::Purpose(c) => purpose::run(&session, c).await,
        Command::Report(c) => report::run(&session, c, json).await,
        Command::Audit(c) => audit::run(&session, c, json).await,
        Command::Rights(c) => rights::run(&session, purpose, c, json).await,
        Command::Keys(c) => store::keys(&session, c, json).await,
        Command::Retention(c) => store::retention(&session, c, json).await,
        Command::Backup { out } => store::backup(&session, &out, json).await,
        Command::Erasures(c) => store::erasures(&session, c).await,
        Command::Import(a) => import::run(&session, purpose, *a, json).await,
        Command::Watch { cursor, follow } => {
            watch::run(&session.with_purpose(purpose), cursor, follow, json).await
        }
        // Offline: run by the first match, before any token or connection.
        Command::Migrate(_) | Command::Restore(_) => Ok(String::new()),
    }
}

impl Cli {
    /// The token to send: an explicit `--token-file` (which must be readable), else
    /// `--token` or `VAULT_TOKEN`, else the admin token file under the data directory. With
    /// a client certificate and none of them, no token (the certificate identifies the
    /// client).
    fn token(&self) -> Result<Option<Token>, CtlError> {
        if let Some(path) = &self.token_file {
            return Token::read_file(path).map_err(|source| CtlError::TokenFile {
                path: path.clone(),
                source,
            });
        }
        if let Some(t) = &self.token {
            return Ok(Token::new(t));
        }
        let path = self.data_dir.join(ADMIN_TOKEN_FILE);
        match Token::read_file(&path) {
            Ok(t) => Ok(t),
            Err(_) if self.cert.is_some() => Ok(None),
            Err(source) => Err(CtlError::NoToken { path, source }),
        }
    }

    fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            ca_cert: self.ca_cert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            server_name: self.tls_server_name.clone(),
        }
    }

    /// The token, then the connection: a session whose requests carry no purpose yet.
    async fn session(&self) -> Result<Session, CtlError> {
        let token = self.token()?;
        let channel = crate::client::connect(&self.addr, &self.tls_files()).await?;
        Ok(Session::new(channel, CallMetadata::new(token)))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_explicit_token_beats_the_admin_token_file_and_a_certificate_stands_in() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |args: &[&str]| {
            let data = dir.path().to_str().unwrap().to_owned();
            let mut all = vec!["vaultctl", "--data-dir", &data];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).unwrap()
        };
        let token = parse(&["--token", " t1 ", "client", "list"])
            .token()
            .unwrap();
        assert_eq!(format!("{token:?}"), "Some(Token(<secret>))");
        let none = parse(&["client", "list"]).token().unwrap_err().to_string();
        assert!(none.starts_with("no token: pass --token"), "{none}");
        let cert = parse(&["--cert", "c.pem", "--key", "k.pem", "client", "list"]);
        assert!(cert.token().unwrap().is_none());
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "admin\n").unwrap();
        assert!(parse(&["client", "list"]).token().unwrap().is_some());
        let missing = parse(&["--token-file", "/nonexistent/t", "client", "list"]);
        let e = missing.token().unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read --token-file /nonexistent/t: "),
            "{e}"
        );
    }
}
