//! The shared engine: PostgreSQL, so several `vault-server` replicas can use one store.
//!
//! # What it is
//!
//! [`PostgresStore`] implements [`Store`] on a pool of `tokio-postgres` connections
//! (`deadpool-postgres`). Every [`Table`] is one PostgreSQL table
//! `vault_<name> (key bytea primary key, value bytea not null)` in a configurable schema
//! ([`PostgresOptions::schema`], `public` by default).
//!
//! Why plain key/value tables of `bytea`: the database only ever holds what sled holds:
//! ciphertext, blind-index HMACs, ids and small counters. The vault encrypts and decides
//! everything above the [`Store`] seam, so the database needs no columns it could index or
//! read: no personal data ever reaches it in clear, and the same logic (and the same
//! tests) runs on both engines. `bytea` compares byte-wise (`memcmp`, then length), which
//! is exactly sled's key order, whatever the database's collation.
//!
//! # Transport
//!
//! The URL's `sslmode` and `sslrootcert` choose the transport ([`super::postgres_tls`]):
//! TLS with rustls that always authenticates the server against the CA file given
//! (`require`/`verify-ca`: the chain; `verify-full`: the chain and the host name), or
//! plaintext. Plaintext is for a database on the same host (Unix socket or loopback): to
//! any other host it is refused unless [`PostgresOptions::allow_plaintext`] says so, since
//! the bytes on the wire are ciphertext and HMACs but the credentials are not.
//!
//! # Durability contract
//!
//! [`Store::commit`] returns `Ok` only after PostgreSQL acknowledged `COMMIT`. With
//! `synchronous_commit` on (PostgreSQL's default), that acknowledgement comes after the
//! commit record is flushed to the write-ahead log, so an acknowledged batch survives a
//! crash of the daemon or of the database server. [`PostgresStore::connect`] refuses a
//! server where `synchronous_commit` or `fsync` is `off`, rather than acknowledge writes
//! it cannot make durable. [`Store::sync`] is therefore a no-op.
//!
//! One difference from the embedded engine cannot be avoided over a network: if the
//! connection drops while `COMMIT` is in flight, the outcome is unknown; `commit` then
//! returns [`StoreError::Engine`] saying so. Every other error means nothing was written.
//!
//! # Concurrency contract
//!
//! A batch runs in one `SERIALIZABLE` transaction: the checks are plain `SELECT`s, the
//! writes `INSERT .. ON CONFLICT DO UPDATE` and `DELETE`, in batch order. Serializable
//! snapshot isolation makes the checks hold at the commit point across every process
//! sharing the database, *including checks that a key is absent*. That is why it is
//! chosen over `REPEATABLE READ` with `SELECT .. FOR UPDATE`: `FOR UPDATE` cannot lock a
//! row that does not exist, so "claim this absent key" (dedupe on email/phone) would rely
//! on unique violations alone, and a check on one key guarding a write to another would
//! not be protected at all. Under SSI it is, at the cost of occasional false-positive
//! serialization failures, which are retried.
//!
//! PostgreSQL reports a lost race as a serialization failure (SQLSTATE 40001), a deadlock
//! (40P01) or a unique violation (23505). Nothing was written in any of those cases, so
//! `commit` retries the whole transaction, with jittered backoff, up to
//! [`PostgresOptions::commit_attempts`] times: on the retry the checks are evaluated
//! against the winner's data, so a real conflict comes back as
//! [`StoreError::Conflict`] naming the table whose check failed, exactly as with sled, and
//! a batch without checks (which sled never refuses) is not refused for a transient race.
//! When the attempts run out, those failures are returned as [`StoreError::Contended`]:
//! not a [`StoreError::Conflict`], so the operation's own retry (`txn::retry!`) does not
//! run the attempt again. Retries no longer stack (ten here times 128 there were 1,280
//! waits before a call gave up); the call fails with ABORTED.
//!
//! [`Store::apply`] is [`Store::commit`] (every commit is durable at once), and
//! [`Store::apply_all`] is the trait's documented fallback: the group folded into one batch
//! by [`Batch::merged`], committed as one transaction.
//!
//! `get` and `scan_prefix` are single statements outside any batch (autocommit, `READ
//! COMMITTED`): they see every batch committed before they started, as with sled.
//!
//! # Schema and migrations
//!
//! [`PostgresStore::connect`] creates and migrates the schema itself, in one transaction
//! holding a transaction-scoped advisory lock (`pg_advisory_xact_lock`, keyed on the schema
//! name), so daemons starting at once do not race. Applied steps are recorded in
//! `vault_schema_migrations (version int primary key, applied_at timestamptz)`; a database
//! migrated by a newer build (a version this build does not know) is refused.
//!
//! Numbered steps (`MIGRATIONS` in this file) are for changes to the shape of existing tables. New
//! [`Table`] variants need no numbered step: after the numbered steps, every start runs
//! `CREATE TABLE IF NOT EXISTS` for every table of [`Table::ALL`] (under the same lock),
//! so a table added to the code is created on the first start of the build that has it.
//!
//! The role needs `CREATE` on the database if the schema does not exist yet, else on the
//! schema (PostgreSQL 15 and later: the database owner has it on `public`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::{DbError, SqlState};
use tokio_postgres::{IsolationLevel, NoTls};
use zeroize::Zeroizing;

use super::postgres_tls::{self, MakeRustls, TlsSettings};
use super::{Batch, Op, Store, StoreError, Table, Unavailable};

