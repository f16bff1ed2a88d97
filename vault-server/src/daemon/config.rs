//! Daemon configuration: flags, environment, TOML file, defaults, in that order of
//! precedence.
//!
//! Zero configuration works: data in `./vault-data`, listening on `127.0.0.1:50051`,
//! plaintext on loopback. The TOML file holds what flags do not (store tuning, TLS,
//! purposes, retention, key rotation, `[limits]`); unknown keys are an error so a typo never
//! silently leaves a setting at its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use vault_core::storage::sled_store::SledOptions;
use vault_core::storage::{DatabaseUrl, PostgresOptions};
use vault_core::{StorageChoice, VaultOptions};

use crate::daemon::layers::limits::Limits;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./vault-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Name of the bootstrap admin token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Command-line flags of `vault-server` (each also readable from its environment variable).
#[derive(Debug, Parser)]
#[command(
    name = "vault-server",
    version,
    about = "The vault daemon: GDPR-native supporter data vault"
)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "VAULT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (embedded store, root key and admin token by default).
    #[arg(long, env = "VAULT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on, for example 127.0.0.1:50051 (port 0 picks a free port).
    #[arg(long, env = "VAULT_LISTEN")]
    pub listen: Option<String>,
    /// Root key file (default: `<data-dir>/root.key`).
    #[arg(long, env = "VAULT_ROOT_KEY_FILE")]
    pub root_key: Option<PathBuf>,
    /// PostgreSQL connection URL: the store is then PostgreSQL, which several replicas may
    /// share (prefer VAULT_DATABASE_URL or the config file: flags are visible to other
    /// users of the machine).
    #[arg(long, env = "VAULT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL schema holding the vault's tables (default: public).
    #[arg(long, env = "VAULT_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Serve Prometheus metrics (`GET /metrics`, plain HTTP) on this address, for example
    /// 127.0.0.1:9464; off when absent. Loopback only unless the config file's `[metrics]
    /// allow_non_loopback = true`.
    #[arg(long, env = "VAULT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

/// The access log's retention a config may set, in days: at least six months (the CNIL's
/// floor for access logs), at most three years.
pub const AUDIT_RETENTION_DAYS: std::ops::RangeInclusive<u32> = 183..=1095;

/// The TOML configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Root key file.
    pub root_key_file: Option<PathBuf>,
    /// Storage engine: `"sled"` (embedded, the default) or `"postgres"` (needs a
    /// database URL). A database URL alone also selects PostgreSQL.
    pub storage: Option<String>,
    /// PostgreSQL connection URL.
    pub database_url: Option<String>,
    /// PostgreSQL schema holding the vault's tables (default `public`).
    pub database_schema: Option<String>,
    /// Most connections this daemon opens to PostgreSQL (default 16). Keep replicas ×
    /// pool size under the server's `max_connections`.
    pub database_pool_size: Option<usize>,
    /// Connect to PostgreSQL without TLS although the host is not this machine (loopback
    /// or a Unix socket). Off by default: the database password would cross the network
    /// in clear; prefer `sslmode=verify-full&sslrootcert=...` in the URL.
    pub database_allow_plaintext: Option<bool>,
    /// Page cache of the embedded store, in MiB (default 256).
    pub cache_capacity_mib: Option<u64>,
    /// Serve plaintext gRPC on a non-loopback address. Off by default: without TLS,
    /// tokens and personal data would cross the network in clear.
    pub allow_insecure_plaintext: Option<bool>,
    /// TLS for the gRPC port, and optionally mutual TLS.
    pub tls: Option<TlsConfig>,
    /// Seconds in-flight calls get to finish after SIGTERM before connections are closed
    /// (default 10).
    pub shutdown_grace_seconds: Option<u64>,
    /// Purposes of the registry (`[[purposes]]` tables): each one is added, or replaces the
    /// purpose of its id, at every start. A new store starts from the default registry of
    /// API.md (unless `[purposes_policy] replace_defaults = true`), so one entry adds to the
    /// defaults rather than dropping them.
    pub purposes: Option<Vec<vault_core::Purpose>>,
    /// What a new store's registry starts from (`[purposes_policy]`).
    pub purposes_policy: Option<PurposesPolicy>,
    /// The controller named in the record of processing activities.
    pub controller: Option<vault_core::report::Controller>,
    /// Days access-log entries are kept (default 365; CNIL: six months to a year; 183 to
    /// 1095 accepted).
    pub audit_retention_days: Option<u32>,
    /// A signed checkpoint every this many access-log entries (default 1000).
    pub audit_checkpoint_entries: Option<u64>,
    /// A signed checkpoint when entries were added and the last one is this many seconds
    /// old (default 10).
    pub audit_checkpoint_seconds: Option<u64>,
    /// The origin line of the access log's C2SP checkpoints, and the name of its key in
    /// their signed notes (default `vault.local/<first 16 hex digits of the signing key's
    /// SHA-256>`). Witnesses know the log by it: change it and they see a new log.
    pub audit_origin: Option<String>,
    /// Witnesses that cosign the access log's checkpoints (`[[audit_witnesses]]` tables).
    pub audit_witnesses: Option<Vec<WitnessEntry>>,
    /// Hours between retention sweeps (default 24; 0 turns the scheduled sweep off). The
    /// sweep erases supporters no purpose may keep any longer.
    pub retention_sweep_hours: Option<u64>,
    /// The shortest `retention_days` a purpose may have, here or through `Admin.PutPurpose`
    /// (default and minimum 30, at most 3650): it can only be raised, so that no setting
    /// lets one slip make the next sweep erase the file.
    pub min_retention_days: Option<u32>,
    /// Key rotation schedule and backup window (`[keys]`).
    pub keys: Option<KeysConfig>,
    /// Message sizes, rates, calls in flight and deadlines (`[limits]`).
    pub limits: Option<LimitsConfig>,
    /// The Prometheus metrics listener (`[metrics]`).
    pub metrics: Option<MetricsConfig>,
}

