//! A full disk under the embedded store: the daemon says NOT_SERVING, calls fail with
//! UNAVAILABLE naming the cause and the remedy (never INTERNAL), nothing acknowledged is
//! lost, and after space is freed and the daemon restarted everything acknowledged is
//! there and the access log verifies.
//!
//! The store's directory is a small tmpfs in a private mount namespace (`unshare -m`, held
//! by a `sleep` so it outlives the daemon across the restart); the daemon runs in it
//! through `nsenter`, and space is freed by remounting it larger. That takes root (CI runs
//! as root): without it the test fails, saying so. It always uses the embedded store, also
//! in the PostgreSQL pass: a PostgreSQL server's disk is not the test's to fill, and its
//! "disk full" (SQLSTATE 53100) is classified by the same code, tested in
//! `vault_core::storage::health` and `vault_server::daemon::status`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vault_proto::v1 as pb;
use vault_tests::{Daemon, TestStore, authed, supporter, use_store};

/// A private mount namespace with a tmpfs of `size` on `dir`, alive until dropped.
struct SmallDisk {
    keeper: Child,
    dir: String,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.to_str().unwrap().to_owned();
        let spawned = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size},mode=0700 tmpfs \"$0\" && echo mounted && exec sleep 3600"
            ))
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut keeper = spawned.unwrap_or_else(|e| {
            panic!("this test needs unshare(1) (util-linux) and root to mount a tmpfs: {e}")
        });
        let mut line = String::new();
        BufReader::new(keeper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "mounted" {
            let _ = keeper.wait();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut keeper.stderr.take().unwrap(), &mut err);
            panic!(
                "cannot mount a small tmpfs in a private mount namespace (this test must run \
                 as root, as CI does; it does not skip): {}",
                err.trim()
            );
        }
        SmallDisk { keeper, dir }
    }

    /// `nsenter` into the namespace: the prefix of a command to run there.
    fn enter(&self) -> Vec<String> {
        ["nsenter", "-t", &self.keeper.id().to_string(), "-m", "--"]
            .map(str::to_owned)
            .to_vec()
    }

    fn resize(&self, size: &str) {
        let enter = self.enter();
        let status = Command::new(&enter[0])
            .args(&enter[1..])
            .args(["mount", "-o", &format!("remount,size={size}"), &self.dir])
            .status()
            .unwrap();
        assert!(status.success(), "remounting the tmpfs failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

fn start_on(disk: &SmallDisk, data_dir: &Path) -> Daemon {
    let enter = disk.enter();
    let prefix: Vec<&str> = enter.iter().map(String::as_str).collect();
    Daemon::start_via(&prefix, data_dir, &[])
}

async fn health(daemon: &Daemon, service: &str) -> i32 {
    let channel = daemon.channel().await;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

fn person(i: usize) -> pb::UpsertRequest {
    pb::UpsertRequest {
        supporter: Some(supporter(
            "Full",
            "Disk",
            &format!("full.disk.{i}@example.org"),
            "",
        )),
        consents: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_daemon_unavailable_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    use_store(&data_dir, TestStore::Embedded);
    let disk = SmallDisk::mount(&data_dir.join("store"), "4m");
    let mut daemon = start_on(&disk, &data_dir);
    let tool = daemon.tool("membership").await;
    let auditor = daemon.create_client("cnil", "auditor", &[]).await;
    for service in ["", "vault.v1.Supporters", "vault.v1.Audit"] {
        assert_eq!(
            health(&daemon, service).await,
            ServingStatus::Serving as i32
        );
    }

    // Fill the disk with upserts until the store refuses one.
    let mut supporters = daemon.supporters().await;
    let mut acknowledged = Vec::new();
    let refusal = loop {
        assert!(
            acknowledged.len() < 100_000,
            "a 4 MiB store took 100,000 supporters"
        );
        match supporters
            .upsert(authed(person(acknowledged.len()), &tool))
            .await
        {
            Ok(r) => acknowledged.push(r.into_inner().id),
            Err(status) => break status,
        }
    };
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    let remedy = "the vault's store refused a write: no space left on the data directory's \
                  file system; free space and restart the daemon";
    assert!(refusal.message().contains(remedy), "{}", refusal.message());

    // The health service follows (the flag is set by the failed write itself, so no wait
    // beyond the health task's turn).
    let start = std::time::Instant::now();
    while health(&daemon, "").await != ServingStatus::NotServing as i32 {
        assert!(start.elapsed() < Duration::from_secs(60), "still SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for service in [
        "vault.v1.Supporters",
        "vault.v1.Consent",
        "vault.v1.Rights",
        "vault.v1.Admin",
        "vault.v1.Audit",
    ] {
        assert_eq!(
            health(&daemon, service).await,
            ServingStatus::NotServing as i32,
            "{service}"
        );
    }
    // Reads and writes alike: UNAVAILABLE with the remedy, never INTERNAL.
    let read = daemon
        .get_supporter(&tool, &acknowledged[0])
        .await
        .unwrap_err();
    let write = supporters
        .upsert(authed(person(acknowledged.len() + 1), &tool))
        .await
        .unwrap_err();
    for status in [&read, &write] {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains(remedy), "{}", status.message());
    }
    // The embedded store does not recover by itself, even with space again: restart.
    disk.resize("256m");
    daemon.kill9();
    let daemon = start_on(&disk, &data_dir);
    assert_eq!(health(&daemon, "").await, ServingStatus::Serving as i32);
    for id in &acknowledged {
        let s = daemon
            .get_supporter(&tool, id)
            .await
            .unwrap_or_else(|e| panic!("acknowledged supporter {id} after the restart: {e:?}"));
        assert_eq!(s.id, *id);
    }
    let v = daemon
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{}", v.detail);
    eprintln!(
        "{} supporters acknowledged before the 4 MiB store was full; all there after the \
         restart; the access log verifies ({} entries)",
        acknowledged.len(),
        v.entries
    );
}
