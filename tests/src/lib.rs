//! The end-to-end test harness, this package's library: starts the real daemon on
//! 127.0.0.1 port 0 with a temporary data directory, and gives the tests (the one test
//! binary `tests/e2e/`, a module per area) the generated gRPC client with credentials
//! applied by the client library (`vault_server::client`), `vaultctl` ([`ctl`]), the
//! storage engines' raw rows, and the log check ([`leaks`]).
//!
//! # One suite, two storage engines
//!
//! Every test here runs against the embedded store by default. With
//! `VAULT_TEST_BACKEND=postgres` and `VAULT_TEST_DATABASE_URL` set, the same tests run
//! against PostgreSQL instead: [`Daemon::start`] gives each data directory its own, fresh
//! PostgreSQL *schema* (`vault_e2e_<pid>_<random>`, passed to the daemon as
//! `VAULT_DATABASE_SCHEMA` with the URL as `VAULT_DATABASE_URL`), created by the daemon on
//! first start. A restart on the same data directory finds the same schema (so restart,
//! `kill -9` and shutdown tests keep their data), and tests running in parallel never see
//! each other's rows. Schemas rather than databases: the test role owns its database (so it
//! may create schemas) but needs no `CREATEDB`, and the daemon's `database_schema` setting
//! is useful in production too (several vaults in one database).
//!
//! Cleanup: a test process cannot run code at exit, so each process, on its first
//! PostgreSQL use, drops the `vault_e2e_*` schemas of test processes that are no longer
//! running (the pid is in the name). The last run's schemas stay until the next run.
//!
//! Tests that need PostgreSQL whatever the backend (replicas, migration) call
//! [`database_url`], which prints a loud `SKIPPED` line when `VAULT_TEST_DATABASE_URL` is
//! unset, and bind data directories to a schema with [`use_store`].
//!
//! # Logs
//!
//! Every daemon's stderr is captured (at `debug` for the vault's own crates, so even the
//! verbose lines are covered) and checked when the daemon stops, by `terminate`, `kill9`
//! or drop: a secret the suite handled or a piece of personal data in it fails the test
//! (see [`leaks`]). The secrets and names to look for are collected for the whole test
//! process, so every daemon of the suite is checked for those of every test.
//!
//! # The binaries under test
//!
//! The daemon is `vault-server`'s own `main` (`vault-server/src/bin/vault-server.rs`) built
//! as this package's `vault-server-under-test` binary, and likewise `vaultctl-under-test`
//! and `vault-load-under-test`: cargo builds a package's binaries whenever it builds its
//! integration tests, so no stale binary is ever tested. Cargo tells only the test targets
//! where it put them (`CARGO_BIN_EXE_*` at compile time), not this library: [`VAULT_SERVER`],
//! [`VAULTCTL`] and [`VAULT_LOAD`] find them beside the running test executable, in the
//! `target/<profile>/` directory above its `deps/`.

// Test scaffolding: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, mpsc};
use std::time::Duration;

use tonic::Request;
use tonic::transport::Channel;
use vault_proto::v1 as pb;
use vault_proto::v1::admin_client::AdminClient;
use vault_proto::v1::audit_client::AuditClient;
use vault_proto::v1::consent_client::ConsentClient;
use vault_proto::v1::rights_client::RightsClient;
use vault_proto::v1::supporters_client::SupportersClient;
use vault_server::client::{self, CallMetadata, TlsFiles, Token};

pub mod ctl;
pub mod leaks;
pub mod pki;

pub use pb::Supporter;

/// The daemon's log filter: the vault's crates at `debug`, so the log check covers the
/// lines an operator sees when debugging too; dependencies at `info`.
pub const VAULT_LOG: &str = "info,vault=debug";

/// The daemon binary under test.
pub static VAULT_SERVER: LazyLock<PathBuf> = LazyLock::new(|| binary("vault-server-under-test"));
/// The command line under test.
pub static VAULTCTL: LazyLock<PathBuf> = LazyLock::new(|| binary("vaultctl-under-test"));
/// The load generator (`vault-server/src/bin/vault-load.rs`), built by this package.
pub static VAULT_LOAD: LazyLock<PathBuf> = LazyLock::new(|| binary("vault-load-under-test"));

