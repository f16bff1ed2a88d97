//! The store as a whole: `keys rotate`, `retention sweep`, `backup` and `erasures export`
//! ask the daemon (admin); `migrate` and `restore` run offline on the store itself, with
//! the daemon stopped, and need no token.

use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use vault_core::backup::{ErasureJournal, RestoreOptions};
use vault_core::storage::copy::{DEFAULT_BATCH_ROWS, copy_store};
use vault_core::storage::sled_store::SledOptions;
use vault_core::storage::{DatabaseUrl, PostgresOptions, PostgresStore, SledStore};
use vault_core::{StorageChoice, Vault, VaultOptions};
use vault_proto::v1 as pb;

use super::CtlError;
use crate::client::Session;
use crate::client::output::{manifest, rotation, sweep, time};

#[derive(Debug, Subcommand)]
pub(crate) enum ErasuresCommand {
    /// Write the erasure journal as of now to FILE (0600, replaced atomically), for
    /// `vaultctl restore --journal FILE` after the store is lost. Run it often (cron) and
    /// copy FILE to another machine: it holds no personal data.
    Export {
        /// Where to write the journal.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Start a new key epoch, re-wrap every supporter key under it, destroy epochs retired
    /// for longer than the backup window.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RetentionCommand {
    /// Erase supporters no purpose may keep any longer.
    Sweep {
        /// Only list them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, ClapArgs)]
pub(crate) struct RestoreArgs {
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

#[derive(Debug, ClapArgs)]
pub(crate) struct MigrateArgs {
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
pub(crate) enum MigrateTarget {
    /// PostgreSQL (`--database-url`).
    Postgres,
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, &'static str> {
    if s.trim().is_empty() {
        return Err("the database URL is empty");
    }
    Ok(DatabaseUrl::new(s.trim()))
}

/// Runs a `keys` command.
pub(crate) async fn keys(
    session: &Session,
    command: KeysCommand,
    json: bool,
) -> Result<String, CtlError> {
    let KeysCommand::Rotate = command;
    let r = session
        .admin()
        .rotate_keys(session.request(pb::RotateKeysRequest {})?)
        .await?
        .into_inner();
    Ok(rotation(&r, json))
}

/// Runs a `retention` command.
pub(crate) async fn retention(
    session: &Session,
    command: RetentionCommand,
    json: bool,
) -> Result<String, CtlError> {
    let RetentionCommand::Sweep { dry_run } = command;
    let r = session
        .admin()
        .retention_sweep(session.request(pb::RetentionSweepRequest { dry_run })?)
        .await?
        .into_inner();
    Ok(sweep(&r, json))
}

/// `vaultctl backup --out DIR`: the daemon writes the backup; a relative `out` is taken from
/// the current directory, since the daemon's may differ.
pub(crate) async fn backup(session: &Session, out: &Path, json: bool) -> Result<String, CtlError> {
    let path = if out.is_absolute() {
        out.to_owned()
    } else {
        std::env::current_dir()
            .map_err(CtlError::file("resolve", out))?
            .join(out)
    };
    let m = session
        .admin()
        .backup(session.request(pb::BackupRequest {
            path: path.display().to_string(),
        })?)
        .await?
        .into_inner();
    Ok(manifest(&m, json))
}

/// `vaultctl erasures export FILE`: the daemon's erasure journal as of now, written to FILE
/// through a temporary file (a failed export never replaces a good one).
pub(crate) async fn erasures(
    session: &Session,
    command: ErasuresCommand,
) -> Result<String, CtlError> {
    let ErasuresCommand::Export { file } = command;
    let mut stream = session
        .admin()
        .export_erasure_journal(session.request(pb::ExportErasureJournalRequest {})?)
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    let journal = ErasureJournal::from_file_bytes(&bytes).map_err(CtlError::NotAJournal)?;
    journal.write_file(&file)?;
    Ok(serde_json::json!({
        "file": file.display().to_string(),
        "erasures": journal.rows.len(),
        "as_of_us": journal.as_of_us,
    })
    .to_string())
}

/// `vaultctl migrate --to postgres`: the embedded store in `data_dir`, copied byte for byte
/// into PostgreSQL (see `vault_core::storage::copy`).
pub(crate) async fn migrate(data_dir: &Path, args: &MigrateArgs) -> Result<String, CtlError> {
    let MigrateTarget::Postgres = args.to;
    let store_dir = data_dir.join("store");
    if !store_dir.is_dir() {
        return Err(CtlError::NoStore { dir: store_dir });
    }
    let from = SledStore::open(&store_dir, &SledOptions::default()).map_err(|source| {
        CtlError::OpenStore {
            dir: store_dir.clone(),
            source,
        }
    })?;
    let options = PostgresOptions {
        schema: args.database_schema.clone(),
        allow_plaintext: args.database_allow_plaintext,
        ..PostgresOptions::default()
    };
    let to = PostgresStore::connect(args.database_url.expose(), &options).await?;
    let report = copy_store(&from, &to, args.batch_rows)
        .await
        .map_err(|source| CtlError::Migration {
            to: to.describe(),
            source,
        })?;
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
pub(crate) async fn restore(data_dir: &Path, args: &RestoreArgs) -> Result<String, CtlError> {
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
        .map(|path| ErasureJournal::read_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let restore = RestoreOptions {
        journals,
        accept_erased_people_may_return: args.accept_erased_people_may_return,
    };
    let report = Vault::restore(&options, &args.backup, restore)
        .await
        .map_err(CtlError::Restore)?;
    if report.erased_people_may_return {
        eprintln!(
            "vaultctl: WARNING: restored without an erasure journal as new as the backup: \
             people erased after {} may be back; erase them again",
            time(Some(&prost_types::Timestamp {
                seconds: report.backup.taken_at_us.div_euclid(1_000_000),
                nanos: 0,
            }))
        );
    }
    let mut json = serde_json::to_value(&report)?;
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
