//! The files in `deploy/` stay true to the code: every flag a unit or the backup script
//! passes is accepted by the daemon's or `vaultctl`'s argument parser, every `VAULT_*`
//! variable they set is one the code reads (or the script uses), the sample config file
//! resolves, the data directory is the one the sandbox lets the daemon write, and the
//! container file builds the binaries that exist, runs as non-root and bakes in no secret.
//!
//! `systemd-analyze verify` and a container build are not run: neither systemd nor a
//! container engine is available where the tests run (docs/deploy.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use vault_server::daemon::config::{Args, Config};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn deploy(name: &str) -> String {
    std::fs::read_to_string(repo().join("deploy").join(name))
        .unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// A unit file's settings, key → every value in order (keys may repeat).
fn unit(name: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in deploy(name).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}: not a setting: {line:?}"));
        out.entry(key.to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    out
}

fn one<'a>(unit: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match unit.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

const SERVICES: [&str; 3] = [
    "vault-server.service",
    "vault-backup.service",
    "vault-erasures.service",
];

/// Every `VAULT_*` name the binaries read: `env = "…"` of their flags (vaultctl's are in
/// `src/cli/`), and the log filter.
fn variables_read_by_the_code() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        root.join("src/daemon/config.rs"),
        root.join("src/bin/vault-server.rs"),
    ];
    let mut cli: Vec<_> = std::fs::read_dir(root.join("src/cli"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    assert!(!cli.is_empty(), "no vaultctl sources in src/cli");
    cli.sort();
    files.extend(cli);
    let mut sources = String::new();
    for file in files {
        sources.push_str(&std::fs::read_to_string(file).unwrap());
    }
    sources
        .split('"')
        .filter(|s| {
            s.starts_with("VAULT_") && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_daemon_accepts_its_units_command_line_and_config() {
    let u = unit("vault-server.service");
    let exec: Vec<&str> = one(&u, "ExecStart").split_whitespace().collect();
    assert_eq!(exec[0], "/usr/local/bin/vault-server");
    let args = Args::try_parse_from(&exec).unwrap_or_else(|e| panic!("{exec:?}: {e}"));
    // The unit's /etc/vault/vault.toml is deploy/vault.toml.
    assert_eq!(
        args.config.as_deref(),
        Some(Path::new("/etc/vault/vault.toml"))
    );
    let config = Config::resolve(Args {
        config: Some(repo().join("deploy/vault.toml")),
        ..args
    })
    .unwrap_or_else(|e| panic!("deploy/vault.toml: {e}"));
    // The data directory is the unit's state directory, and the sandbox lets it be written.
    let data = config.data_dir.to_str().unwrap().to_owned();
    assert_eq!(data, format!("/var/lib/{}", one(&u, "StateDirectory")));
    let writable: Vec<&str> = one(&u, "ReadWritePaths")
        .split_whitespace()
        .map(|p| p.trim_start_matches('-'))
        .collect();
    assert!(writable.contains(&data.as_str()), "{writable:?}");
    assert!(config.listen.ip().is_loopback() && config.tls.is_none());
    assert!(config.metrics_listen.is_some_and(|a| a.ip().is_loopback()));
}

#[test]
fn the_daemon_unit_is_sandboxed() {
    let u = unit("vault-server.service");
    for (key, value) in [
        ("User", "vault"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("UMask", "0077"),
        ("StateDirectoryMode", "0700"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(one(&u, key), value, "{key}");
    }
    assert_eq!(
        u["SystemCallFilter"],
        ["@system-service", "~@privileged"],
        "SystemCallFilter"
    );
}

#[test]
fn every_variable_the_units_set_is_read_or_used() {
    let read = variables_read_by_the_code();
    let script = deploy("vault-backup");
    for service in SERVICES {
        for setting in unit(service).get("Environment").into_iter().flatten() {
            let (name, _) = setting.split_once('=').unwrap();
            let used_by_script =
                script.contains(&format!("${{{name}")) || script.contains(&format!("${name}"));
            assert!(
                read.iter().any(|r| r == name) || used_by_script,
                "{service}: {name} is read by neither the binaries nor deploy/vault-backup"
            );
        }
    }
    let container = deploy("Containerfile");
    for line in container.lines().filter(|l| l.starts_with("ENV ")) {
        let (name, _) = line["ENV ".len()..].split_once('=').unwrap();
        assert!(
            read.iter().any(|r| r == name),
            "Containerfile: {name} is not read"
        );
    }
}

/// The `vaultctl` command lines of the backup script, variables replaced by sample values.
fn script_commands() -> Vec<Vec<String>> {
    let samples = [
        ("\"$token\"", "/run/credentials/vault-backup.service/token"),
        ("\"$out\"", "/var/backups/vault/2026-03-14T023000Z"),
        (
            "\"$VAULT_JOURNAL_FILE\"",
            "/var/lib/vault-journal/erasures.json",
        ),
    ];
    deploy("vault-backup")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("vaultctl "))
        .map(|l| {
            let mut l = l.to_owned();
            for (var, value) in samples {
                l = l.replace(var, value);
            }
            assert!(!l.contains('$'), "a variable without a sample value: {l}");
            l.split_whitespace().skip(1).map(str::to_owned).collect()
        })
        .collect()
}

/// `vaultctl ARGS --help`: clap checks every flag and subcommand before the help, so an
/// unknown one fails.
fn vaultctl_accepts(args: &[String]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_vaultctl"))
        .args(args)
        .arg("--help")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn vaultctl_accepts_the_backup_scripts_command_lines() {
    let commands = script_commands();
    assert_eq!(commands.len(), 3, "{commands:?}");
    for args in &commands {
        vaultctl_accepts(args).unwrap_or_else(|e| panic!("vaultctl {args:?}: {e}"));
    }
    // The check can fail: a misspelt flag or subcommand is refused.
    let misspelt: Vec<String> = commands[0]
        .iter()
        .map(|a| a.replace("--out", "--output"))
        .collect();
    assert!(vaultctl_accepts(&misspelt).is_err());
    assert!(vaultctl_accepts(&["erasures".into(), "exprot".into(), "f".into()]).is_err());
    // The units call the script with a mode it knows.
    let script = deploy("vault-backup");
    for (service, mode) in [
        ("vault-backup.service", "full"),
        ("vault-erasures.service", "journal"),
    ] {
        let u = unit(service);
        assert_eq!(
            one(&u, "ExecStart"),
            format!("/usr/local/lib/vault/vault-backup {mode}")
        );
        assert!(script.contains(&format!("\n{mode})\n")), "{mode}");
        assert_eq!(one(&u, "LoadCredential"), "token:/etc/vault/backup.token");
        // The journal it writes is in its own writable state directory.
        let journal = u["Environment"]
            .iter()
            .find_map(|e| e.strip_prefix("VAULT_JOURNAL_FILE="))
            .unwrap();
        let state = format!("/var/lib/{}", one(&u, "StateDirectory"));
        assert!(journal.starts_with(&format!("{state}/")), "{journal}");
        assert_eq!(one(&u, "ReadWritePaths"), state);
        assert_eq!(one(&u, "User"), "vault");
        assert_eq!(one(&u, "NoNewPrivileges"), "yes");
        assert_eq!(one(&u, "CapabilityBoundingSet"), "");
    }
    // The journal goes off the host: the script refuses to run without a destination and
    // copies the journal there in every mode.
    assert!(script.contains("${VAULT_OFFHOST_DEST:?"));
    assert!(
        script
            .trim_end()
            .ends_with("rsync -a -- \"$VAULT_JOURNAL_FILE\" \"$VAULT_OFFHOST_DEST/\"")
    );
}

#[test]
fn timers_start_their_services() {
    for (timer, service) in [
        ("vault-backup.timer", "vault-backup.service"),
        ("vault-erasures.timer", "vault-erasures.service"),
    ] {
        let t = unit(timer);
        assert!(t.contains_key("OnCalendar"), "{timer}");
        assert_eq!(one(&t, "Persistent"), "true", "{timer}");
        // No Unit=: a timer starts the service of its own name, which must exist.
        assert!(!t.contains_key("Unit"));
        assert!(repo().join("deploy").join(service).is_file(), "{service}");
    }
}

#[test]
fn the_container_builds_the_binaries_runs_unprivileged_and_holds_no_secret() {
    let c = deploy("Containerfile");
    let workspace = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let rust_version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .unwrap()
        .trim_end_matches('"');
    assert!(
        c.contains(&format!("FROM docker.io/library/rust:{rust_version}-")),
        "the build image is not the workspace's rust-version {rust_version}"
    );
    assert!(c.contains(
        "cargo build --release --locked -p vault-server --bin vault-server --bin vaultctl"
    ));
    for bin in ["vault-server", "vaultctl"] {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/bin/{bin}.rs"));
        assert!(source.is_file(), "{bin}");
        assert!(c.contains(&format!("/src/target/release/{bin} /usr/local/bin/{bin}")));
    }
    let user = c.lines().find_map(|l| l.strip_prefix("USER ")).unwrap();
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    let data = c
        .lines()
        .find_map(|l| l.strip_prefix("ENV VAULT_DATA_DIR="))
        .unwrap();
    assert!(c.contains(&format!("VOLUME [\"{data}\"]")));
    for secret in ["TOKEN", "PASSWORD", "DATABASE_URL", "KEY", "SECRET"] {
        assert!(
            !c.lines()
                .any(|l| (l.starts_with("ENV ") || l.starts_with("ARG ")) && l.contains(secret)),
            "Containerfile sets {secret}"
        );
    }
    let ignored = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l == "target/"),
        "the build context would hold target/"
    );
}