/// This package's binary `name`, beside the running test executable (see the module
/// documentation, "The binaries under test").
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run the suite with `cargo test -p vault-tests`, which builds it",
        path.display()
    );
    path
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// The address it listens on (127.0.0.1 and the port the kernel chose).
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    /// The thread copying the daemon's stderr into `log`; joined once the daemon exited so
    /// `logs()` then holds everything it wrote.
    reader: Option<std::thread::JoinHandle<()>>,
    /// Whether the log check already failed (so drop does not fail the test twice).
    log_check_failed: bool,
}

impl Daemon {
    /// Starts a daemon on `data_dir` (created if needed), waiting for `listening on`.
    pub fn start(data_dir: &Path) -> Daemon {
        Self::start_with(data_dir, &[])
    }

    /// Starts a daemon with extra flags.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_via(&[], data_dir, extra)
    }

    /// Starts a daemon through a command that execs it (`prefix` then the daemon's path and
    /// arguments: `nsenter -t PID -m --` runs it in another mount namespace).
    pub fn start_via(prefix: &[&str], data_dir: &Path, extra: &[&str]) -> Daemon {
        let mut child = Self::command_via(prefix, data_dir)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("VAULT_LOG", VAULT_LOG)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vault-server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let (Some(rest), Some(tx)) = (line.split("listening on ").nth(1), Some(&tx)) {
                    let _ = tx.send(rest.trim().to_owned());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not start; log:\n{}", log.lock().unwrap());
            }
        };
        // The bootstrap admin token and the root key are secrets the log must never show.
        let root_key = extra
            .iter()
            .position(|a| *a == "--root-key")
            .and_then(|i| extra.get(i + 1))
            .map_or_else(|| data_dir.join("root.key"), PathBuf::from);
        for file in [data_dir.join("admin.token"), root_key] {
            if let Ok(secret) = std::fs::read_to_string(file) {
                leaks::watch_secret(&secret);
            }
        }
        Daemon {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
            reader: Some(reader),
            log_check_failed: false,
        }
    }

    fn drain_log(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Fails the test when the daemon's log holds a secret or personal data (see
    /// [`leaks`]). Called once the daemon stopped, so the whole log is in.
    pub fn check_logs(&mut self) {
        if self.log_check_failed {
            return;
        }
        let log = self.logs();
        if !leaks::scan(&log).is_empty() {
            self.log_check_failed = true;
            leaks::assert_clean(&format!("the daemon on {}", self.addr), &log);
        }
    }

    /// Adds `line` to the captured log as if the daemon had written it (for the test that
    /// proves the log check can fail).
    pub fn plant_log_line(&self, line: &str) {
        let mut l = self.log.lock().unwrap();
        l.push_str(line);
        l.push('\n');
    }

    /// The daemon binary with the environment for `data_dir`'s store (see the module
    /// documentation): PostgreSQL URL and schema, or none of them for the embedded store.
    pub fn command(data_dir: &Path) -> Command {
        Self::command_via(&[], data_dir)
    }

    /// [`Daemon::command`] run through `prefix` (see [`Daemon::start_via`]).
    fn command_via(prefix: &[&str], data_dir: &Path) -> Command {
        let mut cmd = match prefix.split_first() {
            None => Command::new(&*VAULT_SERVER),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&*VAULT_SERVER);
                cmd
            }
        };
        cmd.env_remove("VAULT_CONFIG");
        match store_for(data_dir) {
            TestStore::Embedded => {
                cmd.env_remove("VAULT_DATABASE_URL")
                    .env_remove("VAULT_DATABASE_SCHEMA");
            }
            TestStore::Postgres(pg) => {
                cmd.env("VAULT_DATABASE_URL", &pg.url)
                    .env("VAULT_DATABASE_SCHEMA", &pg.schema);
            }
        }
        cmd
    }

    /// The daemon's process id (for `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// The bootstrap admin token the daemon wrote.
    pub fn admin_token(&self) -> String {
        let token = std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_owned();
        leaks::watch_secret(&token);
        token
    }

    /// The address of the daemon's metrics listener (started with `--metrics-listen`), from
    /// its `serving metrics on http://ADDR/metrics` line, logged before `listening on`.
    pub fn metrics_addr(&self) -> SocketAddr {
        let log = self.logs();
        let line = log
            .lines()
            .find_map(|l| l.split("serving metrics on http://").nth(1))
            .unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"));
        line.trim()
            .trim_end_matches("/metrics")
            .parse()
            .expect("metrics address")
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A connected Supporters client (no credentials attached: use [`authed`]).
    pub async fn supporters(&self) -> SupportersClient<Channel> {
        SupportersClient::new(self.channel().await)
    }

    /// Kills the daemon with SIGKILL (no shutdown, no flush), waits for it and checks its
    /// log.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
        }
        self.drain_log();
        self.check_logs();
    }

    /// Sends SIGTERM, checks the log and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = child.wait().expect("wait");
        self.drain_log();
        self.check_logs();
        status
    }
}