/// Tuning for the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections the pool opens to the database (connections are opened on
    /// demand). Each replica holds up to this many; keep replicas × `pool_size` under the
    /// server's `max_connections`.
    pub pool_size: usize,
    /// The PostgreSQL schema that holds the vault's tables, created if missing. Lets
    /// several vaults (or test runs) share one database.
    pub schema: String,
    /// How long opening one connection may take before it fails.
    pub connect_timeout: Duration,
    /// How many times `commit` runs a batch that lost a race to a concurrent transaction
    /// (serialization failure, deadlock, unique violation) before it returns
    /// [`StoreError::Conflict`]. At least 1.
    pub commit_attempts: u32,
    /// Connect without TLS to a host that is not this machine (loopback or a Unix socket).
    /// Off by default: the database's credentials would cross the network in clear.
    pub allow_plaintext: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            schema: "public".to_owned(),
            connect_timeout: Duration::from_secs(10),
            commit_attempts: 10,
            allow_plaintext: false,
        }
    }
}

/// A PostgreSQL connection URL, which may hold a password. `Debug` and
/// [`DatabaseUrl::redacted`] show only `user@host:port/dbname`, never the password, and the
/// string is wiped from memory when dropped. Pass it around instead of a `String` so a
/// configuration struct can derive `Debug` without leaking the credential into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(Zeroizing<String>);

impl DatabaseUrl {
    /// Wraps `url` (`postgres://user:password@host:port/dbname`, or the `key=value` form).
    pub fn new(url: impl Into<String>) -> Self {
        Self(Zeroizing::new(url.into()))
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `user@host:port/dbname`, without the password (or a placeholder when the URL does
    /// not parse).
    pub fn redacted(&self) -> String {
        match TlsSettings::split(&self.0)
            .ok()
            .and_then(|(rest, _)| rest.parse::<tokio_postgres::Config>().ok())
        {
            Some(config) => describe_target(&config),
            None => "(unparseable PostgreSQL URL, not shown)".to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// One numbered schema migration: SQL statements run once, in order, in the migration
/// transaction.
struct Migration {
    /// Version recorded in `vault_schema_migrations` once applied. Strictly increasing.
    version: i32,
    /// What the step does, for logs.
    description: &'static str,
    statements: fn(&Names) -> Vec<String>,
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("description", &self.description)
            .finish()
    }
}

/// The numbered migrations, oldest first. Append new steps; never edit an applied one.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "one key/value table of bytea per vault table",
    statements: create_every_table,
}];

/// Key of the migration advisory lock (first half; the second is a hash of the schema).
/// The ASCII bytes "VAUL".
const MIGRATION_LOCK: i32 = 0x5641_554c;

/// Names of everything the store creates, quoted and schema-qualified.
#[derive(Debug)]
struct Names {
    schema: String,
    schema_quoted: String,
    migrations: String,
    /// Qualified table name per [`Table`], indexed by [`Table::position`].
    tables: Vec<String>,
}

impl Names {
    fn new(schema: &str) -> Result<Self, StoreError> {
        check_identifier(schema, "schema")?;
        let schema_quoted = quote_ident(schema);
        let qualified = |name: &str| -> Result<String, StoreError> {
            check_identifier(name, "table")?;
            Ok(format!("{schema_quoted}.{}", quote_ident(name)))
        };
        let migrations = qualified("vault_schema_migrations")?;
        let tables = Table::ALL
            .iter()
            .map(|t| qualified(&table_name(*t)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            schema: schema.to_owned(),
            schema_quoted,
            migrations,
            tables,
        })
    }
}

/// The PostgreSQL table name of a vault table.
fn table_name(table: Table) -> String {
    format!("vault_{}", table.name())
}

/// Migration 1, and the step run on every start: a key/value table per [`Table`].
fn create_every_table(names: &Names) -> Vec<String> {
    names
        .tables
        .iter()
        .map(|t| {
            format!("CREATE TABLE IF NOT EXISTS {t} (key bytea PRIMARY KEY, value bytea NOT NULL)")
        })
        .collect()
}

/// PostgreSQL identifiers: at most 63 bytes, no NUL.
fn check_identifier(name: &str, what: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(StoreError::Engine(format!(
            "invalid PostgreSQL {what} name {name:?}: 1 to 63 bytes, no NUL"
        )));
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements of one table, prepared (and cached) per connection.
struct TableSql {
    get: String,
    scan_all: String,
    scan_from: String,
    scan_range: String,
    range_limit: String,
    from_limit: String,
    last: String,
    put: String,
    delete: String,
}

impl TableSql {
    fn new(table: &str) -> Self {
        Self {
            get: format!("SELECT value FROM {table} WHERE key = $1"),
            scan_all: format!("SELECT key, value FROM {table} ORDER BY key"),
            scan_from: format!("SELECT key, value FROM {table} WHERE key >= $1 ORDER BY key"),
            scan_range: format!(
                "SELECT key, value FROM {table} WHERE key >= $1 AND key < $2 ORDER BY key"
            ),
            range_limit: format!(
                "SELECT key, value FROM {table} WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3"
            ),
            from_limit: format!(
                "SELECT key, value FROM {table} WHERE key >= $1 ORDER BY key LIMIT $2"
            ),
            last: format!("SELECT key, value FROM {table} ORDER BY key DESC LIMIT 1"),
            put: format!(
                "INSERT INTO {table} (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete: format!("DELETE FROM {table} WHERE key = $1"),
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when
/// there is none (empty prefix, or a prefix of 0xFF bytes only).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Strings that must never appear in an error message: the password, as written in the
/// URL and as decoded.
struct Secrets(Vec<Zeroizing<String>>);

impl Secrets {
    fn from_url(url: &str) -> Self {
        let mut found = Vec::new();
        // URL form: scheme://user:password@host...
        if let Some((_, rest)) = url.split_once("://") {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@')
                && let Some((_, password)) = userinfo.split_once(':')
            {
                found.push(password.to_owned());
            }
        }
        // `password=...` as a URL query parameter or in the key=value form.
        for (i, _) in url.match_indices("password=") {
            let value = &url[i + "password=".len()..];
            let value = value.trim_start_matches('\'');
            let end = value
                .find(|c: char| c == '&' || c == '\'' || c.is_whitespace())
                .unwrap_or(value.len());
            found.push(value[..end].to_owned());
        }
        Self(
            found
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(Zeroizing::new)
                .collect(),
        )
    }

    fn add(&mut self, password: Option<&[u8]>) {
        if let Some(p) = password {
            let p = String::from_utf8_lossy(p).into_owned();
            if !p.is_empty() {
                self.0.push(Zeroizing::new(p));
            }
        }
    }

    fn scrub(&self, mut message: String) -> String {
        for secret in &self.0 {
            if message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "***");
            }
        }
        message
    }
}

/// `error` and its sources, one line. Database errors show severity, SQLSTATE and
/// message, never their DETAIL (which can quote key bytes).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = match cause.downcast_ref::<DbError>() {
            Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
            None => cause.to_string(),
        };
        if !message.ends_with(&part) {
            message.push_str(": ");
            message.push_str(&part);
        }
        source = cause.source();
    }
    message
}

/// What went wrong talking to the database.
#[derive(Debug)]
enum Failure {
    Pool(PoolError),
    Query(tokio_postgres::Error),
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Self {
        Failure::Pool(e)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Query(e)
    }
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Pool(PoolError::Backend(e)) => {
                format!("cannot connect to PostgreSQL: {}", describe(e))
            }
            Failure::Pool(e) => format!("PostgreSQL connection pool: {}", describe(e)),
            Failure::Query(e) => format!("PostgreSQL: {}", describe(e)),
        }
    }

