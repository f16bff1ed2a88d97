//! `vaultctl` against a test daemon, and what to make of what it printed: the helpers the
//! command-line tests share (`cli`, `cli_tools`, `csv_import`, `backup`, `witness`).

use std::process::{Command, Output};

use crate::{Daemon, VAULTCTL};

/// `vaultctl args` against `daemon` (`VAULT_ADDR`, `VAULT_DATA_DIR`) with `token` in
/// `VAULT_TOKEN`, or, with `None`, the bootstrap admin token file the daemon wrote in its
/// data directory. No `VAULT_PURPOSE` comes from the test's environment.
pub fn vaultctl(daemon: &Daemon, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(&*VAULTCTL);
    cmd.args(args)
        .env("VAULT_ADDR", format!("http://{}", daemon.addr))
        .env("VAULT_DATA_DIR", &daemon.data_dir)
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_PURPOSE");
    if let Some(t) = token {
        cmd.env("VAULT_TOKEN", t);
    }
    cmd.output().unwrap()
}

/// The standard output of a command that succeeded; fails the test, with its standard
/// error, if it did not.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The JSON a command that succeeded printed (see [`ok`]).
pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts that the command failed with exit status 1 and one line on stderr containing
/// `needle`.
pub fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
}

/// A client that takes two admins (a dpo, a campaign tool, a third admin), through the
/// command line: the bootstrap admin proposes it (`admin propose-client` with `args`),
/// `approver` (a second admin's token) approves it (`admin approve`). Returns the
/// proposal's output, which holds the client's token (watched by the log check).
pub fn propose_and_approve(daemon: &Daemon, approver: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["admin", "propose-client"];
    full.extend_from_slice(args);
    let proposed = json(&vaultctl(daemon, None, &full));
    let id = proposed["proposal"]["id"].as_str().unwrap().to_owned();
    let approved = json(&vaultctl(
        daemon,
        Some(approver),
        &["admin", "approve", &id],
    ));
    assert_eq!(approved["status"], "approved", "{approved}");
    crate::leaks::watch_secret(proposed["token"].as_str().unwrap());
    proposed
}
