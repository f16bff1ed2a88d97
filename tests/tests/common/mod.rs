//! End-to-end test harness: starts the real daemon on 127.0.0.1 port 0 with a temporary
//! data directory, and gives tests the generated gRPC client.
//!
//! The daemon binary is `vault-server`'s own `main` (`vault-server/src/bin/vault-server.rs`)
//! built as this package's `vault-server-under-test` binary, so cargo rebuilds it whenever
//! any test here runs, and no stale binary is ever tested.

// Test scaffolding: a failed unwrap is a failed test with its message.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use vault_proto::v1 as pb;
use vault_proto::v1::admin_client::AdminClient;
use vault_proto::v1::consent_client::ConsentClient;
use vault_proto::v1::supporters_client::SupportersClient;

pub use pb::Supporter;

/// The daemon binary under test.
pub const VAULT_SERVER: &str = env!("CARGO_BIN_EXE_vault-server-under-test");
/// The command line under test.
pub const VAULTCTL: &str = env!("CARGO_BIN_EXE_vaultctl-under-test");

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts a daemon on `data_dir` (created if needed), waiting for `listening on`.
    pub fn start(data_dir: &Path) -> Daemon {
        Self::start_with(data_dir, &[])
    }

    /// Starts a daemon with extra flags.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Daemon {
        let mut child = Command::new(VAULT_SERVER)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("VAULT_LOG", "info")
            .env_remove("VAULT_CONFIG")
            .env_remove("VAULT_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vault-server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
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
        Daemon {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// The bootstrap admin token the daemon wrote.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_owned()
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A connected Supporters client (no credentials attached: use [`authed`]).
    pub async fn supporters(&self) -> SupportersClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        SupportersClient::new(channel)
    }

    /// Kills the daemon with SIGKILL (no shutdown, no flush) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        child.wait().expect("wait")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a test call presents: a bare token, or a token with a declared purpose.
pub trait Credentials {
    /// Adds the metadata to `req`.
    fn apply<T>(&self, req: &mut Request<T>);
}

impl Credentials for str {
    fn apply<T>(&self, req: &mut Request<T>) {
        req.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {self}")).unwrap(),
        );
    }
}

impl Credentials for String {
    fn apply<T>(&self, req: &mut Request<T>) {
        self.as_str().apply(req);
    }
}

/// A client's token and the purpose its calls declare.
#[derive(Clone, Debug)]
pub struct Creds {
    pub client_id: String,
    pub token: String,
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
    fn apply<T>(&self, req: &mut Request<T>) {
        self.token.apply(req);
        if let Some(p) = &self.purpose {
            req.metadata_mut().insert(
                "x-vault-purpose",
                MetadataValue::try_from(p.as_str()).unwrap(),
            );
        }
    }
}

/// `message` with the given credentials.
pub fn authed<T, C: Credentials + ?Sized>(message: T, creds: &C) -> Request<T> {
    let mut req = Request::new(message);
    creds.apply(&mut req);
    req
}

impl Daemon {
    /// A connected Admin client.
    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel().await)
    }

    /// A connected Consent client.
    pub async fn consent(&self) -> ConsentClient<Channel> {
        ConsentClient::new(self.channel().await)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    /// Registers a client through the Admin service (with the bootstrap admin token).
    pub async fn create_client(&self, name: &str, role: &str, purposes: &[&str]) -> Creds {
        let r = self
            .admin()
            .await
            .create_client(authed(
                pb::CreateClientRequest {
                    name: name.into(),
                    role: role.into(),
                    purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
                    cert_sha256: String::new(),
                },
                &self.admin_token(),
            ))
            .await
            .unwrap()
            .into_inner();
        Creds {
            client_id: r.client.unwrap().id,
            token: r.token,
            purpose: None,
        }
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
    Supporter {
        given_name: given.into(),
        family_name: family.into(),
        email: email.into(),
        phone: phone.into(),
        ..Default::default()
    }
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