/// The `[metrics]` section: where Prometheus scrapes the daemon's metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the metrics listener (`--metrics-listen` and `VAULT_METRICS_LISTEN`
    /// take precedence); off when absent.
    pub listen: Option<String>,
    /// Serve metrics on a non-loopback address. Off by default: the listener has no TLS
    /// and no authentication, so it stays on loopback unless a firewall or a private
    /// network restricts who can reach it.
    pub allow_non_loopback: Option<bool>,
}

impl MetricsConfig {
    /// The metrics listener's address, `flag` (flag or environment) before the file's.
    fn listen(&self, flag: Option<String>) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(text) = flag.or_else(|| self.listen.clone()) else {
            return Ok(None);
        };
        let addr: SocketAddr = text.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "metrics listen address {text:?} is not an IP:port such as 127.0.0.1:9464"
            ))
        })?;
        if !addr.ip().is_loopback() && !self.allow_non_loopback.unwrap_or(false) {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve metrics on non-loopback address {addr}: the metrics \
                 listener is plain HTTP without authentication. Listen on 127.0.0.1 and \
                 scrape locally or through a proxy, or set allow_non_loopback = true in the \
                 [metrics] section if a firewall restricts who reaches it"
            )));
        }
        Ok(Some(addr))
    }
}

/// The `[purposes_policy]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposesPolicy {
    /// A new store's registry is the file's `[[purposes]]` alone (and the built-in
    /// `data-subject-rights`), without the defaults (default false). A store that already
    /// has a registry keeps its purposes: a start never removes one.
    pub replace_defaults: Option<bool>,
}

/// One `[[audit_witnesses]]` table: a C2SP tlog-witness and its cosigning key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// The witness's submission prefix: `add-checkpoint` is POSTed to `<url>/add-checkpoint`
    /// (`http://` only: checkpoints and cosignatures are public, signed data).
    pub url: String,
    /// The witness's cosigning key as a vkey, `<name>+<key id>+<base64(0x04 ‖ key)>`.
    pub vkey: String,
}

/// A witness, resolved.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// Where to POST `add-checkpoint`.
    pub url: http::Uri,
    /// Its cosigning key.
    pub cosigner: vault_core::audit::witness::Cosigner,
}

impl WitnessEntry {
    fn resolve(&self, n: usize) -> Result<WitnessConfig, ConfigError> {
        let bad = |why: String| ConfigError::Invalid(format!("[[audit_witnesses]] #{n}: {why}"));
        let cosigner = vault_core::audit::witness::Cosigner::from_vkey(&self.vkey)
            .map_err(|e| bad(e.to_string()))?;
        let base = self.url.trim().trim_end_matches('/');
        let url: http::Uri = format!("{base}/add-checkpoint")
            .parse()
            .map_err(|e| bad(format!("url {:?} is not a URL: {e}", self.url)))?;
        if url.scheme_str() != Some("http") || url.host().is_none() {
            return Err(bad(format!(
                "url {:?} must be http://host[:port][/prefix]",
                self.url
            )));
        }
        Ok(WitnessConfig { url, cosigner })
    }
}

/// The `[limits]` section: what one client, one connection and the whole daemon may ask at
/// once. Every key is optional; the defaults ([`Limits::default`]) are generous enough that
/// normal use, the load generator and the test suite never meet them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request message, in bytes (default 4 MiB). Larger: `RESOURCE_EXHAUSTED`.
    pub max_request_bytes: Option<u64>,
    /// Largest reply message, in bytes (default 64 MiB: a `Rights.Export` document is one
    /// message).
    pub max_response_bytes: Option<u64>,
    /// Calls per second per client, on average (default 50,000; fractions allowed).
    pub requests_per_second: Option<f64>,
    /// Calls a client may make at once after being idle (default 50,000).
    pub request_burst: Option<u32>,
    /// Calls in flight per client (default 256).
    pub calls_in_flight_per_client: Option<u32>,
    /// Calls in flight in the whole daemon, unauthenticated ones included (default 1,024).
    pub calls_in_flight: Option<u32>,
    /// Calls in flight per connection: HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` (default
    /// 256).
    pub streams_per_connection: Option<u32>,
    /// Default deadline of unary calls, in seconds (default 30; 0: none). Streams and the
    /// long-running maintenance calls are never cut; a client's `grpc-timeout` always
    /// applies.
    pub unary_timeout_seconds: Option<u64>,
    /// Rows one `Supporters.Import` stream may carry (default 100,000; at most 10,000,000).
    /// More: `RESOURCE_EXHAUSTED`, the rows before imported.
    pub import_rows_per_call: Option<u64>,
    /// Open connections in the whole daemon (default 4,096). More are accepted and closed
    /// at once.
    pub max_connections: Option<u32>,
    /// Open connections from one peer IP address (default 256; at most `max_connections`).
    pub connections_per_peer: Option<u32>,
    /// Seconds from accept to the end of the TLS handshake and the HTTP/2 client preface
    /// (default 10; 1 to 300).
    pub handshake_timeout_seconds: Option<u64>,
    /// Seconds a connection may stay with no call in flight (default 300; 0: forever).
    pub idle_timeout_seconds: Option<u64>,
    /// Seconds between HTTP/2 keepalive pings (default 60; 0: no pings).
    pub keepalive_interval_seconds: Option<u64>,
    /// Seconds a keepalive ping may go unanswered before the connection is closed
    /// (default 20; at least 1).
    pub keepalive_timeout_seconds: Option<u64>,
}

