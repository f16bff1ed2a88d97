//! `vaultctl`: the vault's command line. Talks to a running daemon over gRPC, except
//! `migrate`, `restore` and `audit verify`, which run offline, without one.
//!
//! Address and token come from flags, the environment (`VAULT_ADDR`, `VAULT_TOKEN`), or the
//! admin token file the daemon wrote on first start; a flag beats the environment, and an
//! explicit `--token-file` beats `VAULT_TOKEN`. `--ca-cert` (with `--cert`/`--key` for
//! mutual TLS) reaches a daemon that serves TLS; a registered client certificate may stand
//! in for the token. Output is JSON on stdout (the rights, key, backup, retention, import,
//! watch, `report processing` and `audit public-key` commands print readable lines unless
//! `--json`); failures print one line on stderr and exit non-zero. docs/cli.md gives each
//! command's output shape.

#![forbid(unsafe_code)]
// Doc comments here are the command line's --help text, written for a terminal: `<file>`
// and `[:<channel>]` are placeholders there, not HTML or intra-doc links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use tonic::transport::Channel;
use vault_core::backup::{ErasureJournal, RestoreOptions};
use vault_core::storage::copy::{DEFAULT_BATCH_ROWS, copy_store};
use vault_core::storage::sled_store::SledOptions;
use vault_core::storage::{DatabaseUrl, PostgresOptions, PostgresStore, SledStore};
use vault_core::{StorageChoice, Vault, VaultOptions};
use vault_proto::v1 as pb;
use vault_proto::v1::admin_client::AdminClient;
use vault_proto::v1::audit_client::AuditClient;
use vault_proto::v1::consent_client::ConsentClient;
use vault_proto::v1::rights_client::RightsClient;
use vault_proto::v1::supporters_client::SupportersClient;
use vault_server::client::csv_import::{
    CsvRows, MappingOptions, Preset, Progress, ReadOptions, RowDefaults,
};
use vault_server::client::{CallMetadata, Session, Token};
use vault_server::config::{ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR, DEFAULT_LISTEN};

use ctl::{status_line, supporter_json, with_token, write_line};

/// The client library under the names this file used before it moved (step 2 of the
/// redesign; step 3 replaces this file).
mod ctl {
    pub use vault_server::client::TlsFiles;
    pub use vault_server::client::output::*;
    use vault_server::client::{CallMetadata, Token};

    pub const RIGHTS_PURPOSE: &str = vault_proto::metadata::DPO_PURPOSE;

    pub async fn connect(addr: &str, tls: &TlsFiles) -> Result<tonic::transport::Channel, String> {
        vault_server::client::connect(addr, tls)
            .await
            .map_err(|e| e.to_string())
    }

    pub fn with_token<T>(
        message: T,
        token: &str,
        purpose: Option<&str>,
    ) -> Result<tonic::Request<T>, String> {
        CallMetadata::new(Token::new(token))
            .with_purpose(purpose)
            .request(message)
            .map_err(|e| e.to_string())
    }

    pub fn status_line(s: tonic::Status) -> String {
        vault_server::client::status_line(&s)
    }