    /// A pooled connection that turned out to be dead (server restarted, idle connection
    /// cut): the statement never ran, so running it again on a fresh connection is safe.
    fn is_stale_connection(&self) -> bool {
        match self {
            Failure::Query(e) => {
                e.code().is_none()
                    && (e.is_closed()
                        || std::error::Error::source(e)
                            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()))
            }
            Failure::Pool(_) => false,
        }
    }

    /// The database out of space or another resource (SQLSTATE class 53): the operator
    /// must act, and the daemon reports itself unavailable until a write commits again.
    fn unavailable(&self) -> Option<Unavailable> {
        let code = match self {
            Failure::Query(e) => e.code(),
            Failure::Pool(PoolError::Backend(e)) => e.code(),
            Failure::Pool(_) => None,
        }?;
        Unavailable::of_sqlstate(code.code())
    }

    /// A lost race with a concurrent transaction: nothing was written, the transaction
    /// can run again.
    fn lost_race(&self) -> Option<&DbError> {
        match self {
            Failure::Query(e) => e.as_db_error().filter(|db| {
                let code = db.code();
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::UNIQUE_VIOLATION
            }),
            Failure::Pool(_) => None,
        }
    }
}

/// How one run of a batch ended, short of an error.
enum Outcome {
    Committed,
    /// A check did not hold: the table of the first failing check.
    CheckFailed(Table),
}

/// The PostgreSQL-backed store. See the module documentation for its contract.
pub struct PostgresStore {
    pool: Pool,
    names: Names,
    /// Statements per table, indexed by [`Table::position`].
    sql: Vec<TableSql>,
    commit_attempts: u32,
    /// Where it connects, without the password, for `Debug` and messages.
    target: String,
    secrets: Secrets,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("schema", &self.names.schema)
            .field("pool_size", &status.max_size)
            .field("connections", &status.size)
            .finish()
    }
}

/// `user@host:port/dbname`, from the parsed configuration (so never the password).
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>();
    let ports = config
        .get_ports()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>();
    let hosts = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let ports = if ports.is_empty() {
        "5432".to_owned()
    } else {
        ports.join(",")
    };
    format!(
        "{}@{hosts}:{ports}/{}",
        config.get_user().unwrap_or("(default user)"),
        config.get_dbname().unwrap_or("(default database)")
    )
}

/// Parses `url` into tokio-postgres's configuration and the TLS connector it asks for
/// (`None`: plaintext), refusing plaintext to a remote host unless `allow_plaintext`.
/// Errors never include the password (the [`Secrets`] returned scrub later messages).
fn client_config(
    url: &str,
    allow_plaintext: bool,
) -> Result<(tokio_postgres::Config, Option<MakeRustls>, Secrets), StoreError> {
    let mut secrets = Secrets::from_url(url);
    let (rest, tls) = TlsSettings::split(url).map_err(|e| StoreError::Engine(secrets.scrub(e)))?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| {
        StoreError::Engine(secrets.scrub(format!(
            "invalid PostgreSQL URL (not shown: it may hold a password): {}",
            describe(&e)
        )))
    })?;
    secrets.add(config.get_password());
    let transport = tls
        .connector()
        .map_err(|e| StoreError::Engine(secrets.scrub(e)))?;
    match transport {
        Some(_) => {
            config.ssl_mode(SslMode::Require);
        }
        None => {
            if !allow_plaintext && !postgres_tls::is_loopback(&config) {
                return Err(StoreError::Engine(format!(
                    "refusing to connect to PostgreSQL at {} without TLS: the password would \
                     cross the network in clear. Add sslmode=verify-full&sslrootcert=/path/to/ca.pem \
                     to the URL, or set database_allow_plaintext = true for a private network \
                     the campaign controls",
                    describe_target(&config)
                )));
            }
            config.ssl_mode(SslMode::Disable);
        }
    }
    Ok((config, transport, secrets))
}