impl LimitsConfig {
    /// The limits in force, defaults filled in.
    fn limits(&self) -> Result<Limits, ConfigError> {
        const MIN_MESSAGE: u64 = 1024;
        const MAX_MESSAGE: u64 = 1024 * 1024 * 1024;
        let d = Limits::default();
        let bytes = |name: &str, value: Option<u64>, default: usize| match value {
            None => Ok(default),
            Some(b) if (MIN_MESSAGE..=MAX_MESSAGE).contains(&b) => usize::try_from(b)
                .map_err(|_| ConfigError::Invalid(format!("[limits] {name} is too large"))),
            Some(_) => Err(ConfigError::Invalid(format!(
                "[limits] {name} must be between {MIN_MESSAGE} bytes and {MAX_MESSAGE} bytes (1 GiB)"
            ))),
        };
        let at_least_one = |name: &str, value: Option<u32>, default: u32| match value {
            None => Ok(default),
            Some(0) => Err(ConfigError::Invalid(format!(
                "[limits] {name} must be at least 1"
            ))),
            Some(n) => Ok(n),
        };
        let requests_per_second = match self.requests_per_second {
            None => d.requests_per_second,
            Some(r) if r.is_finite() && (0.001..=1e9).contains(&r) => r,
            Some(_) => {
                return Err(ConfigError::Invalid(
                    "[limits] requests_per_second must be a number between 0.001 and \
                     1000000000"
                        .into(),
                ));
            }
        };
        const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;
        let unary_timeout = match self.unary_timeout_seconds {
            None => d.unary_timeout,
            Some(0) => None,
            Some(s) if s <= MAX_TIMEOUT_SECONDS => Some(std::time::Duration::from_secs(s)),
            Some(_) => {
                return Err(ConfigError::Invalid(format!(
                    "[limits] unary_timeout_seconds must be at most {MAX_TIMEOUT_SECONDS} (a \
                     week), or 0 for no default deadline"
                )));
            }
        };
        const MAX_IMPORT_ROWS: u64 = 10_000_000;
        let import_rows_per_call = match self.import_rows_per_call {
            None => d.import_rows_per_call,
            Some(n) if (1..=MAX_IMPORT_ROWS).contains(&n) => n,
            Some(_) => {
                return Err(ConfigError::Invalid(format!(
                    "[limits] import_rows_per_call must be between 1 and {MAX_IMPORT_ROWS}"
                )));
            }
        };
        let seconds = |name: &str, value: Option<u64>, min: u64, max: u64| match value {
            Some(s) if !(min..=max).contains(&s) => Err(ConfigError::Invalid(format!(
                "[limits] {name} must be between {min} and {max}{}",
                if min == 0 { " (0: none)" } else { "" }
            ))),
            other => Ok(other.map(std::time::Duration::from_secs)),
        };
        // 0 switches these off; `None` from `seconds` means "not set".
        let optional = |name: &str, value: Option<u64>, default: Option<std::time::Duration>| {
            Ok::<_, ConfigError>(match seconds(name, value, 0, MAX_TIMEOUT_SECONDS)? {
                None => default,
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
            })
        };
        let max_connections =
            at_least_one("max_connections", self.max_connections, d.max_connections)?;
        let connections_per_peer = at_least_one(
            "connections_per_peer",
            self.connections_per_peer,
            d.connections_per_peer.min(max_connections),
        )?;
        if connections_per_peer > max_connections {
            return Err(ConfigError::Invalid(
                "[limits] connections_per_peer must be at most max_connections".into(),
            ));
        }
        Ok(Limits {
            max_connections,
            connections_per_peer,
            handshake_timeout: seconds(
                "handshake_timeout_seconds",
                self.handshake_timeout_seconds,
                1,
                300,
            )?
            .unwrap_or(d.handshake_timeout),
            idle_timeout: optional(
                "idle_timeout_seconds",
                self.idle_timeout_seconds,
                d.idle_timeout,
            )?,
            keepalive_interval: optional(
                "keepalive_interval_seconds",
                self.keepalive_interval_seconds,
                d.keepalive_interval,
            )?,
            keepalive_timeout: seconds(
                "keepalive_timeout_seconds",
                self.keepalive_timeout_seconds,
                1,
                3600,
            )?
            .unwrap_or(d.keepalive_timeout),
            max_request_bytes: bytes(
                "max_request_bytes",
                self.max_request_bytes,
                d.max_request_bytes,
            )?,
            max_response_bytes: bytes(
                "max_response_bytes",
                self.max_response_bytes,
                d.max_response_bytes,
            )?,
            requests_per_second,
            request_burst: at_least_one("request_burst", self.request_burst, d.request_burst)?,
            calls_in_flight_per_client: at_least_one(
                "calls_in_flight_per_client",
                self.calls_in_flight_per_client,
                d.calls_in_flight_per_client,
            )?,
            calls_in_flight: at_least_one(
                "calls_in_flight",
                self.calls_in_flight,
                d.calls_in_flight,
            )?,
            streams_per_connection: at_least_one(
                "streams_per_connection",
                self.streams_per_connection,
                d.streams_per_connection,
            )?,
            unary_timeout,
            import_rows_per_call,
        })
    }
}