    pub fn parse_date(s: &str) -> Result<prost_types::Timestamp, String> {
        vault_server::client::output::parse_date(s).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "vaultctl",
    version,
    about = "Command line for the vault daemon"
)]
struct Cli {
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
enum Command {
    /// Supporter records.
    #[command(subcommand)]
    Supporter(SupporterCommand),
    /// Consent of a supporter.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Clients of the vault (admin).
    #[command(subcommand)]
    Client(ClientCommand),
    /// The purpose registry (admin).
    #[command(subcommand)]
    Purpose(PurposeCommand),
    /// Separation of duties (admin): propose what widens access to personal data, list the
    /// proposals, approve another admin's.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Copy the embedded store (in --data-dir) into PostgreSQL, table by table, without
    /// decrypting anything. Stop the daemon first; the destination must be empty. Needs no
    /// daemon and no token.
    Migrate(MigrateArgs),
    /// Reports (admin and dpo roles).
    #[command(subcommand)]
    Report(ReportCommand),
    /// The tamper-evident access log (auditor and dpo roles; `verify` runs offline).
    #[command(subcommand)]
    Audit(AuditCommand),
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
    Restore(RestoreArgs),
    /// The erasure journal (admin): ids, times and request references, no personal data.
    #[command(subcommand)]
    Erasures(ErasuresCommand),
    /// Data-subject rights (dpo role): export, erasure, restriction, objection, tickets.
    /// Calls on personal data declare the purpose data-subject-rights unless --purpose says
    /// otherwise.
    #[command(subcommand)]
    Rights(RightsCommand),
    /// Key epochs (admin).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Retention (admin).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Import supporters from a CSV file under --purpose, with a progress bar and a summary.
    Import(Box<ImportArgs>),
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

#[derive(Debug, Subcommand)]
enum RightsCommand {
    /// The person's whole file as JSON (art. 15 and 20), to stdout or --out.
    Export {
        /// Supporter id.
        #[arg(long, conflicts_with = "email", required_unless_present = "email")]
        id: Option<String>,
        /// Email (any casing).
        #[arg(long)]
        email: Option<String>,
        /// Write the document to this file (created with mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erase the person (art. 17) and print the receipt.
    Erase {
        /// Supporter id.
        #[arg(long)]
        id: String,
        /// The rights request this answers.
        #[arg(long)]
        request_ref: String,
        /// Also refuse any later import or upsert of the person's email and phone.
        #[arg(long)]
        suppress: bool,
    },
    /// Restrict processing (art. 18): data kept, every purpose but the DPO's refused.
    Restrict(RestrictArgs),
    /// Lift a restriction.
    Unrestrict(RestrictArgs),
    /// Record an objection (art. 21), per channel (no --channel: every channel).
    Object {
        /// Supporter id.
        #[arg(long)]
        id: String,
        /// Channel objected to: email, sms, in-person, post (repeatable).
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// The rights request this answers.
        #[arg(long)]
        request_ref: String,
    },
    /// Rights request tickets (art. 12: one month to answer).
    #[command(subcommand)]
    Requests(RequestsCommand),
}

#[derive(Debug, ClapArgs)]
struct RestrictArgs {
    /// Supporter id.
    #[arg(long)]
    id: String,
    /// The rights request this answers.
    #[arg(long)]
    request_ref: String,
}

#[derive(Debug, Subcommand)]
enum RequestsCommand {
    /// Open a ticket.
    Open {
        /// access, portability, rectification, erasure, restriction or objection.
        #[arg(long)]
        kind: String,
        /// When the request reached you, YYYY-MM-DD (default: today).
        #[arg(long)]
        received: Option<String>,
        /// Supporter id, when known.
        #[arg(long)]
        subject: Option<String>,
        /// Your own reference for the request: a number with an optional prefix word
        /// (REQ-2026-017, "letter 2026-01-31"), never a name: it stays after erasure.
        #[arg(long)]
        reference: String,
    },
    /// List open tickets.
    List {
        /// Only those past their due date.
        #[arg(long)]
        overdue: bool,
        /// Closed ones too.
        #[arg(long)]
        all: bool,
    },
    /// Close a ticket.
    Close {
        /// Ticket id.
        #[arg(long)]
        id: String,
        /// How it was answered, comma-separated codes: answered, exported, erased,
        /// rectified, restricted, unrestricted, objection-recorded, consent-withdrawn,
        /// no-data-held, extended, refused-unfounded, refused-excessive,
        /// refused-identity-unverified, withdrawn-by-person.
        #[arg(long)]
        action: String,
    },
}

#[derive(Debug, Subcommand)]
enum ErasuresCommand {
    /// Write the erasure journal as of now to FILE (0600, replaced atomically), for
    /// `vaultctl restore --journal FILE` after the store is lost. Run it often (cron) and
    /// copy FILE to another machine: it holds no personal data.
    Export {
        /// Where to write the journal.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Start a new key epoch, re-wrap every supporter key under it, destroy epochs retired
    /// for longer than the backup window.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Erase supporters no purpose may keep any longer.
    Sweep {
        /// Only list them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, ClapArgs)]
struct ImportArgs {
    /// The CSV file: a header line, then one supporter per line. Headers are recognised in
    /// English and French (email/courriel, prénom, code postal, ...), custom_<key> columns
    /// fill custom fields, consent:<purpose>[:<channel>] columns carry consent (yes: 1, yes,
    /// y, oui, o, true, vrai, x; no: empty, 0, no, n, non, false, faux). Every header:
    /// docs/import.md. A row is imported whole or refused whole, with its row number,
    /// column and reason. Exit status: 0 when every row was imported, 3 when the import
    /// finished with rejected rows (unless --allow-rejects), 1 when it failed.
    file: PathBuf,
    /// Another tool's export: nationbuilder maps NationBuilder's people export (its columns
    /// without a place in a supporter are listed in the summary, with their non-empty
    /// cells, and the import goes on).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// The supporters' source when a row has none (default: import:<file name>).
    #[arg(long)]
    source: Option<String>,
    /// Map a column: column=field (field: email, phone, given_name, family_name, line1,
    /// line2, postcode, city, country, tags, source, custom_<key>,
    /// consent:<purpose>[:<channel>], ignore). Repeatable.
    #[arg(long = "map", value_parser = parse_column_map)]
    map: Vec<(String, String)>,
    /// Rows per Import call.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// Version of the information notice the people saw (needed with consent columns).
    #[arg(long)]
    notice_version: Option<String>,
    /// Leave out columns nothing maps instead of refusing the file (they are listed in the
    /// summary, with their non-empty cells).
    #[arg(long)]
    ignore_unknown: bool,
    /// Exit 0 even when rows were rejected (they are still listed in the summary).
    #[arg(long, conflicts_with = "strict")]
    allow_rejects: bool,
    /// Fail (exit status 3) when any row was rejected: the default; kept for scripts that
    /// pass it.
    #[arg(long)]
    strict: bool,
    /// Field delimiter (default: sniffed from the header line among , ; and tab).
    #[arg(long, value_parser = parse_delimiter)]
    delimiter: Option<u8>,
}

fn parse_column_map(s: &str) -> Result<(String, String), String> {
    s.rsplit_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
        .ok_or_else(|| "expected column=field".to_owned())
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "tab" => Ok(b'\t'),
        _ => match s.as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' => Ok(*b),
            _ => Err("expected one ASCII character, or tab".to_owned()),
        },
    }
}

#[derive(Debug, ClapArgs)]
struct RestoreArgs {
    /// The backup directory (holding manifest.json and store/).
    #[arg(long)]
    backup: PathBuf,
    /// Root key file (default: <data-dir>/root.key): the one of the vault that made the
    /// backup.
    #[arg(long, env = "VAULT_ROOT_KEY_FILE")]
    root_key: Option<PathBuf>,
    /// PostgreSQL URL of the store to restore into (default: the embedded store in
    /// --data-dir). Prefer VAULT_DATABASE_URL: flags are visible to other users.
    #[arg(long, env = "VAULT_DATABASE_URL", hide_env_values = true, value_parser = parse_database_url)]
    database_url: Option<DatabaseUrl>,
    /// PostgreSQL schema of the vault's tables.
    #[arg(long, env = "VAULT_DATABASE_SCHEMA", default_value = "public")]
    database_schema: String,
    /// Connect to PostgreSQL without TLS although its host is not this machine.
    #[arg(long, env = "VAULT_DATABASE_ALLOW_PLAINTEXT")]
    database_allow_plaintext: bool,
    /// An erasure journal to replay too (repeatable): one exported after the backup was
    /// taken (`vaultctl erasures export`), or one saved by an earlier, interrupted restore
    /// (erasure-journal.before-restore-*.json).
    #[arg(long = "journal")]
    journals: Vec<PathBuf>,
    /// Restore even without an erasure journal at least as new as the backup (the target
    /// store is lost and no recent export is at hand): people erased after the backup was
    /// taken come back, and must be erased again.
    #[arg(long)]
    accept_erased_people_may_return: bool,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// The record of processing activities (GDPR art. 30).
    Processing {
        /// markdown (the default) or json; --json means json.
        #[arg(long)]
        format: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Write the offline-verifiable log file (docs/audit-log-format.md).
    Export {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// First entry wanted (widened to the signed checkpoint before it).
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Last entry wanted (0: up to the head).
        #[arg(long, default_value_t = 0)]
        to_seq: u64,
        /// End the file at the newest checkpoint that at least this many witnesses
        /// cosigned, with their cosignatures (0: end at the head).
        #[arg(long, default_value_t = 0)]
        min_cosignatures: u32,
    },
    /// Print the log's Ed25519 public key (hex), or with --vkey its C2SP verifier key.
    PublicKey {
        /// Print the signed-note verifier key `<origin>+<key id>+<base64>` instead, to
        /// configure witnesses and auditors with.
        #[arg(long)]
        vkey: bool,
    },
    /// Verify an exported file offline: no daemon, no token.
    Verify {
        /// The exported file.
        file: PathBuf,
        /// The public key file: 32 raw bytes, or hex, or base64.
        #[arg(long)]
        public_key: PathBuf,
        /// Require the whole retained log: the file starts at entry 0 or exactly at the
        /// log's signed retention cut (a dropped prefix, or a range export, is refused).
        #[arg(long)]
        whole: bool,
        /// A witness's cosigning key (vkey `<name>+<key id>+<base64(0x04 ‖ key)>`, or a file
        /// holding one); repeat for several.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// Fail unless the file's signed end carries valid cosignatures from at least this
        /// many of the --witness keys (0: cosignatures are not required).
        #[arg(long, default_value_t = 0)]
        require_witnesses: usize,
        /// A checkpoint you kept (saved by `audit pin`): fail unless the file's log extends
        /// it (its Merkle root at the checkpoint's size is the checkpoint's root), both
        /// signed by --public-key. Offline: the file must reach the checkpoint's size and
        /// start no later.
        #[arg(long, value_name = "CHECKPOINT")]
        since: Option<PathBuf>,
    },
    /// Save the newest signed checkpoint to a file, to check later that the log still
    /// extends it (`audit verify-since`).
    Pin {
        /// Where to write it (JSON; holds no personal data).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check that the daemon's current log extends a pinned checkpoint: both signatures
    /// with the public key you hold, and the RFC 9162 consistency proof between them (asks
    /// the daemon; `audit verify FILE --since CHECKPOINT` does the same offline, on an
    /// exported file).
    VerifySince {
        /// A checkpoint saved by `audit pin`.
        pinned: PathBuf,
        /// The public key file: 32 raw bytes, or hex, or base64.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// List signed checkpoints.
    Checkpoints {
        /// Only checkpoints of at least this size.
        #[arg(long, default_value_t = 0)]
        since_seq: u64,
    },
    /// List entries (JSON lines), filtered.
    Query {
        /// About this supporter.
        #[arg(long)]
        subject: Option<String>,
        /// By this client id.
        #[arg(long)]
        actor: Option<String>,
        /// Of this call, e.g. Supporters.Get.
        #[arg(long)]
        action: Option<String>,
    },
}

#[derive(Debug, ClapArgs)]
struct MigrateArgs {
    /// The engine to copy into.
    #[arg(long, value_enum)]
    to: MigrateTarget,
    /// PostgreSQL URL of the destination (prefer VAULT_DATABASE_URL: flags are visible to
    /// other users of the machine).
    #[arg(long, env = "VAULT_DATABASE_URL", hide_env_values = true, value_parser = parse_database_url)]
    database_url: DatabaseUrl,
    /// PostgreSQL schema to fill (created if missing).
    #[arg(long, env = "VAULT_DATABASE_SCHEMA", default_value = "public")]
    database_schema: String,
    /// Connect to PostgreSQL without TLS although its host is not this machine.
    #[arg(long, env = "VAULT_DATABASE_ALLOW_PLAINTEXT")]
    database_allow_plaintext: bool,
    /// Rows per destination transaction.
    #[arg(long, default_value_t = DEFAULT_BATCH_ROWS)]
    batch_rows: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MigrateTarget {
    /// PostgreSQL (`--database-url`).
    Postgres,
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
    if s.trim().is_empty() {
        return Err("the database URL is empty".to_owned());
    }
    Ok(DatabaseUrl::new(s.trim()))
}

#[derive(Debug, Subcommand)]
enum ConsentCommand {
    /// Record that the person consents.
    Grant(ConsentArgs),
    /// Record that the person withdraws consent.
    Withdraw(ConsentArgs),
    /// Current consent per purpose and channel.
    Status {
        /// Supporter id.
        id: String,
    },
    /// Every consent event, oldest first.
    History {
        /// Supporter id.
        id: String,
    },
}

#[derive(Debug, ClapArgs)]
struct ConsentArgs {
    /// Supporter id.
    id: String,
    /// Purpose consented to (default: --purpose).
    #[arg(long = "for")]
    for_purpose: Option<String>,
    /// Channel: email, sms, phone, post, in-person (optional when the purpose has one).
    #[arg(long)]
    channel: Option<String>,
    /// Where it was collected: form, import, in-person, phone, email, other.
    #[arg(long, default_value = "other")]
    source: String,
    /// Version of the information notice the person saw.
    #[arg(long, default_value = "")]
    notice_version: String,
    /// The supporter's email the consent came through (grant: this or --contact-phone is
    /// required, the proof that the consent was collected from the person).
    #[arg(long)]
    contact_email: Option<String>,
    /// The supporter's phone the consent came through (see --contact-email).
    #[arg(long)]
    contact_phone: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client and print its token (shown once).
    Create {
        /// Name, e.g. mailer.
        #[arg(long)]
        name: String,
        /// campaign-tool, dpo, auditor or admin.
        #[arg(long)]
        role: String,
        /// Comma-separated purposes (campaign-tool).
        #[arg(long, value_delimiter = ',')]
        purposes: Vec<String>,
        /// SHA-256 fingerprint of the client's TLS certificate, for mutual TLS.
        #[arg(long)]
        cert_sha256: Option<String>,
        /// Hours after which the client's token (and certificate) stop working. Without
        /// it, the client works until revoked.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        expires_in_hours: Option<u32>,
    },
    /// Revoke a client: its token is refused from the next call on.
    Revoke {
        /// Client id.
        id: String,
    },
    /// List clients.
    List,
}

#[derive(Debug, Subcommand)]
enum PurposeCommand {
    /// List the purpose registry.
    List,
    /// Create or replace a purpose from a JSON file with the keys `list` prints (`-` for
    /// standard input). A change that widens access is refused: use `admin propose-purpose`.
    Put {
        /// The purpose as JSON.
        #[arg(long)]
        file: PathBuf,
    },
}
#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Propose a client for another admin to approve: a dpo, a campaign tool (any client that
    /// reads personal data), or a third admin. Prints the proposal and the client's token
    /// (shown once; it works once the proposal is approved).
    ProposeClient {
        /// Name, e.g. mailer.
        #[arg(long)]
        name: String,
        /// campaign-tool, dpo, auditor or admin.
        #[arg(long)]
        role: String,
        /// Comma-separated purposes (campaign-tool).
        #[arg(long, value_delimiter = ',')]
        purposes: Vec<String>,
        /// SHA-256 fingerprint of the client's TLS certificate, for mutual TLS.
        #[arg(long)]
        cert_sha256: Option<String>,
        /// Hours after which the client's token (and certificate) stop working.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        expires_in_hours: Option<u32>,
    },
    /// Propose a purpose for another admin to approve (a new one, or a change that adds
    /// fields or channels, changes a basis or shortens the retention), from a JSON file with
    /// the keys `purpose list` prints.
    ProposePurpose {
        /// The purpose as JSON (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
    },
    /// List the proposals waiting for a second admin, newest first, with their changes.
    Proposals {
        /// Every proposal kept, approved and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// Approve another admin's proposal: its change is applied at once.
    Approve {
        /// Proposal id.
        id: String,
        /// The change_sha256 you reviewed (from `admin proposals`): the approval is refused
        /// if the proposal's differs.
        #[arg(long)]
        sha256: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SupporterCommand {
    /// Create a supporter, or merge into the one with the same email or phone.
    Upsert(Box<UpsertArgs>),
    /// Change the given fields of a supporter (rectification, GDPR art. 16): only the
    /// fields passed (and those named by --clear) change; --tag and --custom replace the
    /// whole list.
    Update(Box<UpdateArgs>),
    /// Read a supporter by id.
    Get {
        /// Supporter id.
        id: String,
        /// Comma-separated field paths to return (default: all).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
    },
    /// Find a supporter by email or phone.
    Lookup {
        /// Email (any casing).
        #[arg(long, conflicts_with = "phone", required_unless_present = "phone")]
        email: Option<String>,
        /// Phone (any format; default region FR).
        #[arg(long)]
        phone: Option<String>,
    },
    /// Add tags to a supporter.
    Tag {
        /// Supporter id.
        id: String,
        /// Tags to add.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags from a supporter.
    Untag {
        /// Supporter id.
        id: String,
        /// Tags to remove.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// A consent-filtered segment under --purpose, as JSON lines.
    Search(SearchArgs),
}

#[derive(Debug, ClapArgs)]
struct SearchArgs {
    /// Supporters carrying this tag (repeatable: every one of them).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Supporters carrying at least one of these tags (repeatable).
    #[arg(long = "any-tag")]
    any_tags: Vec<String>,
    /// Supporters whose postcode is one of these (repeatable).
    #[arg(long = "postcode")]
    postcodes: Vec<String>,
    /// Narrow consent and objection to one channel of the purpose.
    #[arg(long)]
    channel: Option<String>,
    /// Comma-separated field paths to return (default: the purpose's fields).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Supporters per page (server default 1000, at most 10000).
    #[arg(long)]
    page_size: Option<u32>,
    /// Continue from this page token (printed on stderr after a page).
    #[arg(long)]
    page_token: Option<String>,
    /// Read every page.
    #[arg(long)]
    all_pages: bool,
}

#[derive(Debug, ClapArgs)]
struct UpsertArgs {
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    #[arg(long)]
    given_name: Option<String>,
    #[arg(long)]
    family_name: Option<String>,
    #[arg(long)]
    line1: Option<String>,
    #[arg(long)]
    line2: Option<String>,
    #[arg(long)]
    postcode: Option<String>,
    #[arg(long)]
    city: Option<String>,
    #[arg(long)]
    country: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Custom field as key=value (repeatable).
    #[arg(long = "custom", value_parser = parse_key_value)]
    custom: Vec<(String, String)>,
    /// Where the data came from, e.g. form:petition-2026.
    #[arg(long)]
    source: Option<String>,
}

#[derive(Debug, ClapArgs)]
struct UpdateArgs {
    /// Supporter id.
    id: String,
    #[command(flatten)]
    fields: UpsertArgs,
    /// A field to empty (repeatable), by its path: phone, address.line2, tags, custom...
    #[arg(long = "clear", value_name = "FIELD")]
    clear: Vec<String>,
    /// The rights request this rectification answers, recorded in the access log.
    #[arg(long)]
    request_ref: Option<String>,
}

impl UpsertArgs {
    /// The supporter these flags describe, and the paths of the fields they set.
    fn into_supporter(self) -> (pb::Supporter, Vec<String>) {
        let mut paths = Vec::new();
        let mut set = |value: Option<String>, path: &str| {
            if value.is_some() {
                paths.push(path.to_owned());
            }
            value.unwrap_or_default()
        };
        let supporter = pb::Supporter {
            email: set(self.email, "email"),
            phone: set(self.phone, "phone"),
            given_name: set(self.given_name, "given_name"),
            family_name: set(self.family_name, "family_name"),
            address: Some(pb::Address {
                line1: set(self.line1, "address.line1"),
                line2: set(self.line2, "address.line2"),
                postcode: set(self.postcode, "address.postcode"),
                city: set(self.city, "address.city"),
                country: set(self.country, "address.country"),
            }),
            source: set(self.source, "source"),
            ..Default::default()
        };
        if !self.tags.is_empty() {
            paths.push("tags".into());
        }
        if !self.custom.is_empty() {
            paths.push("custom".into());
        }
        (
            pb::Supporter {
                tags: self.tags,
                custom: self.custom.into_iter().collect(),
                ..supporter
            },
            paths,
        )
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected key=value".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vaultctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(cli.command, Command::Import(_)) {
        return runtime.block_on(import_main(cli));
    }
    match runtime.block_on(run(cli)) {
        Ok(json) => {
            // Streaming commands print as they go and return nothing more.
            if !json.is_empty()
                && let Err(e) = write_line(&mut std::io::stdout(), &json)
            {
                eprintln!("vaultctl: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vaultctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The token to send: an explicit `--token-file` (which must be readable), else `--token`
/// or `VAULT_TOKEN`, else the admin token file under the data directory. With a client
/// certificate and none of them, no token (the certificate identifies the client).
fn token(cli: &Cli) -> Result<String, String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_owned())
            .map_err(|e| e.to_string())
    };
    if let Some(path) = &cli.token_file {
        return read(path).map_err(|e| format!("cannot read --token-file {}: {e}", path.display()));
    }
    if let Some(t) = &cli.token {
        return Ok(t.trim().to_owned());
    }
    let path = cli.data_dir.join(ADMIN_TOKEN_FILE);
    match read(&path) {
        Ok(t) => Ok(t),
        Err(_) if cli.cert.is_some() => Ok(String::new()),
        Err(e) => Err(format!(
            "no token: pass --token, set VAULT_TOKEN, pass --token-file, make {} readable, or \
             connect with a registered client certificate (--cert, --key) ({e})",
            path.display()
        )),
    }
}

fn tls_files(cli: &Cli) -> ctl::TlsFiles {
    ctl::TlsFiles {
        ca_cert: cli.ca_cert.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
        server_name: cli.tls_server_name.clone(),
    }
}

async fn run(cli: Cli) -> Result<String, String> {
    if let Command::Migrate(args) = &cli.command {
        return migrate(&cli.data_dir, args).await;
    }
    if let Command::Audit(AuditCommand::Verify {
        file,
        public_key,
        whole,
        witnesses,
        require_witnesses,
        since,
    }) = &cli.command
    {
        let requirements = Offline {
            whole: *whole,
            witnesses,
            required: *require_witnesses,
            since: since.as_deref(),
        };
        return verify_offline(file, public_key, &requirements);
    }
    if let Command::Restore(args) = &cli.command {
        return restore(&cli.data_dir, args).await;
    }
    let token = token(&cli)?;
    let channel = ctl::connect(&cli.addr, &tls_files(&cli)).await?;
    let purpose = cli.purpose.as_deref();
    let json = cli.json;
    let mut client = SupportersClient::new(channel.clone());
    let reply = match cli.command {
        Command::Rights(c) => {
            let purpose = purpose.unwrap_or(ctl::RIGHTS_PURPOSE);
            return rights(RightsClient::new(channel), c, &token, purpose, json).await;
        }
        Command::Erasures(ErasuresCommand::Export { file }) => {
            return export_erasures(AdminClient::new(channel), &token, &file).await;
        }
        Command::Keys(KeysCommand::Rotate) => {
            let r = AdminClient::new(channel)
                .rotate_keys(with_token(pb::RotateKeysRequest {}, &token, None)?)
                .await
                .map_err(status_line)?
                .into_inner();
            return Ok(ctl::rotation(&r, json));
        }
        Command::Retention(RetentionCommand::Sweep { dry_run }) => {
            let r = AdminClient::new(channel)
                .retention_sweep(with_token(
                    pb::RetentionSweepRequest { dry_run },
                    &token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            return Ok(ctl::sweep(&r, json));
        }
        Command::Import(_) => return Err("import runs apart: import_main".to_owned()),
        Command::Watch { cursor, follow } => {
            let mut out = std::io::stdout();
            let seen = Session::new(channel, CallMetadata::new(Token::new(&token)))
                .with_purpose(purpose)
                .watch(
                    cursor.unwrap_or_default(),
                    follow,
                    std::time::Duration::from_secs(1),
                    json,
                    &mut out,
                )
                .await
                .map_err(|e| e.to_string())?;
            if !follow {
                match &seen.cursor {
                    Some(c) => eprintln!(
                        "vaultctl: caught up after {} events; resume with --cursor {c}",
                        seen.events
                    ),
                    None => eprintln!("vaultctl: no new events"),
                }
            }
            return Ok(String::new());
        }
        Command::Supporter(SupporterCommand::Search(a)) => {
            let request = pb::SearchRequest {
                tags_all: a.tags,
                tags_any: a.any_tags,
                postcodes: a.postcodes,
                consent_purpose: String::new(),
                consent_channel: a.channel.unwrap_or_default(),
                fields: (!a.fields.is_empty())
                    .then_some(prost_types::FieldMask { paths: a.fields }),
                page_size: a.page_size.unwrap_or(0),
                page_token: a.page_token.unwrap_or_default(),
            };
            let mut out = std::io::stdout();
            let seen = Session::new(channel, CallMetadata::new(Token::new(&token)))
                .with_purpose(purpose)
                .search(request, a.all_pages, &mut out)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(next) = seen.next_page_token {
                eprintln!(
                    "vaultctl: {} supporters on this page; more with --page-token {next} (or \
                     --all-pages)",
                    seen.supporters
                );
            }
            return Ok(String::new());
        }
        Command::Consent(c) => {
            return consent(ConsentClient::new(channel), c, &token, purpose).await;
        }
        Command::Client(c) => return clients(AdminClient::new(channel), c, &token).await,
        Command::Admin(c) => return admin(AdminClient::new(channel), c, &token).await,
        Command::Purpose(PurposeCommand::Put { file }) => {
            let purpose = read_purpose(&file)?;
            let p = AdminClient::new(channel)
                .put_purpose(with_token(
                    pb::PutPurposeRequest {
                        purpose: Some(purpose),
                    },
                    &token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            return Ok(purpose_json(&p).to_string());
        }
        Command::Migrate(_) => return Err("migrate runs without a daemon".to_owned()),
        Command::Restore(_) => return Err("restore runs without a daemon".to_owned()),
        Command::Backup { out } => {
            let path = if out.is_absolute() {
                out
            } else {
                std::env::current_dir()
                    .map_err(|e| format!("cannot resolve {}: {e}", out.display()))?
                    .join(out)
            };
            let m = AdminClient::new(channel)
                .backup(with_token(
                    pb::BackupRequest {
                        path: path.display().to_string(),
                    },
                    &token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            return Ok(ctl::manifest(&m, json));
        }
        Command::Audit(c) => return audit(AuditClient::new(channel), c, &token, json).await,
        Command::Report(ReportCommand::Processing { format }) => {
            let format = match (format, json) {
                (None, false) => "markdown".to_owned(),
                (None, true) => "json".to_owned(),
                (Some(f), true) if !f.trim().eq_ignore_ascii_case("json") => {
                    return Err(format!(
                        "--json prints the report as JSON: drop --format {f}, or --json"
                    ));
                }
                (Some(f), _) => f,
            };
            let r = AdminClient::new(channel)
                .processing_report(with_token(
                    pb::ProcessingReportRequest { format },
                    &token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            return Ok(String::from_utf8_lossy(&r.document).trim_end().to_owned());
        }
        Command::Purpose(PurposeCommand::List) => {
            let r = AdminClient::new(channel)
                .list_purposes(with_token(pb::ListPurposesRequest {}, &token, None)?)
                .await
                .map_err(status_line)?
                .into_inner();
            let list: Vec<_> = r.purposes.iter().map(purpose_json).collect();
            return Ok(serde_json::Value::from(list).to_string());
        }
        Command::Supporter(SupporterCommand::Update(a)) => {
            let UpdateArgs {
                id,
                fields,
                clear,
                request_ref,
            } = *a;
            let (supporter, mut paths) = fields.into_supporter();
            for c in clear {
                let c = c.trim().to_owned();
                if paths.contains(&c) {
                    return Err(format!("{c} is both set and cleared: pass one of them"));
                }
                paths.push(c);
            }
            if paths.is_empty() {
                return Err("nothing to change: pass the fields to set, or --clear FIELD".into());
            }
            client
                .update(with_token(
                    pb::UpdateRequest {
                        id,
                        supporter: Some(supporter),
                        update_mask: Some(prost_types::FieldMask { paths }),
                        request_ref: request_ref.unwrap_or_default(),
                    },
                    &token,
                    purpose,
                )?)
                .await
        }
        Command::Supporter(SupporterCommand::Upsert(a)) => {
            let (supporter, _) = a.into_supporter();
            let r = client
                .upsert(with_token(
                    pb::UpsertRequest {
                        supporter: Some(supporter),
                        consents: Vec::new(),
                    },
                    &token,
                    purpose,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            return Ok(serde_json::json!({ "id": r.id, "created": r.created }).to_string());
        }
        Command::Supporter(SupporterCommand::Get { id, fields }) => {
            client
                .get(with_token(
                    pb::GetRequest {
                        id,
                        fields: (!fields.is_empty())
                            .then_some(prost_types::FieldMask { paths: fields }),
                    },
                    &token,
                    purpose,
                )?)
                .await
        }
        Command::Supporter(SupporterCommand::Lookup { email, phone }) => {
            let key = match (email, phone) {
                (Some(e), _) => pb::lookup_request::Key::Email(e),
                (None, Some(p)) => pb::lookup_request::Key::Phone(p),
                (None, None) => return Err("pass --email or --phone".into()),
            };
            client
                .lookup(with_token(
                    pb::LookupRequest { key: Some(key) },
                    &token,
                    purpose,
                )?)
                .await
        }
        Command::Supporter(SupporterCommand::Tag { id, tags }) => {
            client
                .tag(with_token(pb::TagRequest { id, tags }, &token, purpose)?)
                .await
        }
        Command::Supporter(SupporterCommand::Untag { id, tags }) => {
            client
                .untag(with_token(pb::UntagRequest { id, tags }, &token, purpose)?)
                .await
        }
    };
    let s = reply.map_err(status_line)?.into_inner();
    Ok(supporter_json(&s).to_string())
}

/// `vaultctl migrate --to postgres`: the embedded store in `data_dir`, copied byte for byte
/// into PostgreSQL (see `vault_core::storage::copy`).
async fn migrate(data_dir: &Path, args: &MigrateArgs) -> Result<String, String> {
    let MigrateTarget::Postgres = args.to;
    let store_dir = data_dir.join("store");
    if !store_dir.is_dir() {
        return Err(format!(
            "no embedded store in {} (pass the daemon's --data-dir)",
            store_dir.display()
        ));
    }
    let from = SledStore::open(&store_dir, &SledOptions::default()).map_err(|e| {
        format!(
            "cannot open the embedded store in {} (stop the daemon first): {e}",
            store_dir.display()
        )
    })?;
    let options = PostgresOptions {
        schema: args.database_schema.clone(),
        allow_plaintext: args.database_allow_plaintext,
        ..PostgresOptions::default()
    };
    let to = PostgresStore::connect(args.database_url.expose(), &options)
        .await
        .map_err(|e| e.to_string())?;
    let report = copy_store(&from, &to, args.batch_rows)
        .await
        .map_err(|e| format!("migration to {} failed: {e}", to.describe()))?;
    let tables: serde_json::Map<String, serde_json::Value> = report
        .tables
        .iter()
        .map(|(t, n)| (t.name().to_owned(), serde_json::Value::from(*n)))
        .collect();
    Ok(serde_json::json!({
        "from": store_dir.display().to_string(),
        "to": to.describe(),
        "tables": tables,
        "rows": report.total_rows(),
        "verified": true,
        "next": format!(
            "start every replica with this database URL (and schema) and the same root key \
             file, {} unless --root-key pointed elsewhere; the bootstrap admin is already in \
             the database, so copy admin.token rather than expecting a new one",
            data_dir.join("root.key").display()
        ),
    })
    .to_string())
}

/// `vaultctl restore`: the backup replaces the store of `data_dir` (or the database), then the
/// erasures journaled there are replayed (see `vault_core::backup`).
async fn restore(data_dir: &Path, args: &RestoreArgs) -> Result<String, String> {
    let storage = match &args.database_url {
        None => StorageChoice::Embedded(SledOptions::default()),
        Some(url) => StorageChoice::Postgres {
            url: url.clone(),
            options: PostgresOptions {
                schema: args.database_schema.clone(),
                allow_plaintext: args.database_allow_plaintext,
                ..PostgresOptions::default()
            },
        },
    };
    let options = VaultOptions {
        root_key_file: args.root_key.clone(),
        storage,
        ..VaultOptions::new(data_dir)
    };
    let journals = args
        .journals
        .iter()
        .map(|path| ErasureJournal::read_file(path).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, String>>()?;
    let restore = RestoreOptions {
        journals,
        accept_erased_people_may_return: args.accept_erased_people_may_return,
    };
    let report = Vault::restore(&options, &args.backup, restore)
        .await
        .map_err(|e| format!("restore failed: {e}"))?;
    if report.erased_people_may_return {
        eprintln!(
            "vaultctl: WARNING: restored without an erasure journal as new as the backup: \
             people erased after {} may be back; erase them again",
            ctl::time(Some(&prost_types::Timestamp {
                seconds: report.backup.taken_at_us.div_euclid(1_000_000),
                nanos: 0,
            }))
        );
    }
    let mut json = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "next".to_owned(),
            serde_json::Value::from(
                "start the daemon on this store with the same root key file; clients and \
                 tokens are those of the backup (keep the admin.token of that time)",
            ),
        );
    }
    Ok(json.to_string())
}

/// `vaultctl erasures export FILE`: the daemon's erasure journal as of now, written to FILE
/// through a temporary file (a failed export never replaces a good one).
async fn export_erasures(
    mut client: AdminClient<Channel>,
    token: &str,
    file: &Path,
) -> Result<String, String> {
    let mut stream = client
        .export_erasure_journal(with_token(pb::ExportErasureJournalRequest {}, token, None)?)
        .await
        .map_err(status_line)?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(status_line)? {
        bytes.extend_from_slice(&chunk.data);
    }
    let journal = ErasureJournal::from_file_bytes(&bytes)
        .map_err(|e| format!("the daemon sent something other than an erasure journal: {e}"))?;
    journal.write_file(file).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "file": file.display().to_string(),
        "erasures": journal.rows.len(),
        "as_of_us": journal.as_of_us,
    })
    .to_string())
}

fn event_json(e: &pb::ConsentEvent) -> serde_json::Value {
    serde_json::json!({
        "subject_id": e.subject_id, "seq": e.seq, "purpose": e.purpose, "channel": e.channel,
        "kind": e.kind, "at_unix": e.at.as_ref().map(|t| t.seconds), "source": e.source,
        "notice_version": e.notice_version, "client_id": e.client_id,
    })
}

async fn consent(
    mut client: ConsentClient<Channel>,
    command: ConsentCommand,
    token: &str,
    purpose: Option<&str>,
) -> Result<String, String> {
    let request = |a: ConsentArgs| pb::ConsentRequest {
        subject_id: a.id,
        purpose: a.for_purpose.unwrap_or_default(),
        channel: a.channel.unwrap_or_default(),
        source: a.source,
        notice_version: a.notice_version,
        contact_email: a.contact_email.unwrap_or_default(),
        contact_phone: a.contact_phone.unwrap_or_default(),
    };
    let json = match command {
        ConsentCommand::Grant(a) => event_json(
            &client
                .grant(with_token(request(a), token, purpose)?)
                .await
                .map_err(status_line)?
                .into_inner(),
        ),
        ConsentCommand::Withdraw(a) => event_json(
            &client
                .withdraw(with_token(request(a), token, purpose)?)
                .await
                .map_err(status_line)?
                .into_inner(),
        ),
        ConsentCommand::Status { id } => {
            let r = client
                .status(with_token(
                    pb::ConsentStatusRequest { subject_id: id },
                    token,
                    purpose,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            let states: Vec<_> = r
                .states
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "purpose": s.purpose, "channel": s.channel, "active": s.active,
                        "last_event_seq": s.last_event_seq,
                    })
                })
                .collect();
            serde_json::json!({ "subject_id": r.subject_id, "states": states })
        }
        ConsentCommand::History { id } => {
            let r = client
                .history(with_token(
                    pb::ConsentHistoryRequest { subject_id: id },
                    token,
                    purpose,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            let events: Vec<_> = r.events.iter().map(event_json).collect();
            serde_json::json!({ "subject_id": r.subject_id, "events": events })
        }
    };
    Ok(json.to_string())
}

fn client_json(c: &pb::Client) -> serde_json::Value {
    serde_json::json!({
        "id": c.id, "name": c.name, "role": c.role, "purposes": c.purposes,
        "created_at_unix": c.created_at.as_ref().map(|t| t.seconds),
        "revoked_at_unix": c.revoked_at.as_ref().map(|t| t.seconds),
        "cert_sha256": c.cert_sha256,
        "expires_at_unix": c.expires_at.as_ref().map(|t| t.seconds),
    })
}

async fn clients(
    mut admin: AdminClient<Channel>,
    command: ClientCommand,
    token: &str,
) -> Result<String, String> {
    let json = match command {
        ClientCommand::Create {
            name,
            role,
            purposes,
            cert_sha256,
            expires_in_hours,
        } => {
            let expires_at = expiry_in_hours(expires_in_hours);
            let r = admin
                .create_client(with_token(
                    pb::CreateClientRequest {
                        name,
                        role,
                        purposes,
                        cert_sha256: cert_sha256.unwrap_or_default(),
                        expires_at,
                    },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            let client = r.client.as_ref().map(client_json).unwrap_or_default();
            serde_json::json!({ "client": client, "token": r.token })
        }
        ClientCommand::Revoke { id } => client_json(
            &admin
                .revoke_client(with_token(pb::RevokeClientRequest { id }, token, None)?)
                .await
                .map_err(status_line)?
                .into_inner(),
        ),
        ClientCommand::List => {
            let r = admin
                .list_clients(with_token(pb::ListClientsRequest {}, token, None)?)
                .await
                .map_err(status_line)?
                .into_inner();
            serde_json::Value::from(r.clients.iter().map(client_json).collect::<Vec<_>>())
        }
    };
    Ok(json.to_string())
}

/// A purpose from a JSON file (or `-`, standard input) with the keys `purpose list` prints.
fn read_purpose(file: &Path) -> Result<pb::Purpose, String> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    let p: vault_core::Purpose = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a purpose: {e}", file.display()))?;
    Ok(vault_server::convert::purpose_to_pb(p))
}

fn purpose_json(p: &pb::Purpose) -> serde_json::Value {
    serde_json::json!({
        "id": p.id, "description": p.description, "lawful_basis": p.lawful_basis,
        "special_category_basis": p.special_category_basis, "channels": p.channels,
        "retention_days": p.retention_days, "fields": p.fields,
    })
}

fn proposal_json(p: &pb::Proposal) -> serde_json::Value {
    let change = match &p.change {
        Some(pb::proposal::Change::CreateClient(c)) => {
            serde_json::json!({ "create_client": client_json(c) })
        }
        Some(pb::proposal::Change::PutPurpose(new)) => serde_json::json!({
            "put_purpose": purpose_json(new),
            "previous": p.previous_purpose.as_ref().map(purpose_json),
        }),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "id": p.id, "status": p.status, "summary": p.summary, "widens": p.widens,
        "proposed_by": p.proposed_by,
        "proposed_at_unix": p.proposed_at.as_ref().map(|t| t.seconds),
        "expires_at_unix": p.expires_at.as_ref().map(|t| t.seconds),
        "approved_by": (!p.approved_by.is_empty()).then_some(&p.approved_by),
        "approved_at_unix": p.approved_at.as_ref().map(|t| t.seconds),
        "change_sha256": p.change_sha256, "change": change,
    })
}

fn expiry_in_hours(hours: Option<u32>) -> Option<prost_types::Timestamp> {
    hours.map(|h| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        prost_types::Timestamp {
            seconds: i64::try_from(now + u64::from(h) * 3600).unwrap_or(i64::MAX),
            nanos: 0,
        }
    })
}

async fn admin(
    mut admin: AdminClient<Channel>,
    command: AdminCommand,
    token: &str,
) -> Result<String, String> {
    use pb::propose_change_request::Change;
    let propose = |change| pb::ProposeChangeRequest {
        change: Some(change),
    };
    let json = match command {
        AdminCommand::ProposeClient {
            name,
            role,
            purposes,
            cert_sha256,
            expires_in_hours,
        } => {
            let r = admin
                .propose_change(with_token(
                    propose(Change::CreateClient(pb::CreateClientRequest {
                        name,
                        role,
                        purposes,
                        cert_sha256: cert_sha256.unwrap_or_default(),
                        expires_at: expiry_in_hours(expires_in_hours),
                    })),
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            serde_json::json!({
                "proposal": r.proposal.as_ref().map(proposal_json),
                "token": r.token,
            })
        }
        AdminCommand::ProposePurpose { file } => {
            let purpose = read_purpose(&file)?;
            let r = admin
                .propose_change(with_token(
                    propose(Change::PutPurpose(purpose)),
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            serde_json::json!({ "proposal": r.proposal.as_ref().map(proposal_json) })
        }
        AdminCommand::Proposals { all } => {
            let r = admin
                .list_proposals(with_token(pb::ListProposalsRequest { all }, token, None)?)
                .await
                .map_err(status_line)?
                .into_inner();
            serde_json::Value::from(r.proposals.iter().map(proposal_json).collect::<Vec<_>>())
        }
        AdminCommand::Approve { id, sha256 } => proposal_json(
            &admin
                .approve_proposal(with_token(
                    pb::ApproveProposalRequest {
                        id,
                        change_sha256: sha256.unwrap_or_default(),
                    },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner(),
        ),
    };
    Ok(json.to_string())
}

/// Reads a public key file: 32 raw bytes, 64 hexadecimal characters, or base64.
fn read_public_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() == 32 {
        return Ok(bytes);
    }
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    let key = hex::decode(&text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(&text).ok())
        .ok_or_else(|| {
            format!(
                "{}: not a public key (32 raw bytes, hex or base64)",
                path.display()
            )
        })?;
    if key.len() != 32 {
        return Err(format!(
            "{}: an Ed25519 public key has 32 bytes, this one {}",
            path.display(),
            key.len()
        ));
    }
    Ok(key)
}

/// A witness key given on the command line: the vkey itself, or a file holding it.
fn read_witness(arg: &str) -> Result<vault_core::audit::witness::Cosigner, String> {
    let path = std::path::Path::new(arg);
    let text = if !arg.contains('+') && path.exists() {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {arg}: {e}"))?
    } else {
        arg.to_owned()
    };
    vault_core::audit::witness::Cosigner::from_vkey(text.trim())
        .map_err(|e| format!("--witness {arg}: {e}"))
}

/// What `audit verify` requires of the file beyond soundness.
struct Offline<'a> {
    whole: bool,
    witnesses: &'a [String],
    required: usize,
    since: Option<&'a Path>,
}

/// A checkpoint saved by `audit pin`, its signature verified with `key`.
fn read_pinned(path: &Path, key: &[u8]) -> Result<vault_core::audit::Checkpoint, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let signed: vault_core::audit::SignedCheckpoint =
        serde_json::from_slice(&text).map_err(|e| {
            format!(
                "{}: not a checkpoint saved by `audit pin`: {e}",
                path.display()
            )
        })?;
    signed.verify(key).ok_or_else(|| {
        format!(
            "{}: the pinned checkpoint's signature does not verify with this public key",
            path.display()
        )
    })
}

fn verify_offline(
    file: &std::path::Path,
    public_key: &std::path::Path,
    wanted: &Offline<'_>,
) -> Result<String, String> {
    let Offline {
        whole,
        witnesses,
        required,
        since,
    } = *wanted;
    let key = read_public_key(public_key)?;
    let since = since.map(|p| read_pinned(p, &key)).transpose()?;
    let witnesses = witnesses
        .iter()
        .map(|w| read_witness(w))
        .collect::<Result<Vec<_>, _>>()?;
    if required > witnesses.len() {
        return Err(format!(
            "--require-witnesses {required} needs at least {required} --witness keys, {} given",
            witnesses.len()
        ));
    }
    // Read and verified a piece at a time: an export of any length in bounded memory.
    let opened =
        std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let requirements = vault_core::audit::file::Requirements { whole, since };
    let verified =
        vault_core::audit::file::verify_reader(opened, &key, requirements, &witnesses, required)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    match verified {
        Ok(v) => Ok(serde_json::json!({
            "ok": true,
            "first_seq": v.first_seq,
            "entries": v.entries,
            "checkpoints": v.checkpoints,
            "tree_size": v.end.size,
            "root": hex::encode(v.end.root),
            "retention_cut": v.cut.map(|c| serde_json::json!({
                "size": c.size, "cut_at_us": c.cut_at_us, "retention_us": c.retention_us,
            })),
            "witnessed_by": v.witnessed_by,
            "extends": since.map(|c| serde_json::json!({
                "size": c.size, "root": hex::encode(c.root),
            })),
        })
        .to_string()),
        Err(e) => Err(format!("verification failed: {e}")),
    }
}

async fn audit(
    mut client: AuditClient<Channel>,
    command: AuditCommand,
    token: &str,
    json: bool,
) -> Result<String, String> {
    match command {
        AuditCommand::Verify { .. } => Err("verify runs offline".into()),
        AuditCommand::Pin { out } => {
            let newest = newest_checkpoint(&mut client, token).await?;
            let json = serde_json::to_vec_pretty(&newest).map_err(|e| e.to_string())?;
            std::fs::write(&out, &json)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            Ok(serde_json::json!({
                "out": out.display().to_string(), "size": newest.size, "root": newest.root,
            })
            .to_string())
        }
        AuditCommand::VerifySince { pinned, public_key } => {
            let key = read_public_key(&public_key)?;
            let old = read_pinned(&pinned, &key)?;
            let newest_signed = newest_checkpoint(&mut client, token).await?;
            let new = newest_signed.verify(&key).ok_or(
                "verification failed: the daemon's newest checkpoint is not signed by this public key",
            )?;
            if new.size < old.size {
                return Err(format!(
                    "verification failed: the log is shorter ({}) than the pinned checkpoint ({}): \
                     it was cut or replaced",
                    new.size, old.size
                ));
            }
            let r = client
                .consistency_proof(with_token(
                    pb::ConsistencyProofRequest {
                        from_size: old.size,
                        to_size: new.size,
                    },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            let proof: Vec<[u8; 32]> = r
                .hashes
                .iter()
                .map(|h| <[u8; 32]>::try_from(h.as_slice()))
                .collect::<Result<_, _>>()
                .map_err(|_| "verification failed: the proof holds a hash that is not 32 bytes")?;
            vault_core::audit::merkle::verify_consistency(
                old.size, new.size, &old.root, &new.root, &proof,
            )
            .map_err(|e| {
                format!(
                    "verification failed: the current log (size {}) does not extend the pinned \
                     checkpoint (size {}): {e}",
                    new.size, old.size
                )
            })?;
            Ok(serde_json::json!({
                "ok": true, "pinned_size": old.size, "size": new.size,
                "root": hex::encode(new.root),
            })
            .to_string())
        }
        AuditCommand::PublicKey { vkey } => {
            let r = client
                .public_key(with_token(pb::PublicKeyRequest {}, token, None)?)
                .await
                .map_err(status_line)?
                .into_inner();
            if vkey && r.vkey.is_empty() {
                return Err("the daemon does not give a vkey (an older version)".into());
            }
            Ok(match (json, vkey) {
                (true, _) => serde_json::json!({
                    "public_key": hex::encode(&r.public_key),
                    "vkey": (!r.vkey.is_empty()).then_some(&r.vkey),
                })
                .to_string(),
                (false, true) => r.vkey,
                (false, false) => hex::encode(r.public_key),
            })
        }
        AuditCommand::Export {
            out,
            from_seq,
            to_seq,
            min_cosignatures,
        } => {
            let mut stream = client
                .export_log(with_token(
                    pb::ExportLogRequest {
                        from_seq,
                        to_seq,
                        min_cosignatures,
                    },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            // Written as it arrives, never held whole: an export of any length. A failed
            // stream leaves a cut file, which the verifier reports as truncated.
            use std::io::Write as _;
            let cannot = |e: std::io::Error| format!("cannot write {}: {e}", out.display());
            let mut file = std::io::BufWriter::new(std::fs::File::create(&out).map_err(cannot)?);
            let (mut bytes, mut lines) = (0usize, 0usize);
            while let Some(chunk) = stream.message().await.map_err(status_line)? {
                file.write_all(&chunk.data).map_err(cannot)?;
                bytes += chunk.data.len();
                lines += bytecount_lines(&chunk.data);
            }
            file.into_inner()
                .map_err(|e| cannot(e.into_error()))?
                .sync_all()
                .map_err(cannot)?;
            Ok(serde_json::json!({ "out": out.display().to_string(), "bytes": bytes, "lines": lines }).to_string())
        }
        AuditCommand::Checkpoints { since_seq } => {
            let r = client
                .checkpoints(with_token(
                    pb::CheckpointsRequest { since_seq },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            let list: Vec<_> = r
                .checkpoints
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "size": c.size, "root": hex::encode(&c.root), "at_us": c.at_us,
                        "signature": hex::encode(&c.signature),
                    })
                })
                .collect();
            Ok(serde_json::Value::from(list).to_string())
        }
        AuditCommand::Query {
            subject,
            actor,
            action,
        } => {
            let mut stream = client
                .query(with_token(
                    pb::QueryRequest {
                        subject_id: subject.unwrap_or_default(),
                        actor: actor.unwrap_or_default(),
                        action: action.unwrap_or_default(),
                        since: None,
                        until: None,
                    },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            let mut out = Vec::new();
            while let Some(e) = stream.message().await.map_err(status_line)? {
                out.push(String::from_utf8_lossy(&e.raw).into_owned());
            }
            Ok(out.join("\n"))
        }
    }
}

/// The daemon's newest signed checkpoint, in the form auditors keep.
async fn newest_checkpoint(
    client: &mut AuditClient<Channel>,
    token: &str,
) -> Result<vault_core::audit::SignedCheckpoint, String> {
    let r = client
        .checkpoints(with_token(
            pb::CheckpointsRequest { since_seq: 0 },
            token,
            None,
        )?)
        .await
        .map_err(status_line)?
        .into_inner();
    let c = r
        .checkpoints
        .last()
        .ok_or("the log has no signed checkpoint yet")?;
    Ok(vault_core::audit::SignedCheckpoint {
        size: c.size,
        root: hex::encode(&c.root),
        last_leaf: hex::encode(&c.last_leaf),
        at_us: c.at_us,
        signature: hex::encode(&c.signature),
    })
}

fn bytecount_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// `vaultctl rights ...` (dpo role).
/// Places (`restrict`) or lifts a restriction of processing: the same request either way.
async fn restriction(
    client: &mut RightsClient<Channel>,
    a: RestrictArgs,
    restrict: bool,
    token: &str,
    p: Option<&str>,
    json: bool,
) -> Result<String, String> {
    let request = with_token(
        pb::RestrictRequest {
            subject_id: a.id,
            request_ref: a.request_ref,
        },
        token,
        p,
    )?;
    let reply = if restrict {
        client.restrict(request).await
    } else {
        client.unrestrict(request).await
    };
    Ok(ctl::subject_state(
        &reply.map_err(status_line)?.into_inner(),
        json,
    ))
}

async fn rights(
    mut client: RightsClient<Channel>,
    command: RightsCommand,
    token: &str,
    purpose: &str,
    json: bool,
) -> Result<String, String> {
    let p = Some(purpose);
    match command {
        RightsCommand::Export { id, email, out } => {
            let subject = match (id, email) {
                (Some(id), _) => pb::export_request::Subject::SubjectId(id),
                (None, Some(e)) => pb::export_request::Subject::Email(e),
                (None, None) => return Err("pass --id or --email".into()),
            };
            let r = client
                .export(with_token(
                    pb::ExportRequest {
                        subject: Some(subject),
                        format: "json".into(),
                    },
                    token,
                    p,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            match out {
                None => String::from_utf8(r.document)
                    .map(|d| d.trim_end().to_owned())
                    .map_err(|_| "the export document is not UTF-8".to_owned()),
                Some(path) => {
                    write_private(&path, &r.document)?;
                    Ok(if json {
                        serde_json::json!({
                            "out": path.display().to_string(), "bytes": r.document.len(),
                            "subject_id": r.subject_id,
                        })
                        .to_string()
                    } else {
                        format!(
                            "wrote the file of {} to {} ({} bytes)",
                            r.subject_id,
                            path.display(),
                            r.document.len()
                        )
                    })
                }
            }
        }
        RightsCommand::Erase {
            id,
            request_ref,
            suppress,
        } => {
            let r = client
                .erase(with_token(
                    pb::EraseRequest {
                        subject_id: id,
                        request_ref,
                        suppress,
                    },
                    token,
                    p,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            Ok(ctl::receipt(&r, json))
        }
        RightsCommand::Restrict(a) => restriction(&mut client, a, true, token, p, json).await,
        RightsCommand::Unrestrict(a) => restriction(&mut client, a, false, token, p, json).await,
        RightsCommand::Object {
            id,
            channels,
            request_ref,
        } => {
            let r = client
                .object(with_token(
                    pb::ObjectRequest {
                        subject_id: id,
                        channels,
                        request_ref,
                    },
                    token,
                    p,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            Ok(ctl::subject_state(&r, json))
        }
        RightsCommand::Requests(RequestsCommand::Open {
            kind,
            received,
            subject,
            reference,
        }) => {
            let received_at = received.as_deref().map(ctl::parse_date).transpose()?;
            let r = client
                .open_request(with_token(
                    pb::OpenRequestRequest {
                        kind,
                        received_at,
                        subject_id: subject.unwrap_or_default(),
                        reference,
                    },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            Ok(ctl::rights_request(&r, json))
        }
        RightsCommand::Requests(RequestsCommand::List { overdue, all }) => {
            let r = client
                .list_requests(with_token(
                    pb::ListRequestsRequest {
                        overdue_only: overdue,
                        include_closed: all,
                        as_of: None,
                    },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            Ok(ctl::rights_requests(&r.requests, json))
        }
        RightsCommand::Requests(RequestsCommand::Close { id, action }) => {
            let r = client
                .close_request(with_token(
                    pb::CloseRequestRequest { id, action },
                    token,
                    None,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            Ok(ctl::rights_request(&r, json))
        }
    }
}

/// Writes personal data to a new file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // `mode` applies only to a new file: an existing one is narrowed too.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {} to its owner: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Exit status of an import that finished with rejected rows: not 1 (a failure) nor 2 (what
/// clap exits with on a usage error), so a script tells the three apart.
const EXIT_REJECTED_ROWS: u8 = 3;

/// `vaultctl import`, with its own exit statuses: 0 when every row was imported (or rows
/// were rejected and `--allow-rejects` accepts that), [`EXIT_REJECTED_ROWS`] when the
/// import finished with rejected rows, 1 when it failed. The summary goes to stdout either
/// way: a script tells "some rows need fixing" from "nothing could be done".
async fn import_main(cli: Cli) -> ExitCode {
    let done = async {
        let token = token(&cli)?;
        let channel = ctl::connect(&cli.addr, &tls_files(&cli)).await?;
        match cli.command {
            Command::Import(a) => {
                import(channel, &token, cli.purpose.as_deref(), *a, cli.json).await
            }
            _ => Err("not an import".to_owned()),
        }
    };
    match done.await {
        Ok(done) => {
            if let Err(e) = write_line(&mut std::io::stdout(), &done.text) {
                eprintln!("vaultctl: {e}");
                return ExitCode::FAILURE;
            }
            if done.rejected == 0 || done.allow_rejects {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "vaultctl: {} of {} rows rejected and not imported (listed above); exit status \
                 {EXIT_REJECTED_ROWS}. Fix them and import the file again (rows already \
                 imported change nothing), or pass --allow-rejects",
                done.rejected, done.rows
            );
            ExitCode::from(EXIT_REJECTED_ROWS)
        }
        Err(e) => {
            eprintln!("vaultctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A finished import: its summary, and what decides the exit status.
struct ImportDone {
    text: String,
    rows: u64,
    rejected: u64,
    allow_rejects: bool,
}

/// `vaultctl import FILE.csv`: streams the file's rows to `Supporters.Import`.
async fn import(
    channel: Channel,
    token: &str,
    purpose: Option<&str>,
    a: ImportArgs,
    json: bool,
) -> Result<ImportDone, String> {
    let purpose = purpose.ok_or(
        "import needs --purpose (or VAULT_PURPOSE): the purpose the supporters are imported for",
    )?;
    let file_name = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.file.display().to_string());
    let options = ReadOptions {
        mapping: MappingOptions {
            overrides: a.map,
            ignore_unknown: a.ignore_unknown,
            preset: a.preset,
            purpose: purpose.to_owned(),
        },
        defaults: RowDefaults {
            source: a.source.unwrap_or_else(|| format!("import:{file_name}")),
            notice_version: a.notice_version.unwrap_or_default(),
        },
        delimiter: a.delimiter,
    };
    let rows = CsvRows::open(&a.file, &options)?;
    let total = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    let batch = usize::try_from(a.batch).unwrap_or(usize::MAX);
    let session =
        Session::new(channel, CallMetadata::new(Token::new(token))).with_purpose(Some(purpose));
    let summary =
        vault_server::client::csv_import::import(&session, rows, batch, Progress::new(total))
            .await
            .map_err(|e| e.to_string())?;
    let shown = a.file.display().to_string();
    let text = if json {
        summary.json(&shown).to_string()
    } else {
        summary.lines(&shown)
    };
    Ok(ImportDone {
        text,
        rows: summary.rows,
        rejected: summary.rejected_total(),
        allow_rejects: a.allow_rejects,
    })
}