/// One connection to the database at `url`, with the store's TLS rules (for tools and
/// tests that need SQL the [`Store`] does not offer); its driver runs on the current
/// tokio runtime until the client is dropped.
pub async fn connect_client(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let (config, transport, secrets) = client_config(url, false)?;
    let fail = |e: tokio_postgres::Error| {
        StoreError::Engine(secrets.scrub(format!("cannot connect to PostgreSQL: {}", describe(&e))))
    };
    let client = match transport {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(fail)?;
            tokio::spawn(connection);
            client
        }
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(fail)?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`, or
    /// the `key=value` form), creates or migrates the schema, and checks that the server
    /// makes commits durable. Errors never include the password.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        let (mut config, transport, secrets) = client_config(url, options.allow_plaintext)?;
        if options.pool_size == 0 {
            return Err(StoreError::Engine(
                "the PostgreSQL pool size must be at least 1".to_owned(),
            ));
        }
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("vault");
        }
        let names = Names::new(&options.schema)?;
        let target = describe_target(&config);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match transport {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| {
                StoreError::Engine(secrets.scrub(format!(
                    "cannot build the PostgreSQL pool: {}",
                    describe(&e)
                )))
            })?;
        let sql = names.tables.iter().map(|t| TableSql::new(t)).collect();
        let store = Self {
            pool,
            names,
            sql,
            commit_attempts: options.commit_attempts.max(1),
            target,
            secrets,
        };
        store.check_durability().await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Where the store lives, for logs: `user@host:port/dbname, schema "name"`. Never the
    /// password.
    pub fn describe(&self) -> String {
        format!("{}, schema {:?}", self.target, self.names.schema)
    }

    /// Empties every vault table and leaves `marker` (value `1`) in [`Table::Meta`], in
    /// one transaction. `vaultctl restore` runs it before copying a backup in
    /// ([`super::copy::copy_into_marked`]): the database is never seen half-emptied, and an
    /// interrupted copy leaves the marker, which the vault refuses to open. Nothing else
    /// may use the database meanwhile (stop every replica first).
    pub async fn truncate_and_mark(&self, marker: &[u8]) -> Result<(), StoreError> {
        let run = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            tx.batch_execute(&format!("TRUNCATE {}", self.names.tables.join(", ")))
                .await?;
            let statement = tx.prepare_cached(&self.sql(Table::Meta).put).await?;
            tx.execute(&statement, &[&marker, &b"1".as_slice()]).await?;
            tx.commit().await?;
            Ok::<_, Failure>(())
        };
        run.await.map_err(|e| self.engine(&e))
    }

    fn sql(&self, table: Table) -> &TableSql {
        &self.sql[table.position()]
    }

    fn engine(&self, failure: &Failure) -> StoreError {
        let detail =
            self.secrets
                .scrub(format!("{} (database {})", failure.describe(), self.target));
        match failure.unavailable() {
            Some(cause) => StoreError::Unavailable { cause, detail },
            None => StoreError::Engine(detail),
        }
    }

    /// Refuses a server that would acknowledge commits before they are durable.
    async fn check_durability(&self) -> Result<(), StoreError> {
        let settings = async {
            let client = self.pool.get().await?;
            let row = client
                .query_one(
                    "SELECT current_setting('synchronous_commit'), current_setting('fsync')",
                    &[],
                )
                .await?;
            Ok::<_, Failure>((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?))
        }
        .await
        .map_err(|e| self.engine(&e))?;
        match settings {
            (synchronous_commit, _) if synchronous_commit == "off" => Err(StoreError::Engine(
                "PostgreSQL has synchronous_commit = off: acknowledged writes could be lost; \
                 set it to on (or local, remote_write, remote_apply) for the vault's role"
                    .to_owned(),
            )),
            (_, fsync) if fsync == "off" => Err(StoreError::Engine(
                "PostgreSQL runs with fsync = off: acknowledged writes could be lost in a \
                 crash; turn fsync on"
                    .to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// Creates the schema and applies the migrations it lacks, under the advisory lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        self.try_migrate().await.map_err(|e| match e {
            MigrateError::Failure(f) => self.engine(&f),
            MigrateError::Store(e) => e,
        })
    }

    async fn try_migrate(&self) -> Result<(), MigrateError> {
        let names = &self.names;
        let mut client = self.pool.get().await.map_err(Failure::from)?;
        let tx = client.transaction().await.map_err(Failure::from)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&MIGRATION_LOCK, &names.schema],
        )
        .await
        .map_err(Failure::from)?;
        let schema_exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&names.schema],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(Failure::from)?;
        if !schema_exists {
            tx.batch_execute(&format!("CREATE SCHEMA {}", names.schema_quoted))
                .await
                .map_err(Failure::from)?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())",
            names.migrations
        ))
        .await
        .map_err(Failure::from)?;
        let current: i32 = tx
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {}", names.migrations),
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(Failure::from)?;
        let latest = MIGRATIONS.last().map_or(0, |m| m.version);
        if current > latest {
            return Err(MigrateError::Store(StoreError::Engine(format!(
                "the PostgreSQL schema {:?} is at migration {current}, newer than this build \
                 knows ({latest}): run a newer vault",
                names.schema
            ))));
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
            for statement in (migration.statements)(names) {
                tx.batch_execute(&statement).await.map_err(Failure::from)?;
            }
            tx.execute(
                &format!(
                    "INSERT INTO {} (version, applied_at) VALUES ($1, now())",
                    names.migrations
                ),
                &[&migration.version],
            )
            .await
            .map_err(Failure::from)?;
            tracing::info!(
                version = migration.version,
                description = migration.description,
                schema = %names.schema,
                "applied PostgreSQL schema migration"
            );
        }
        // Tables added to `Table::ALL` since the numbered migrations.
        for statement in create_every_table(names) {
            tx.batch_execute(&statement).await.map_err(Failure::from)?;
        }
        tx.commit().await.map_err(Failure::from)?;
        Ok(())
    }

    async fn try_get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(&self.sql(table).get).await?;
        let row = client.query_opt(&statement, &[&key]).await?;
        Ok(match row {
            Some(row) => Some(row.try_get::<_, Vec<u8>>(0)?),
            None => None,
        })
    }

    async fn try_scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Failure> {
        let client = self.pool.get().await?;
        let sql = self.sql(table);
        let rows = if prefix.is_empty() {
            let statement = client.prepare_cached(&sql.scan_all).await?;
            client.query(&statement, &[]).await?
        } else if let Some(end) = prefix_successor(prefix) {
            let statement = client.prepare_cached(&sql.scan_range).await?;
            client.query(&statement, &[&prefix, &end]).await?
        } else {
            let statement = client.prepare_cached(&sql.scan_from).await?;
            client.query(&statement, &[&prefix]).await?
        };
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Runs `batch` once in a serializable transaction.
    async fn try_commit(&self, batch: &Batch) -> Result<Outcome, CommitFailure> {
        let mut client = self.pool.get().await.map_err(CommitFailure::before)?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()
            .await
            .map_err(CommitFailure::before)?;
        for check in &batch.checks {
            let statement = tx
                .prepare_cached(&self.sql(check.table).get)
                .await
                .map_err(CommitFailure::before)?;
            let current = tx
                .query_opt(&statement, &[&check.key])
                .await
                .and_then(|row| row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose())
                .map_err(CommitFailure::before)?;
            if current != check.expect {
                // Nothing was written. If the rollback itself fails the connection is
                // broken, the server rolls back, and the pool drops the connection.
                let _ = tx.rollback().await;
                return Ok(Outcome::CheckFailed(check.table));
            }
        }
        for op in &batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    let statement = tx
                        .prepare_cached(&self.sql(*table).put)
                        .await
                        .map_err(CommitFailure::before)?;
                    tx.execute(&statement, &[key, value])
                        .await
                        .map_err(CommitFailure::before)?;
                }
                Op::Delete { table, key } => {
                    let statement = tx
                        .prepare_cached(&self.sql(*table).delete)
                        .await
                        .map_err(CommitFailure::before)?;
                    tx.execute(&statement, &[key])
                        .await
                        .map_err(CommitFailure::before)?;
                }
            }
        }
        // Returns once the server acknowledged COMMIT, i.e. (synchronous_commit) once the
        // commit record is flushed to the write-ahead log.
        tx.commit().await.map_err(|e| CommitFailure {
            failure: e.into(),
            during_commit: true,
        })?;
        Ok(Outcome::Committed)
    }

    /// The table to name in a [`StoreError::Contended`] for a lost race: the table the
    /// database names if it is one of ours, else the batch's first.
    fn conflict_table(&self, db: &DbError, batch: &Batch) -> &'static str {
        let named = db.table().and_then(|name| {
            Table::ALL
                .iter()
                .find(|t| table_name(**t) == name)
                .map(|t| t.name())
        });
        named
            .or_else(|| batch.checks.first().map(|c| c.table.name()))
            .or_else(|| {
                batch.ops.first().map(|op| match op {
                    Op::Put { table, .. } | Op::Delete { table, .. } => table.name(),
                })
            })
            .unwrap_or("unknown")
    }
}

enum MigrateError {
    Failure(Failure),
    Store(StoreError),
}

impl From<Failure> for MigrateError {
    fn from(f: Failure) -> Self {
        MigrateError::Failure(f)
    }
}

/// A failed run of a batch, and whether it failed while `COMMIT` was in flight.
struct CommitFailure {
    failure: Failure,
    during_commit: bool,
}

impl CommitFailure {
    fn before(e: impl Into<Failure>) -> Self {
        Self {
            failure: e.into(),
            during_commit: false,
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.try_get(table, key).await {
            Err(e) if e.is_stale_connection() => self.try_get(table, key).await,
            result => result,
        }
        .map_err(|e| self.engine(&e))
    }

    async fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        match self.try_scan_prefix(table, prefix).await {
            Err(e) if e.is_stale_connection() => self.try_scan_prefix(table, prefix).await,
            result => result,
        }
        .map_err(|e| self.engine(&e))
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.checks.is_empty() && batch.ops.is_empty() {
            return Ok(());
        }
        let mut stale_retried = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.try_commit(&batch).await {
                Ok(Outcome::Committed) => return Ok(()),
                Ok(Outcome::CheckFailed(table)) => return Err(StoreError::Conflict(table.name())),
                Err(failure) => failure,
            };
            if let Some(db) = failure.failure.lost_race() {
                // Nothing was written (this includes a serialization failure at COMMIT).
                if attempt >= self.commit_attempts {
                    return Err(StoreError::Contended(self.conflict_table(db, &batch)));
                }
                crate::backoff::Backoff::ENGINE.pause(attempt).await;
                continue;
            }
            if failure.during_commit && failure.failure.is_stale_connection() {
                return Err(StoreError::Engine(self.secrets.scrub(format!(
                    "the connection to PostgreSQL broke while committing; the batch may or may \
                     not have been applied: {} (database {})",
                    failure.failure.describe(),
                    self.target
                ))));
            }
            if !failure.during_commit && failure.failure.is_stale_connection() && !stale_retried {
                stale_retried = true;
                attempt -= 1;
                continue;
            }
            return Err(self.engine(&failure.failure));
        }
    }

    async fn scan_range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let run = || async {
            let client = self.pool.get().await?;
            let sql = self.sql(table);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = match end {
                Some(end) => {
                    let statement = client.prepare_cached(&sql.range_limit).await?;
                    client.query(&statement, &[&start, &end, &limit]).await?
                }
                None => {
                    let statement = client.prepare_cached(&sql.from_limit).await?;
                    client.query(&statement, &[&start, &limit]).await?
                }
            };
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<Vec<_>, Failure>>()
        };
        match run().await {
            Err(e) if e.is_stale_connection() => run().await,
            result => result,
        }
        .map_err(|e| self.engine(&e))
    }

    async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let run = || async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(&self.sql(table).last).await?;
            let rows = client.query(&statement, &[]).await?;
            let first: Option<(Vec<u8>, Vec<u8>)> = match rows.first() {
                Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
                None => None,
            };
            Ok::<_, Failure>(first)
        };
        match run().await {
            Err(e) if e.is_stale_connection() => run().await,
            result => result,
        }
        .map_err(|e| self.engine(&e))
    }

    /// The documented fallback: the group folded into one batch, run as one serializable
    /// transaction (with `commit`'s retries), so it is durable when it returns.
    async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        self.commit(Batch::merged(batches)?).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        // Every acknowledged commit is already durable (see the module documentation).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::*;
    use crate::storage::contract::{self, Engine, Place, VaultStack};

    const URL_VAR: &str = "VAULT_TEST_DATABASE_URL";

    /// The test database, or `None` (with a loud line on stderr) when it is not configured.
    fn database_url() -> Option<String> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                // Straight to stderr, past the test harness's output capture, so the
                // skip shows in a normal `cargo test` run.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: {URL_VAR} is not set; PostgreSQL store tests did not run \
                     (start a database with .ci/postgres-start)"
                );
                None
            }
        }
    }

    /// A fresh schema of the test database, dropped when this is dropped (also when the
    /// test fails), after the test's stores (declare it first).
    struct TestDb {
        url: String,
        options: PostgresOptions,
    }

    impl TestDb {
        fn new() -> Option<Self> {
            Some(Self::at(database_url()?))
        }

        /// A fresh schema of the database at `url`.
        fn at(url: String) -> Self {
            let options = PostgresOptions {
                pool_size: 8,
                schema: format!("vault_test_{}", uuid::Uuid::new_v4().simple()),
                ..PostgresOptions::default()
            };
            Self { url, options }
        }

        async fn open(&self) -> Result<PostgresStore, StoreError> {
            PostgresStore::connect(&self.url, &self.options).await
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            // Drop may run inside the test's runtime (or while unwinding from a failed
            // assertion): use a thread with its own runtime, and never panic here.
            let url = self.url.clone();
            let sql = format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(&self.options.schema)
            );
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    let client = connect_client(&url).await.map_err(|e| e.to_string())?;
                    client.batch_execute(&sql).await.map_err(|e| e.to_string())
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: could not drop test schema {}",
                    self.options.schema
                );
            }
        }
    }

    fn put(table: Table, key: &[u8], value: &[u8]) -> Batch {
        let mut b = Batch::new();
        b.put(table, key, value.to_vec());
        b
    }

    /// The test database, for the contract suite: each store a fresh schema.
    struct Postgres {
        url: String,
    }

    #[async_trait]
    impl Engine for Postgres {
        async fn create(&self) -> Result<Box<dyn Place>, StoreError> {
            Ok(Box::new(TestDb::at(self.url.clone())))
        }
    }

    /// One schema; each handle is a store of its own (its own pool), as replicas are.
    #[async_trait]
    impl Place for TestDb {
        async fn open(&self, handles: usize) -> Result<Vec<Arc<dyn Store>>, StoreError> {
            let mut opened: Vec<Arc<dyn Store>> = Vec::with_capacity(handles);
            for _ in 0..handles {
                opened.push(Arc::new(self.open().await?));
            }
            Ok(opened)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_keeps_the_store_contract() -> Result<(), StoreError> {
        let Some(url) = database_url() else {
            return Ok(());
        };
        contract::run_all(&Postgres { url }).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_vault_stack_on_postgres_keeps_the_store_contract() -> Result<(), StoreError> {
        let Some(url) = database_url() else {
            return Ok(());
        };
        contract::run_all(&VaultStack(Postgres { url })).await
    }

    #[test]
    fn prefix_successor_handles_empty_and_ff() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[0xFF]), None);
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[0x00]), Some(vec![0x01]));
        assert_eq!(prefix_successor(&[0x01, 0xFF]), Some(vec![0x02]));
        assert_eq!(prefix_successor(&[0x01, 0xFE]), Some(vec![0x01, 0xFF]));
        assert_eq!(
            prefix_successor(&[0xFF, 0x00, 0xFF]),
            Some(vec![0xFF, 0x01])
        );
    }

    #[test]
    fn secrets_are_found_in_every_url_form() {
        let s = Secrets::from_url("postgres://vault:pa:ss@w0rd@db.local:5432/vault?x=1");
        assert_eq!(
            s.scrub("a pa:ss@w0rd b".to_owned()),
            "a *** b",
            "userinfo password, split at the last @"
        );
        let s = Secrets::from_url("host=db user=vault password='hunter 2' dbname=v");
        assert_eq!(s.scrub("x hunter y".to_owned()), "x *** y");
        let s = Secrets::from_url("postgres://db/v?user=vault&password=qwerty&sslmode=disable");
        assert_eq!(s.scrub("qwerty!".to_owned()), "***!");
    }

    #[test]
    fn database_url_debug_and_redacted_hide_the_password() {
        let url = DatabaseUrl::new("postgres://vault:Zq9-secret-pw@db.internal:5433/campaign");
        assert_eq!(url.redacted(), "vault@db.internal:5433/campaign");
        let debug = format!("{url:?}");
        assert!(!debug.contains("Zq9-secret-pw"), "{debug}");
        assert!(debug.contains("db.internal"), "{debug}");
        assert!(url.expose().contains("Zq9-secret-pw"));
        let bad = DatabaseUrl::new("postgres://vault:Zq9-secret-pw@[bad");
        assert!(!format!("{bad:?}").contains("Zq9-secret-pw"));
    }

    /// Runs `batch` on a store with `attempts` commit attempts while another transaction
    /// holds `key` of `Table::Records` inserted and uncommitted: the batch's write waits
    /// for it, and once it commits, SERIALIZABLE refuses the batch (40001) on its first try.
    async fn commit_behind_a_held_insert(
        attempts: u32,
        batch: Batch,
        key: &[u8],
    ) -> Option<Result<(), StoreError>> {
        let mut db = TestDb::new()?;
        db.options.commit_attempts = attempts;
        let store = Arc::new(db.open().await.unwrap());
        let mut holder = connect_client(&db.url).await.unwrap();
        let held = holder
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()
            .await
            .unwrap();
        let table = format!(
            "{}.{}",
            quote_ident(&db.options.schema),
            table_name(Table::Records)
        );
        held.execute(
            &format!("INSERT INTO {table} (key, value) VALUES ($1, $2)"),
            &[&key, &b"held".as_slice()],
        )
        .await
        .unwrap();
        let committing = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.commit(batch).await }
        });
        // Until the batch waits on the held row (no timing: the server says so).
        let watcher = connect_client(&db.url).await.unwrap();
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        held.commit().await.unwrap();
        Some(committing.await.unwrap())
    }

    /// A race lost as many times as the engine tries is [`StoreError::Contended`], which
    /// the operation's retry does not run again (ten engine tries times 128 stacked); a
    /// check that fails on the engine's retry is still a [`StoreError::Conflict`].
    #[tokio::test]
    async fn races_lost_past_the_attempts_are_contention_and_failed_checks_conflicts() {
        let Some(lost) =
            commit_behind_a_held_insert(1, put(Table::Records, b"k", b"mine"), b"k").await
        else {
            return;
        };
        assert!(
            matches!(lost, Err(StoreError::Contended("records"))),
            "{lost:?}"
        );
        // With a second try the checks are read again, against the winner's row.
        let mut claim = put(Table::Records, b"k", b"mine");
        claim.check(Table::Records, b"k", None);
        let conflict = commit_behind_a_held_insert(2, claim, b"k")
            .await
            .expect("the database was there a moment ago");
        assert!(
            matches!(conflict, Err(StoreError::Conflict("records"))),
            "{conflict:?}"
        );
    }

    /// The database's own class-53 errors, raised by the server (a real `DbError`, as a
    /// full disk gives), become [`StoreError::Unavailable`] with their cause; other errors
    /// stay engine errors. A database's disk cannot be filled from a test.
    #[tokio::test]
    async fn insufficient_resources_make_the_store_unavailable() -> Result<(), StoreError> {
        let Some(db) = TestDb::new() else {
            return Ok(());
        };
        let store = db.open().await?;
        let raise = |code: &'static str| {
            let store = &store;
            async move {
                let run = async {
                    let client = store.pool.get().await?;
                    client
                        .batch_execute(&format!(
                            "DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{code}'; END $$"
                        ))
                        .await?;
                    Ok::<_, Failure>(())
                };
                match run.await {
                    Ok(()) => panic!("RAISE did not fail"),
                    Err(failure) => store.engine(&failure),
                }
            }
        };
        assert!(matches!(
            raise("53100").await,
            StoreError::Unavailable {
                cause: Unavailable::DatabaseDiskFull,
                ..
            }
        ));
        assert!(matches!(
            raise("53200").await,
            StoreError::Unavailable {
                cause: Unavailable::DatabaseResources("53200"),
                ..
            }
        ));
        assert!(matches!(raise("XX000").await, StoreError::Engine(_)));
        Ok(())
    }

    #[tokio::test]
    async fn errors_and_debug_never_show_the_password() {
        // No database needed: nothing listens on port 1.
        let password = "Sup3r-s3cret-pw";
        let url = format!("postgres://vault:{password}@127.0.0.1:1/vault_test");
        let options = PostgresOptions {
            connect_timeout: Duration::from_secs(2),
            ..PostgresOptions::default()
        };
        let err = PostgresStore::connect(&url, &options).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Engine(_)), "{message}");
        assert!(!message.contains(password), "{message}");
        assert!(message.contains("127.0.0.1"), "{message}");

        let err = PostgresStore::connect(&format!("postgres://vault:{password}@[bad"), &options)
            .await
            .unwrap_err();
        assert!(!err.to_string().contains(password), "{err}");

        // TLS without a CA file would authenticate no server: refused, not downgraded.
        let err = PostgresStore::connect(
            &format!("postgres://vault:{password}@127.0.0.1:1/v?sslmode=require"),
            &options,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
        assert!(!err.to_string().contains(password), "{err}");

        // With a database: a wrong password is refused without echoing it, and Debug of a
        // connected store does not print the URL's password.
        let Some(db) = TestDb::new() else { return };
        let store = db.open().await.unwrap();
        let debug = format!("{store:?}");
        for secret in &store.secrets.0 {
            assert!(
                !debug.contains(&format!(":{}@", secret.as_str())),
                "{debug}"
            );
            if !store.target.contains(secret.as_str()) {
                assert!(!debug.contains(secret.as_str()), "{debug}");
            }
            let wrong = db.url.replacen(
                &format!(":{}@", secret.as_str()),
                &format!(":{password}@"),
                1,
            );
            if wrong != db.url {
                let err = PostgresStore::connect(&wrong, &db.options)
                    .await
                    .unwrap_err();
                assert!(!err.to_string().contains(password), "{err}");
            }
        }
        assert!(debug.contains(&db.options.schema), "{debug}");
    }

    #[tokio::test]
    async fn plaintext_to_a_remote_host_is_refused_before_connecting() {
        // 192.0.2.0/24 is TEST-NET-1: nothing answers there, so an attempt to connect would
        // time out; the refusal comes first, naming the remedies, never the password.
        let options = PostgresOptions {
            connect_timeout: Duration::from_secs(2),
            ..PostgresOptions::default()
        };
        for url in [
            "postgres://vault:pw-Remote-1@192.0.2.10:5432/vault",
            "postgres://vault:pw-Remote-1@db.example.fr/vault?sslmode=prefer",
            "host=192.0.2.10 user=vault password=pw-Remote-1 dbname=vault sslmode=disable",
        ] {
            let err = PostgresStore::connect(url, &options).await.unwrap_err();
            let message = err.to_string();
            assert!(message.contains("without TLS"), "{url}: {message}");
            assert!(message.contains("sslmode=verify-full"), "{message}");
            assert!(message.contains("database_allow_plaintext"), "{message}");
            assert!(!message.contains("pw-Remote-1"), "{message}");
        }
        // Allowed explicitly: it goes on to connect (and fails there, nothing listens).
        let allowed = PostgresOptions {
            allow_plaintext: true,
            connect_timeout: Duration::from_millis(200),
            ..PostgresOptions::default()
        };
        let err = PostgresStore::connect("postgres://vault:pw@192.0.2.10/vault", &allowed)
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("without TLS"), "{err}");
    }

    /// The test cluster's URL (from `.ci/postgres-start`) asks for verify-full: its parts,
    /// to build variants of it.
    fn tls_parts(url: &str) -> (tokio_postgres::Config, PathBuf) {
        let (rest, tls) = TlsSettings::split(url).unwrap();
        let ca = tls.root_cert.unwrap_or_else(|| {
            panic!("VAULT_TEST_DATABASE_URL names no sslrootcert: use the URL .ci/postgres-start prints (TLS, verify-full)")
        });
        assert_eq!(tls.mode, postgres_tls::TlsMode::VerifyFull);
        (rest.parse().unwrap(), ca)
    }

    /// A keyword connection string to the test cluster, connecting to 127.0.0.1 under the
    /// TLS name `host`.
    fn keyword_url(config: &tokio_postgres::Config, host: &str, mode: &str, ca: &Path) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user={} password={} dbname={} sslmode={mode} sslrootcert={}",
            config.get_ports().first().copied().unwrap_or(5432),
            quote(config.get_user().unwrap()),
            quote(std::str::from_utf8(config.get_password().unwrap()).unwrap()),
            quote(config.get_dbname().unwrap()),
            quote(ca.to_str().unwrap()),
        )
    }

    #[tokio::test]
    async fn the_store_speaks_tls_and_authenticates_the_server() {
        let Some(db) = TestDb::new() else { return };
        // The store's own connections are encrypted (the server says so).
        let store = db.open().await.unwrap();
        let client = store.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the store's connection is not TLS");
        let version: String = row.get(1);
        assert!(version == "TLSv1.3" || version == "TLSv1.2", "{version}");
        drop(client);

        let (config, ca) = tls_parts(&db.url);
        let options = PostgresOptions {
            connect_timeout: Duration::from_secs(5),
            ..db.options.clone()
        };
        // verify-full checks the name: the certificate names 127.0.0.1 and localhost, not
        // this host, so the handshake fails; require (verify-ca) checks only the chain.
        let wrong_name = keyword_url(&config, "db.wrong-name.example", "verify-full", &ca);
        let err = connect_client(&wrong_name).await.unwrap_err();
        assert!(format!("{err}").contains("cannot connect"), "{err}");
        let chain_only = keyword_url(&config, "db.wrong-name.example", "require", &ca);
        let client = connect_client(&chain_only).await.unwrap();
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0));
        PostgresStore::connect(
            &keyword_url(&config, "localhost", "verify-full", &ca),
            &options,
        )
        .await
        .unwrap();

        // A CA that did not sign the server's certificate: refused in every TLS mode.
        let dir = tempfile::tempdir().unwrap();
        let other_ca = dir.path().join("other-ca.pem");
        std::fs::write(&other_ca, OTHER_CA).unwrap();
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = keyword_url(&config, "localhost", mode, &other_ca);
            let err = PostgresStore::connect(&url, &options).await.unwrap_err();
            assert!(matches!(err, StoreError::Engine(_)), "{mode}: {err}");
        }
    }

    /// A self-signed CA certificate that signed nothing the test cluster holds.
    const OTHER_CA: &str = include_str!("testdata/other-ca.pem");

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_are_idempotent_and_race_free() {
        let Some(db) = TestDb::new() else { return };
        // Two daemons starting at once on a fresh schema, then a third later.
        let (a, b) = tokio::join!(db.open(), db.open());
        let (a, b) = (a.unwrap(), b.unwrap());
        a.commit(put(Table::Records, b"k", b"v")).await.unwrap();
        drop(b);
        let c = db.open().await.unwrap();
        assert_eq!(
            c.get(Table::Records, b"k").await.unwrap(),
            Some(b"v".to_vec())
        );
        let client = c.pool.get().await.unwrap();
        let versions: Vec<i32> = client
            .query(
                &format!(
                    "SELECT version FROM {} ORDER BY version",
                    c.names.migrations
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let known: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, known);
        // A schema migrated by a newer build is refused.
        client
            .execute(
                &format!(
                    "INSERT INTO {} (version, applied_at) VALUES ($1, now())",
                    c.names.migrations
                ),
                &[&(known.last().unwrap() + 1)],
            )
            .await
            .unwrap();
        drop(client);
        let err = db.open().await.unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
}