/// The `[keys]` section: when key epochs rotate and how long a retired epoch is kept. An
/// erased person's stale data becomes undecryptable at most `rotate_every_hours +
/// backup_window_hours` after the erasure (SECURITY.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Rotate when the active epoch is this many hours old (default 168, one week; 0:
    /// never on schedule, only with `Admin.RotateKeys`).
    pub rotate_every_hours: Option<u64>,
    /// Hours a retired epoch is kept before it is destroyed (default 168): a backup can be
    /// restored for at least this long after it was taken.
    pub backup_window_hours: Option<u64>,
}

impl KeysConfig {
    /// The library's options, defaults filled in.
    fn options(&self) -> Result<vault_core::KeyOptions, ConfigError> {
        const MAX_HOURS: u64 = 100 * 365 * 24;
        let defaults = vault_core::KeyOptions::default();
        let hours = |name: &str, h: u64| {
            if h > MAX_HOURS {
                return Err(ConfigError::Invalid(format!(
                    "[keys] {name} must be at most {MAX_HOURS} hours (100 years)"
                )));
            }
            Ok(std::time::Duration::from_secs(h * 3600))
        };
        Ok(vault_core::KeyOptions {
            rotate_every: match self.rotate_every_hours {
                None => defaults.rotate_every,
                Some(0) => None,
                Some(h) => Some(hours("rotate_every_hours", h)?),
            },
            backup_window: match self.backup_window_hours {
                None => defaults.backup_window,
                Some(h) => hours("backup_window_hours", h)?,
            },
        })
    }
}

/// The `[tls]` section: PEM files for the server's certificate chain and key, and
/// optionally the CA that signs client certificates (mutual TLS).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Server private key (PEM).
    pub key_file: PathBuf,
    /// CA certificate(s) (PEM) that client certificates must chain to. Setting it enables
    /// mutual TLS: a registered client certificate then identifies a client without a token.
    pub client_ca_file: Option<PathBuf>,
    /// With mutual TLS, refuse connections that present no client certificate (default
    /// false: such clients authenticate with a bearer token).
    pub require_client_cert: Option<bool>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Root key file, if not the default.
    pub root_key_file: Option<PathBuf>,
    /// Page cache of the embedded store, in bytes.
    pub cache_capacity: u64,
    /// The PostgreSQL store, when selected; `None` for the embedded store.
    pub database: Option<DatabaseConfig>,
    /// See [`FileConfig::allow_insecure_plaintext`].
    pub allow_insecure_plaintext: bool,
    /// See [`FileConfig::tls`].
    pub tls: Option<TlsConfig>,
    /// See [`FileConfig::shutdown_grace_seconds`].
    pub shutdown_grace: std::time::Duration,
    /// See [`FileConfig::purposes`].
    pub purposes: Option<Vec<vault_core::Purpose>>,
    /// See [`PurposesPolicy::replace_defaults`].
    pub replace_default_purposes: bool,
    /// Access-log checkpoints and retention.
    pub audit: vault_core::journal::AuditOptions,
    /// See [`FileConfig::audit_origin`]; `None`: the default, known once the key is.
    pub audit_origin: Option<String>,
    /// See [`FileConfig::audit_witnesses`].
    pub audit_witnesses: Vec<WitnessConfig>,
    /// See [`FileConfig::controller`].
    pub controller: Option<vault_core::report::Controller>,
    /// See [`FileConfig::retention_sweep_hours`]; `None` when off.
    pub retention_sweep_every: Option<std::time::Duration>,
    /// See [`FileConfig::min_retention_days`].
    pub min_retention_days: u32,
    /// See [`FileConfig::keys`].
    pub keys: vault_core::KeyOptions,
    /// See [`FileConfig::limits`].
    pub limits: Limits,
    /// Where the Prometheus metrics are served (`[metrics]`, `--metrics-listen`); `None`:
    /// off.
    pub metrics_listen: Option<SocketAddr>,
}

/// Where the PostgreSQL store is. `Debug` never shows the URL's password.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection URL.
    pub url: DatabaseUrl,
    /// Schema holding the vault's tables.
    pub schema: String,
    /// Most connections to open.
    pub pool_size: usize,
    /// Plaintext to a host that is not this machine is allowed (`database_allow_plaintext`).
    pub allow_plaintext: bool,
}