impl Daemon {
    /// Starts a daemon on `data_dir` that must refuse to start: waits for it to exit (at
    /// most 60 s) and returns its log. Panics if it starts listening or keeps running.
    pub fn start_refused(data_dir: &Path) -> String {
        Self::start_refused_with(data_dir, &[])
    }

    /// [`Daemon::start_refused`] with extra flags (a `--config` the daemon must refuse).
    pub fn start_refused_with(data_dir: &Path, extra: &[&str]) -> String {
        let mut child = Self::command(data_dir)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("VAULT_LOG", VAULT_LOG)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vault-server");
        let mut stderr = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut out);
            out
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not refuse to start: {}",
                    reader.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = reader.join().unwrap();
        assert!(!status.success(), "the daemon exited successfully: {log}");
        assert!(!log.contains("listening on"), "the daemon served: {log}");
        log
    }

    /// Whether the daemon process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.drain_log();
        // A test failing already has its message; a second panic would abort the process.
        if !std::thread::panicking() {
            self.check_logs();
        }
    }
}

/// What a test call presents, as the client library sends it ([`CallMetadata`]): a bare
/// token, a token with a declared purpose ([`Creds`]), or any [`CallMetadata`] (a purpose
/// alone, for a client a certificate identifies).
pub trait Credentials {
    /// The metadata the request carries.
    fn metadata(&self) -> CallMetadata;
}

impl Credentials for str {
    fn metadata(&self) -> CallMetadata {
        // Whatever a test presents, valid or not, the daemon must not log it.
        leaks::watch_secret(self);
        CallMetadata::new(Token::new(self))
    }
}

impl Credentials for String {
    fn metadata(&self) -> CallMetadata {
        self.as_str().metadata()
    }
}

impl Credentials for CallMetadata {
    fn metadata(&self) -> CallMetadata {
        self.clone()
    }
}

/// A client's token and the purpose its calls declare.
#[derive(Clone, Debug)]
pub struct Creds {
    /// The registered client's id.
    pub client_id: String,
    /// Its bearer token (watched by the log check).
    pub token: String,
    /// The purpose its calls declare, if any.
    pub purpose: Option<String>,
}

impl Creds {
    /// The same client declaring another purpose (or none).
    pub fn with_purpose(&self, purpose: Option<&str>) -> Creds {
        Creds {
            purpose: purpose.map(str::to_owned),
            ..self.clone()
        }
    }
}

impl Credentials for Creds {
    fn metadata(&self) -> CallMetadata {
        self.token.metadata().with_purpose(self.purpose.as_deref())
    }
}

/// `message` with the given credentials (`authorization: Bearer <token>`, and
/// `x-vault-purpose` when they declare one), built by the client library.
pub fn authed<T, C: Credentials + ?Sized>(message: T, creds: &C) -> Request<T> {
    creds
        .metadata()
        .request(message)
        .expect("credentials the client library can send")
}

/// Makes `creds` the approving admin of `data_dir`'s store ([`Daemon::approver`]): for a
/// store the suite did not create (a committed fixture), whose second admin already exists.
pub fn adopt_approver(data_dir: &Path, creds: Creds) {
    approvers()
        .lock()
        .unwrap()
        .insert(store_key(data_dir), creds);
}

impl Daemon {
    /// A connected Admin client.
    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel().await)
    }

    /// A connected Audit client.
    pub async fn audit(&self) -> AuditClient<Channel> {
        AuditClient::new(self.channel().await)
    }

    /// Access-log entries matching `query`, oldest first, read through the Audit service.
    pub async fn audit_entries(
        &self,
        creds: &Creds,
        query: pb::QueryRequest,
    ) -> Vec<pb::AuditEntry> {
        let mut stream = self
            .audit()
            .await
            .query(authed(query, creds))
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(e) = stream.message().await.unwrap() {
            out.push(e);
        }
        out
    }

    /// A connected Rights client.
    pub async fn rights(&self) -> RightsClient<Channel> {
        RightsClient::new(self.channel().await)
    }

    /// A DPO client, declaring the data-subject-rights purpose on every call.
    pub async fn dpo(&self) -> Creds {
        self.create_client("dpo", "dpo", &[])
            .await
            .with_purpose(Some("data-subject-rights"))
    }

    /// A connected Consent client.
    pub async fn consent(&self) -> ConsentClient<Channel> {
        ConsentClient::new(self.channel().await)
    }

    /// A plaintext channel to the daemon, opened by the client library as `vaultctl` opens
    /// one.
    pub async fn channel(&self) -> Channel {
        client::connect(&self.addr.to_string(), &TlsFiles::default())
            .await
            .expect("connect")
    }

    /// A second admin client, to approve what the bootstrap admin proposes: created once per
    /// store (while the bootstrap admin is alone, so one admin may create it), and kept for
    /// the daemons that restart on it or share it.
    pub async fn approver(&self) -> Creds {
        let key = store_key(&self.data_dir);
        if let Some(c) = approvers().lock().unwrap().get(&key).cloned() {
            return c;
        }
        let r = self
            .admin()
            .await
            .create_client(authed(
                pb::CreateClientRequest {
                    name: "approver".into(),
                    role: "admin".into(),
                    ..Default::default()
                },
                &self.admin_token(),
            ))
            .await
            .expect("the approving admin (one admin may create it while alone)")
            .into_inner();
        leaks::watch_secret(&r.token);
        let creds = Creds {
            client_id: r.client.unwrap().id,
            token: r.token,
            purpose: None,
        };
        approvers().lock().unwrap().insert(key, creds.clone());
        creds
    }

    /// Proposes `change` with the bootstrap admin token and approves it with
    /// [`Daemon::approver`]'s (separation of duties: what widens access takes two admins).
    /// Returns the approved proposal and, for a client, its token.
    pub async fn propose_and_approve(
        &self,
        change: pb::propose_change_request::Change,
    ) -> (pb::Proposal, String) {
        let approver = self.approver().await;
        let mut admin = self.admin().await;
        let r = admin
            .propose_change(authed(
                pb::ProposeChangeRequest {
                    change: Some(change),
                },
                &self.admin_token(),
            ))
            .await
            .expect("ProposeChange")
            .into_inner();
        if !r.token.is_empty() {
            leaks::watch_secret(&r.token);
        }
        let proposal = r.proposal.unwrap();
        let approved = admin
            .approve_proposal(authed(
                pb::ApproveProposalRequest {
                    id: proposal.id.clone(),
                    change_sha256: proposal.change_sha256.clone(),
                },
                &approver,
            ))
            .await
            .expect("ApproveProposal")
            .into_inner();
        (approved, r.token)
    }

    /// Registers a client through the Admin service with the bootstrap admin token: at once
    /// when one admin may (an auditor, the second admin), else proposed by the bootstrap
    /// admin and approved by [`Daemon::approver`] (a dpo, a campaign tool, a third admin).
    pub async fn create_client(&self, name: &str, role: &str, purposes: &[&str]) -> Creds {
        self.create_client_with(pb::CreateClientRequest {
            name: name.into(),
            role: role.into(),
            purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
            cert_sha256: String::new(),
            expires_at: None,
        })
        .await
    }

    /// [`Daemon::create_client`] of a whole request (certificate, expiry).
    pub async fn create_client_with(&self, request: pb::CreateClientRequest) -> Creds {
        // The approver first, while the bootstrap admin may still create it alone.
        self.approver().await;
        let direct = self
            .admin()
            .await
            .create_client(authed(request.clone(), &self.admin_token()))
            .await;
        let (client, token) = match direct {
            Ok(r) => {
                let r = r.into_inner();
                (r.client.unwrap(), r.token)
            }
            Err(s) if s.code() == tonic::Code::PermissionDenied => {
                let (approved, token) = self
                    .propose_and_approve(pb::propose_change_request::Change::CreateClient(request))
                    .await;
                match approved.change {
                    Some(pb::proposal::Change::CreateClient(c)) => (c, token),
                    other => panic!("approved a client proposal, got {other:?}"),
                }
            }
            Err(s) => panic!("CreateClient: {s:?}"),
        };
        leaks::watch_secret(&token);
        Creds {
            client_id: client.id,
            token,
            purpose: None,
        }
    }

    /// `Supporters.Get` of `id` with every field the caller's purpose allows.
    pub async fn get_supporter(
        &self,
        creds: &Creds,
        id: &str,
    ) -> Result<pb::Supporter, tonic::Status> {
        self.supporters()
            .await
            .get(authed(
                pb::GetRequest {
                    id: id.to_owned(),
                    fields: None,
                },
                creds,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// A campaign tool allowed `purpose`, declaring it on every call.
    pub async fn tool(&self, purpose: &str) -> Creds {
        self.create_client(&format!("tool-{purpose}"), "campaign-tool", &[purpose])
            .await
            .with_purpose(Some(purpose))
    }
}

/// A supporter with the given contact details.
pub fn supporter(given: &str, family: &str, email: &str, phone: &str) -> Supporter {
    leaks::watch_name(given);
    leaks::watch_name(family);
    Supporter {
        given_name: given.into(),
        family_name: family.into(),
        email: email.into(),
        phone: phone.into(),
        ..Default::default()
    }
}

/// Writes `contents` to `dir/name` and returns the path, as the string a flag or a config
/// file takes.
pub fn write(dir: &Path, name: &str, contents: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.to_str().unwrap().to_owned()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` that contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

// ---- storage engines ------------------------------------------------------------------

/// Which engine the suite's daemons use (`VAULT_TEST_BACKEND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded sled store (default).
    Embedded,
    /// PostgreSQL at this URL (`VAULT_TEST_DATABASE_URL`).
    Postgres(String),
}

/// The backend of this run. Panics when `VAULT_TEST_BACKEND=postgres` comes without a URL:
/// silently testing the embedded store instead would be a lie.
pub fn backend() -> Backend {
    match std::env::var("VAULT_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sled") | Ok("embedded") => Backend::Embedded,
        Ok("postgres") => match test_database_url() {
            Some(url) => Backend::Postgres(url),
            None => panic!(
                "VAULT_TEST_BACKEND=postgres needs VAULT_TEST_DATABASE_URL (start a database \
                 with .ci/postgres-start)"
            ),
        },
        Ok(other) => panic!("VAULT_TEST_BACKEND={other:?}: use sled (default) or postgres"),
    }
}

/// Whether this run's daemons use PostgreSQL.
pub fn on_postgres() -> bool {
    matches!(backend(), Backend::Postgres(_))
}

/// The suite's database URL. It must ask for TLS with the server authenticated by name
/// (`sslmode=verify-full`, as `.ci/postgres-start` prints it): the PostgreSQL pass then
/// proves the whole suite over TLS, and a plaintext URL fails loudly rather than testing
/// less than production runs.
fn test_database_url() -> Option<String> {
    let url = std::env::var("VAULT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())?;
    assert!(
        url.contains("sslmode=verify-full") && url.contains("sslrootcert="),
        "VAULT_TEST_DATABASE_URL must ask for TLS (sslmode=verify-full&sslrootcert=...): use \
         the URL .ci/postgres-start prints"
    );
    Some(url)
}

/// The test database URL for tests that need PostgreSQL whatever the backend, or `None`
/// after printing a loud `SKIPPED` line (straight to stderr, past the harness's capture).
pub fn database_url(test: &str) -> Option<String> {
    let url = test_database_url();
    if url.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: VAULT_TEST_DATABASE_URL is not set, this PostgreSQL test did not \
             run (start a database with .ci/postgres-start)"
        );
    }
    url
}