/// Configuration errors, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the TOML parser said.
        message: String,
    },
    /// A setting has a bad value.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Resolves flags, environment and the config file.
    pub fn resolve(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let database = resolve_database(&args, &file)?;
        let min_retention_days = resolve_retention_floor(&file)?;
        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "listen address {listen_text:?} is not an IP:port such as 127.0.0.1:50051"
            ))
        })?;
        let allow_insecure_plaintext = file.allow_insecure_plaintext.unwrap_or(false);
        if !listen.ip().is_loopback() && !allow_insecure_plaintext && file.tls.is_none() {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve plaintext gRPC on non-loopback address {listen}: tokens and \
                 personal data would cross the network in clear. Listen on 127.0.0.1 behind a \
                 TLS-terminating proxy, or set allow_insecure_plaintext = true in the config file"
            )));
        }
        let cache_mib = file.cache_capacity_mib.unwrap_or(256);
        if cache_mib == 0 {
            return Err(ConfigError::Invalid(
                "cache_capacity_mib must be at least 1".into(),
            ));
        }
        let defaults = vault_core::journal::AuditOptions::default();
        let checkpoint_every = file
            .audit_checkpoint_entries
            .unwrap_or(defaults.checkpoint_every);
        if checkpoint_every == 0 || file.audit_checkpoint_seconds == Some(0) {
            return Err(ConfigError::Invalid(
                "audit_checkpoint_entries and audit_checkpoint_seconds must be at least 1".into(),
            ));
        }
        if let Some(days) = file.audit_retention_days
            && !AUDIT_RETENTION_DAYS.contains(&days)
        {
            return Err(ConfigError::Invalid(format!(
                "audit_retention_days = {days} is outside {}..={} days: the CNIL asks that \
                 access logs be kept six months to a year (délibération 2021-122), and the \
                 vault keeps them at most three years (metadata about people is not kept \
                 without bound)",
                AUDIT_RETENTION_DAYS.start(),
                AUDIT_RETENTION_DAYS.end()
            )));
        }
        let audit = vault_core::journal::AuditOptions {
            checkpoint_every,
            checkpoint_interval: file
                .audit_checkpoint_seconds
                .map(std::time::Duration::from_secs)
                .unwrap_or(defaults.checkpoint_interval),
            retention: file
                .audit_retention_days
                .map(|d| std::time::Duration::from_secs(u64::from(d) * 24 * 3600))
                .unwrap_or(defaults.retention),
        };
        if let Some(origin) = &file.audit_origin {
            vault_core::audit::witness::check_origin(origin)
                .map_err(|e| ConfigError::Invalid(format!("audit_origin: {e}")))?;
        }
        let audit_witnesses = file
            .audit_witnesses
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, w)| w.resolve(i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = file.keys.unwrap_or_default().options()?;
        let limits = file.limits.unwrap_or_default().limits()?;
        let metrics_listen = file
            .metrics
            .unwrap_or_default()
            .listen(args.metrics_listen)?;
        Ok(Self {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            root_key_file: args.root_key.or(file.root_key_file),
            cache_capacity: cache_mib.saturating_mul(1024 * 1024),
            database,
            allow_insecure_plaintext,
            tls: file.tls,
            shutdown_grace: std::time::Duration::from_secs(
                file.shutdown_grace_seconds.unwrap_or(10),
            ),
            purposes: file.purposes,
            replace_default_purposes: file
                .purposes_policy
                .and_then(|p| p.replace_defaults)
                .unwrap_or(false),
            min_retention_days,
            retention_sweep_every: match file.retention_sweep_hours.unwrap_or(24) {
                0 => None,
                h => Some(std::time::Duration::from_secs(h.saturating_mul(3600))),
            },
            audit,
            audit_origin: file.audit_origin,
            audit_witnesses,
            controller: file.controller,
            keys,
            limits,
            metrics_listen,
        })
    }

    /// What [`vault_core::Vault::open`] needs: data dir, root key file and store.
    pub fn vault_options(&self) -> VaultOptions {
        let storage = match &self.database {
            None => StorageChoice::Embedded(SledOptions {
                cache_capacity: self.cache_capacity,
            }),
            Some(db) => StorageChoice::Postgres {
                url: db.url.clone(),
                options: PostgresOptions {
                    pool_size: db.pool_size,
                    schema: db.schema.clone(),
                    allow_plaintext: db.allow_plaintext,
                    ..PostgresOptions::default()
                },
            },
        };
        VaultOptions {
            data_dir: self.data_dir.clone(),
            root_key_file: self.root_key_file.clone(),
            storage,
            audit: self.audit.clone(),
            keys: self.keys.clone(),
            min_retention_days: self.min_retention_days,
        }
    }

    /// Where the bootstrap admin token is written.
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join(ADMIN_TOKEN_FILE)
    }
}

/// The retention floor, and the purposes of the file checked against it: the floor may
/// only be raised from [`vault_core::purpose::MIN_RETENTION_DAYS`] (up to
/// [`vault_core::purpose::MAX_RETENTION_FLOOR_DAYS`]), and a purpose below it is refused
/// here, naming it, before anything starts (the vault checks again when it installs them).
fn resolve_retention_floor(file: &FileConfig) -> Result<u32, ConfigError> {
    use vault_core::purpose::{MAX_RETENTION_FLOOR_DAYS, MIN_RETENTION_DAYS};
    let floor = file.min_retention_days.unwrap_or(MIN_RETENTION_DAYS);
    if !(MIN_RETENTION_DAYS..=MAX_RETENTION_FLOOR_DAYS).contains(&floor) {
        return Err(ConfigError::Invalid(format!(
            "min_retention_days = {floor}: must be between {MIN_RETENTION_DAYS} and \
             {MAX_RETENTION_FLOOR_DAYS} (the floor can be raised, never lowered below \
             {MIN_RETENTION_DAYS} days)"
        )));
    }
    for p in file.purposes.iter().flatten() {
        vault_core::purpose::check_retention(p, floor)
            .map_err(|e| ConfigError::Invalid(format!("[[purposes]] {}: {e}", p.id)))?;
    }
    Ok(floor)
}