/// The store a data directory's daemons use.
#[derive(Clone, Debug)]
pub enum TestStore {
    /// The embedded store in the data directory.
    Embedded,
    /// A schema of the test database.
    Postgres(Arc<PgSchema>),
}

fn stores() -> &'static Mutex<HashMap<PathBuf, TestStore>> {
    static STORES: OnceLock<Mutex<HashMap<PathBuf, TestStore>>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The approving admins ([`Daemon::approver`]), by store ([`store_key`]).
fn approvers() -> &'static Mutex<HashMap<String, Creds>> {
    static APPROVERS: OnceLock<Mutex<HashMap<String, Creds>>> = OnceLock::new();
    APPROVERS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// What identifies `data_dir`'s store: its PostgreSQL schema (replicas share it), or the
/// data directory itself.
fn store_key(data_dir: &Path) -> String {
    match store_for(data_dir) {
        TestStore::Embedded => data_dir.display().to_string(),
        TestStore::Postgres(pg) => pg.schema.clone(),
    }
}

/// Binds `data_dir` to `store` for every later [`Daemon::start`] on it (two data
/// directories bound to one schema are two replicas of one vault).
pub fn use_store(data_dir: &Path, store: TestStore) {
    stores()
        .lock()
        .unwrap()
        .insert(data_dir.to_path_buf(), store);
}

/// The store of `data_dir`: the one bound with [`use_store`] or by an earlier start, else
/// the backend's (a fresh schema under PostgreSQL).
pub fn store_for(data_dir: &Path) -> TestStore {
    let mut map = stores().lock().unwrap();
    map.entry(data_dir.to_path_buf())
        .or_insert_with(|| match backend() {
            Backend::Embedded => TestStore::Embedded,
            Backend::Postgres(url) => TestStore::Postgres(PgSchema::new(&url)),
        })
        .clone()
}

/// The PostgreSQL schema of `data_dir`'s daemons, if they use PostgreSQL.
pub fn pg_schema_of(data_dir: &Path) -> Option<Arc<PgSchema>> {
    match store_for(data_dir) {
        TestStore::Postgres(pg) => Some(pg),
        TestStore::Embedded => None,
    }
}

/// A schema of the test database, private to the data directories bound to it. The
/// daemon creates it (and its tables) on first start.
#[derive(Debug)]
pub struct PgSchema {
    /// The test database's URL.
    pub url: String,
    /// The schema's name (`vault_e2e_<pid>_<random>`).
    pub schema: String,
}

/// Runs `f` to completion on a runtime of its own, in a thread of its own, so the PostgreSQL
/// helpers work from sync and async tests alike.
fn block<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

/// A raw connection with the store's own TLS rules (the CI cluster's URL asks for
/// verify-full).
async fn pg_connect(url: &str) -> tokio_postgres::Client {
    vault_core::storage::postgres::connect_client(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Drops the `vault_e2e_<pid>_*` schemas of test processes that are gone, once per process.
fn sweep_stale_schemas(url: &str) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let url = url.to_owned();
        block(async move {
            let client = pg_connect(&url).await;
            let rows = client
                .query(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'vault\\_e2e\\_%'",
                    &[],
                )
                .await
                .unwrap();
            for row in rows {
                let name: String = row.get(0);
                let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
                let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ = client
                        .batch_execute(&format!(
                            "DROP SCHEMA IF EXISTS {} CASCADE",
                            quote_ident(&name)
                        ))
                        .await;
                }
            }
        });
    });
}