/// The store settings: `storage`, a database URL from the flag, environment or file (in
/// that order), schema and pool size. Contradictions are refused rather than guessed.
fn resolve_database(args: &Args, file: &FileConfig) -> Result<Option<DatabaseConfig>, ConfigError> {
    let url = args
        .database_url
        .as_deref()
        .or(file.database_url.as_deref())
        .map(str::trim);
    if url == Some("") {
        return Err(ConfigError::Invalid(
            "the database URL is empty: unset VAULT_DATABASE_URL / --database-url / \
             database_url for the embedded store, or give a postgres:// URL"
                .into(),
        ));
    }
    let postgres = match (file.storage.as_deref(), url) {
        (None, url) => url.is_some(),
        (Some("postgres"), Some(_)) => true,
        (Some("postgres"), None) => {
            return Err(ConfigError::Invalid(
                "storage = \"postgres\" needs a database URL: set database_url in the config \
                 file, VAULT_DATABASE_URL or --database-url"
                    .into(),
            ));
        }
        (Some("sled"), None) => false,
        (Some("sled"), Some(_)) => {
            return Err(ConfigError::Invalid(
                "storage = \"sled\" (the embedded store) but a database URL is set too \
                 (--database-url, VAULT_DATABASE_URL or database_url): remove one of them"
                    .into(),
            ));
        }
        (Some(other), _) => {
            return Err(ConfigError::Invalid(format!(
                "storage = {other:?} is not a storage engine: use \"sled\" (embedded, the \
                 default) or \"postgres\""
            )));
        }
    };
    let schema = args
        .database_schema
        .clone()
        .or_else(|| file.database_schema.clone());
    if !postgres {
        if schema.is_some()
            || file.database_pool_size.is_some()
            || file.database_allow_plaintext.is_some()
        {
            return Err(ConfigError::Invalid(
                "database_schema / database_pool_size / database_allow_plaintext (or \
                 VAULT_DATABASE_SCHEMA) apply to the PostgreSQL store only, and no database \
                 URL is set"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let pool_size = file.database_pool_size.unwrap_or(16);
    if pool_size == 0 {
        return Err(ConfigError::Invalid(
            "database_pool_size must be at least 1".into(),
        ));
    }
    Ok(Some(DatabaseConfig {
        url: DatabaseUrl::new(url.unwrap_or_default()),
        schema: schema.unwrap_or_else(|| "public".to_owned()),
        pool_size,
        allow_plaintext: file.database_allow_plaintext.unwrap_or(false),
    }))
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: parse_error_message(&text, &e),
    })
}

/// Where the file is wrong and why, without the file's text: the parser's own rendering
/// quotes the offending line, which may hold a secret (a database URL with its password),
/// and this message goes to the log.
fn parse_error_message(text: &str, e: &toml::de::Error) -> String {
    let reason = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {reason}")
        }
        None => reason.to_owned(),
    }
}

#[cfg(test)]
mod readme_toml;

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn args(list: &[&str]) -> Args {
        Args::parse_from(std::iter::once("vault-server").chain(list.iter().copied()))
    }

    #[test]
    fn zero_configuration_defaults() -> Result<(), ConfigError> {
        let c = Config::resolve(args(&[]))?;
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.admin_token_path(),
            PathBuf::from("./vault-data/admin.token")
        );
        Ok(())
    }

    #[test]
    fn flags_override_file() -> Result<(), ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let file = dir.path().join("vault.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\n",
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let path = file.to_string_lossy().to_string();
        let c = Config::resolve(args(&["--config", &path, "--listen", "127.0.0.1:7000"]))?;
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        Ok(())
    }

    #[test]
    fn unknown_keys_and_public_plaintext_refused() -> Result<(), ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let file = dir.path().join("vault.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:6000\"\n")
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let path = file.to_string_lossy().to_string();
        assert!(matches!(
            Config::resolve(args(&["--config", &path])),
            Err(ConfigError::Parse { .. })
        ));
        let err = Config::resolve(args(&["--listen", "0.0.0.0:50051"])).err();
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("refusing to serve plaintext")
        );
        Ok(())
    }

    #[test]
    fn metrics_listener_is_off_by_default_and_loopback_unless_allowed() -> Result<(), ConfigError> {
        assert_eq!(Config::resolve(args(&[]))?.metrics_listen, None);
        let c = Config::resolve(args(&["--metrics-listen", "127.0.0.1:9464"]))?;
        assert_eq!(
            c.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
        let refused = Config::resolve(args(&["--metrics-listen", "0.0.0.0:9464"]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("refusing to serve metrics"), "{refused}");
        let bad = Config::resolve(args(&["--metrics-listen", "localhost"]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(bad.contains("is not an IP:port"), "{bad}");

        let dir = tempfile::tempdir().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let file = dir.path().join("vault.toml");
        std::fs::write(
            &file,
            "[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_non_loopback = true\n",
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let path = file.to_string_lossy().to_string();
        let c = Config::resolve(args(&["--config", &path]))?;
        assert_eq!(c.metrics_listen.map(|a| a.port()), Some(9464));
        // The flag wins over the file's address, and the file's permission still applies.
        let c = Config::resolve(args(&["--config", &path, "--metrics-listen", "10.0.0.1:1"]))?;
        assert_eq!(
            c.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("10.0.0.1:1")
        );
        Ok(())
    }

    #[test]
    fn parse_errors_name_the_place_not_the_text() {
        let secret = "postgres://vault:s3cret-pw@db.example/vault";
        for toml in [
            format!("listen = \"127.0.0.1:0\"\ndatabse_url = \"{secret}\"\n"),
            format!("listen = \"127.0.0.1:0\"\ndatabase_url = \"{secret}\n"),
        ] {
            let Err(ConfigError::Parse { message, .. }) = resolve_with_file(&toml, &[]) else {
                panic!("{toml} must not parse");
            };
            assert!(message.starts_with("line 2, column "), "{message}");
            assert!(
                !message.contains("s3cret"),
                "the config's text is in: {message}"
            );
        }
    }

    fn resolve_with_file(toml: &str, flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let file = dir.path().join("vault.toml");
        std::fs::write(&file, toml).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let path = file.to_string_lossy().to_string();
        let mut list = vec!["--config", path.as_str()];
        list.extend_from_slice(flags);
        Config::resolve(args(&list))
    }

    #[test]
    fn key_rotation_settings() -> Result<(), ConfigError> {
        let week = std::time::Duration::from_secs(7 * 24 * 3600);
        let c = Config::resolve(args(&[]))?;
        assert_eq!(c.keys, vault_core::KeyOptions::default());
        assert_eq!(c.vault_options().keys.backup_window, week);
        let c = resolve_with_file(
            "[keys]\nrotate_every_hours = 24\nbackup_window_hours = 0\n",
            &[],
        )?;
        assert_eq!(
            c.keys,
            vault_core::KeyOptions {
                rotate_every: Some(std::time::Duration::from_secs(24 * 3600)),
                backup_window: std::time::Duration::ZERO,
            }
        );
        let c = resolve_with_file("[keys]\nrotate_every_hours = 0\n", &[])?;
        assert_eq!((c.keys.rotate_every, c.keys.backup_window), (None, week));
        assert!(matches!(
            resolve_with_file("[keys]\nrotate_every = 24\n", &[]),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            resolve_with_file("[keys]\nbackup_window_hours = 99999999999\n", &[]),
            Err(ConfigError::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn limits_settings() -> Result<(), ConfigError> {
        assert_eq!(Config::resolve(args(&[]))?.limits, Limits::default());
        let c = resolve_with_file(
            "[limits]\nmax_request_bytes = 65536\nrequests_per_second = 0.5\n\
             request_burst = 3\ncalls_in_flight_per_client = 2\ncalls_in_flight = 10\n\
             streams_per_connection = 4\nunary_timeout_seconds = 0\n\
             import_rows_per_call = 5\n",
            &[],
        )?;
        assert_eq!(
            c.limits,
            Limits {
                max_request_bytes: 65536,
                requests_per_second: 0.5,
                request_burst: 3,
                calls_in_flight_per_client: 2,
                calls_in_flight: 10,
                streams_per_connection: 4,
                unary_timeout: None,
                import_rows_per_call: 5,
                ..Limits::default()
            }
        );
        let c = resolve_with_file(
            "[limits]\nmax_connections = 10\nconnections_per_peer = 3\n\
             handshake_timeout_seconds = 2\nidle_timeout_seconds = 0\n\
             keepalive_interval_seconds = 5\nkeepalive_timeout_seconds = 1\n",
            &[],
        )?;
        assert_eq!(
            c.limits,
            Limits {
                max_connections: 10,
                connections_per_peer: 3,
                handshake_timeout: std::time::Duration::from_secs(2),
                idle_timeout: None,
                keepalive_interval: Some(std::time::Duration::from_secs(5)),
                keepalive_timeout: std::time::Duration::from_secs(1),
                ..Limits::default()
            }
        );
        // A small daemon cap lowers the default per-peer cap with it.
        let c = resolve_with_file("[limits]\nmax_connections = 8\n", &[])?;
        assert_eq!(c.limits.connections_per_peer, 8);
        // Integers are accepted for the rate.
        let c = resolve_with_file("[limits]\nrequests_per_second = 100\n", &[])?;
        assert_eq!(c.limits.requests_per_second, 100.0);
        let refused = |toml: &str| -> String {
            resolve_with_file(toml, &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused("[limits]\nmax_request_byte = 1\n").contains("unknown field"));
        assert!(
            refused("[limits]\nmax_connections = 4\nconnections_per_peer = 5\n")
                .contains("at most max_connections")
        );
        assert!(refused("[limits]\nmax_connections = 0\n").contains("at least 1"));
        assert!(refused("[limits]\nhandshake_timeout_seconds = 0\n").contains("between 1 and 300"));
        assert!(refused("[limits]\nkeepalive_timeout_seconds = 0\n").contains("between 1"));
        assert!(refused("[limits]\nmax_request_bytes = 10\n").contains("between 1024"));
        assert!(refused("[limits]\nmax_response_bytes = 99999999999\n").contains("1 GiB"));
        assert!(refused("[limits]\nrequests_per_second = 0\n").contains("0.001"));
        assert!(refused("[limits]\nrequests_per_second = nan\n").contains("0.001"));
        assert!(refused("[limits]\nrequests_per_second = -1\n").contains("0.001"));
        assert!(refused("[limits]\nrequest_burst = 0\n").contains("at least 1"));
        assert!(refused("[limits]\ncalls_in_flight = 0\n").contains("at least 1"));
        assert!(refused("[limits]\nunary_timeout_seconds = 99999999\n").contains("a week"));
        assert!(refused("[limits]\nimport_rows_per_call = 0\n").contains("between 1"));
        Ok(())
    }

    #[test]
    fn witness_settings() -> Result<(), ConfigError> {
        let c = Config::resolve(args(&[]))?;
        assert!(c.audit_origin.is_none() && c.audit_witnesses.is_empty());
        let vkey = vault_core::audit::witness::Cosigner::new("w.example", [5; 32])
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .vkey();
        let c = resolve_with_file(
            &format!(
                "audit_origin = \"vault.example.fr/audit\"\n[[audit_witnesses]]\nurl = \
                 \"http://127.0.0.1:7000/w/\"\nvkey = \"{vkey}\"\n"
            ),
            &[],
        )?;
        assert_eq!(c.audit_origin.as_deref(), Some("vault.example.fr/audit"));
        assert_eq!(
            c.audit_witnesses[0].url.to_string(),
            "http://127.0.0.1:7000/w/add-checkpoint"
        );
        assert_eq!(c.audit_witnesses[0].cosigner.vkey(), vkey);
        let refused = |toml: &str| -> String {
            resolve_with_file(toml, &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused("audit_origin = \"a b\"\n").contains("audit_origin"));
        assert!(
            refused("[[audit_witnesses]]\nurl = \"http://h\"\nvkey = \"nope\"\n").contains("#1")
        );
        Ok(())
    }

    #[test]
    fn audit_retention_is_bounded_to_six_months_through_three_years() -> Result<(), ConfigError> {
        for days in [0, 1, 182, 1096] {
            let message = resolve_with_file(&format!("audit_retention_days = {days}\n"), &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.contains("six months to a year"),
                "{days}: {message}"
            );
        }
        for days in [183, 365, 1095] {
            resolve_with_file(&format!("audit_retention_days = {days}\n"), &[])?;
        }
        Ok(())
    }

    #[test]
    fn storage_selection() -> Result<(), ConfigError> {
        // Default: embedded.
        assert!(Config::resolve(args(&[]))?.database.is_none());
        assert!(
            resolve_with_file("storage = \"sled\"\n", &[])?
                .database
                .is_none()
        );
        // A URL alone selects PostgreSQL; the flag beats the file.
        let url = "postgres://vault:Pw-not-in-debug@127.0.0.1/vault";
        let c = Config::resolve(args(&["--database-url", url]))?;
        let db = c
            .database
            .clone()
            .ok_or(ConfigError::Invalid("no db".into()))?;
        assert_eq!(db.url.expose(), url);
        assert_eq!(db.schema, "public");
        assert_eq!(db.pool_size, 16);
        assert!(matches!(
            c.vault_options().storage,
            StorageChoice::Postgres { .. }
        ));
        assert!(!format!("{c:?}").contains("Pw-not-in-debug"), "{c:?}");
        let c = resolve_with_file(
            "storage = \"postgres\"\ndatabase_url = \"postgres://file/db\"\n\
             database_schema = \"vault_a\"\ndatabase_pool_size = 4\n",
            &["--database-url", url],
        )?;
        let db = c.database.ok_or(ConfigError::Invalid("no db".into()))?;
        assert_eq!(db.url.expose(), url);
        assert_eq!((db.schema.as_str(), db.pool_size), ("vault_a", 4));
        assert!(
            !db.allow_plaintext,
            "plaintext to a remote host is off by default"
        );
        let c = resolve_with_file(
            "database_url = \"postgres://file/db\"\ndatabase_allow_plaintext = true\n",
            &[],
        )?;
        let StorageChoice::Postgres { options, .. } = c.vault_options().storage else {
            return Err(ConfigError::Invalid("not postgres".into()));
        };
        assert!(options.allow_plaintext);
        let c = resolve_with_file(
            "database_url = \"postgres://file/db\"\n",
            &["--database-schema", "flag_schema"],
        )?;
        let db = c.database.ok_or(ConfigError::Invalid("no db".into()))?;
        assert_eq!(
            (db.url.expose(), db.schema.as_str()),
            ("postgres://file/db", "flag_schema")
        );
        // Contradictions and gaps are refused, naming what to change.
        let refused = |toml: &str, flags: &[&str]| -> String {
            resolve_with_file(toml, flags)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused("storage = \"postgres\"\n", &[]).contains("needs a database URL"));
        assert!(refused("storage = \"sled\"\n", &["--database-url", url]).contains("remove one"));
        assert!(refused("storage = \"mysql\"\n", &[]).contains("not a storage engine"));
        assert!(refused("", &["--database-url", " "]).contains("empty"));
        assert!(refused("database_schema = \"x\"\n", &[]).contains("PostgreSQL store only"));
        assert!(
            refused("database_allow_plaintext = true\n", &[]).contains("PostgreSQL store only")
        );
        assert!(
            refused(
                "database_url = \"postgres://h/d\"\ndatabase_pool_size = 0\n",
                &[]
            )
            .contains("at least 1")
        );
        Ok(())
    }
}