impl PgSchema {
    /// A fresh, unused schema name in the database at `url`.
    pub fn new(url: &str) -> Arc<PgSchema> {
        sweep_stale_schemas(url);
        Arc::new(PgSchema {
            url: url.to_owned(),
            schema: format!(
                "vault_e2e_{}_{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
        })
    }

    /// `"schema"."table"`.
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(table))
    }

    /// The names of every table in the schema (all of them the vault's: `vault_*`).
    pub fn tables(&self) -> Vec<String> {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        block(async move {
            let client = pg_connect(&url).await;
            client
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = $1 ORDER BY 1",
                    &[&schema],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        })
    }

    /// Every row of every table of the schema, every column, as raw bytes (`bytea`
    /// columns as stored, not hex-escaped as `pg_dump` prints them; other columns as
    /// text), one field per line. What an attacker holding a dump of the database has.
    pub fn dump(&self) -> PgDump {
        let tables = self.tables();
        let (url, schema) = (self.url.clone(), self.schema.clone());
        block(async move {
            let client = pg_connect(&url).await;
            let mut dump = PgDump::default();
            for table in tables {
                assert!(table.starts_with("vault_"), "unexpected table {table}");
                let columns = client
                    .query(
                        "SELECT column_name::text, data_type::text FROM information_schema.columns \
                         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                        &[&schema, &table],
                    )
                    .await
                    .unwrap();
                let select: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let (name, ty): (String, String) = (c.get(0), c.get(1));
                        if ty == "bytea" {
                            quote_ident(&name)
                        } else {
                            format!("convert_to({}::text, 'UTF8')", quote_ident(&name))
                        }
                    })
                    .collect();
                let sql = format!(
                    "SELECT {} FROM {}.{}",
                    select.join(", "),
                    quote_ident(&schema),
                    quote_ident(&table)
                );
                let rows = client.query(&sql, &[]).await.unwrap();
                dump.rows.push((table.clone(), rows.len()));
                for row in rows {
                    for i in 0..row.len() {
                        if let Some(bytes) = row.get::<_, Option<Vec<u8>>>(i) {
                            dump.bytes.extend_from_slice(&bytes);
                        }
                        dump.bytes.push(b'\n');
                    }
                }
            }
            dump
        })
    }

    /// Runs `sql` (several statements, simple query protocol) on the test database: a
    /// dump restored behind the vault's back.
    pub fn execute(&self, sql: &str) {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        block(async move { pg_connect(&url).await.batch_execute(&sql).await.unwrap() });
    }

    /// The value of `key` in the vault table `vault_<table>`.
    pub fn get(&self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        let sql = format!(
            "SELECT value FROM {} WHERE key = $1",
            self.qualified(&format!("vault_{table}"))
        );
        let (url, key) = (self.url.clone(), key.to_vec());
        block(async move {
            pg_connect(&url)
                .await
                .query_opt(&sql, &[&key])
                .await
                .unwrap()
                .map(|r| r.get(0))
        })
    }

    /// Inserts or overwrites a row with plain SQL, behind the vault's back.
    pub fn put(&self, table: &str, key: &[u8], value: &[u8]) {
        let sql = format!(
            "INSERT INTO {} (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            self.qualified(&format!("vault_{table}"))
        );
        let (url, key, value) = (self.url.clone(), key.to_vec(), value.to_vec());
        block(async move {
            pg_connect(&url)
                .await
                .execute(&sql, &[&key, &value])
                .await
                .unwrap()
        });
    }

    /// Deletes a row with plain SQL, behind the vault's back.
    pub fn delete(&self, table: &str, key: &[u8]) {
        let sql = format!(
            "DELETE FROM {} WHERE key = $1",
            self.qualified(&format!("vault_{table}"))
        );
        let (url, key) = (self.url.clone(), key.to_vec());
        block(async move { pg_connect(&url).await.execute(&sql, &[&key]).await.unwrap() });
    }

    /// Every (key, value) of a vault table, in key order.
    pub fn rows(&self, table: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let sql = format!(
            "SELECT key, value FROM {} ORDER BY key",
            self.qualified(&format!("vault_{table}"))
        );
        let url = self.url.clone();
        block(async move {
            pg_connect(&url)
                .await
                .query(&sql, &[])
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        })
    }

    /// Overwrites the value of an existing row with a plain SQL `UPDATE`, behind the
    /// vault's back (tampering tests).
    pub fn update(&self, table: &str, key: &[u8], value: &[u8]) {
        let sql = format!(
            "UPDATE {} SET value = $2 WHERE key = $1",
            self.qualified(&format!("vault_{table}"))
        );
        let (url, key, value) = (self.url.clone(), key.to_vec(), value.to_vec());
        let updated = block(async move {
            pg_connect(&url)
                .await
                .execute(&sql, &[&key, &value])
                .await
                .unwrap()
        });
        assert_eq!(updated, 1, "no row to update in vault_{table}");
    }
}

/// See [`PgSchema::dump`].
#[derive(Debug, Default)]
pub struct PgDump {
    /// Rows per table.
    pub rows: Vec<(String, usize)>,
    /// Every field's bytes.
    pub bytes: Vec<u8>,
}

impl PgDump {
    /// Whether `needle` occurs anywhere in the dump.
    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.bytes.windows(needle.len()).any(|w| w == needle)
    }

    /// Rows of the table `name` (0 when it does not exist).
    pub fn rows_of(&self, name: &str) -> usize {
        self.rows
            .iter()
            .find(|(t, _)| t == name)
            .map_or(0, |(_, n)| *n)
    }

    /// Rows of all tables.
    pub fn total_rows(&self) -> usize {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// Raw access to a stopped daemon's store, whichever the engine, for tests that alter
/// stored bytes behind the vault's back: sled's trees, or SQL on PostgreSQL.
pub enum RawStore {
    /// The embedded store's trees, opened directly.
    Embedded(vault_core::storage::SledStore),
    /// The schema of the test database, through SQL.
    Postgres(Arc<PgSchema>),
}

impl RawStore {
    /// Opens `data_dir`'s store (the daemon must be stopped for the embedded store).
    pub fn open(data_dir: &Path) -> RawStore {
        match store_for(data_dir) {
            TestStore::Embedded => RawStore::Embedded(
                vault_core::storage::SledStore::open(
                    &data_dir.join("store"),
                    &vault_core::storage::sled_store::SledOptions::default(),
                )
                .unwrap(),
            ),
            TestStore::Postgres(pg) => RawStore::Postgres(pg),
        }
    }

    /// The stored bytes of `key` in `table`.
    pub fn get(&self, table: vault_core::storage::Table, key: &[u8]) -> Vec<u8> {
        match self {
            RawStore::Embedded(s) => s.raw_tree(table).get(key).unwrap().unwrap().to_vec(),
            RawStore::Postgres(pg) => pg.get(table.name(), key).unwrap(),
        }
    }

    /// The stored bytes of `key` in `table`, if the row exists.
    pub fn try_get(&self, table: vault_core::storage::Table, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            RawStore::Embedded(s) => s.raw_tree(table).get(key).unwrap().map(|v| v.to_vec()),
            RawStore::Postgres(pg) => pg.get(table.name(), key),
        }
    }

    /// Inserts or overwrites the row `key` of `table`.
    pub fn put(&self, table: vault_core::storage::Table, key: &[u8], value: &[u8]) {
        match self {
            RawStore::Embedded(s) => {
                let tree = s.raw_tree(table);
                tree.insert(key, value).unwrap();
                tree.flush().unwrap();
            }
            RawStore::Postgres(pg) => pg.put(table.name(), key, value),
        }
    }

    /// Deletes the row `key` of `table`.
    pub fn delete(&self, table: vault_core::storage::Table, key: &[u8]) {
        match self {
            RawStore::Embedded(s) => {
                let tree = s.raw_tree(table);
                tree.remove(key).unwrap();
                tree.flush().unwrap();
            }
            RawStore::Postgres(pg) => pg.delete(table.name(), key),
        }
    }

    /// Every (key, value) of `table`, in key order.
    pub fn rows(&self, table: vault_core::storage::Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self {
            RawStore::Embedded(s) => s
                .raw_tree(table)
                .iter()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect(),
            RawStore::Postgres(pg) => pg.rows(table.name()),
        }
    }

    /// Overwrites the stored bytes of the existing row `key` in `table`.
    pub fn set(&self, table: vault_core::storage::Table, key: &[u8], value: &[u8]) {
        match self {
            RawStore::Embedded(s) => {
                let tree = s.raw_tree(table);
                assert!(tree.insert(key, value).unwrap().is_some());
                tree.flush().unwrap();
            }
            RawStore::Postgres(pg) => pg.update(table.name(), key, value),
        }
    }
}
