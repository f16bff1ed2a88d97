//! `vaultctl` import, search, watch, rights, keys, backup and retention against a running
//! daemon.

use std::process::Command;

use vault_tests::ctl::{ok, propose_and_approve, refused, vaultctl};
use vault_tests::{Daemon, write};

fn token_of(created: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(created).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// A client that takes two admins (a dpo, a campaign tool), through the command line: the
/// bootstrap admin proposes it, `approver` (a second admin) approves it. Its token.
fn two_admin_client(daemon: &Daemon, approver: &str, args: &[&str]) -> String {
    propose_and_approve(daemon, approver, args)["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn import_refuses_files_it_cannot_map_before_sending_anything() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"));
    let unknown = write(
        dir.path(),
        "unknown.csv",
        "Courriel;Prénom;Pointure\na@b.fr;Anne;38\n",
    );
    refused(
        &vaultctl(&daemon, None, &["import", &unknown]),
        "import needs --purpose",
    );
    refused(
        &vaultctl(
            &daemon,
            None,
            &["import", &unknown, "--purpose", "membership"],
        ),
        "unknown column \"Pointure\"",
    );
    let consent = write(
        dir.path(),
        "consent.csv",
        "email,consent:newsletter\na@b.fr,oui\n",
    );
    refused(
        &vaultctl(
            &daemon,
            None,
            &["import", &consent, "--purpose", "membership"],
        ),
        "--notice-version",
    );
    let nameless = write(dir.path(), "names.csv", "prenom,nom\nAnne,Martin\n");
    refused(
        &vaultctl(
            &daemon,
            None,
            &["import", &nameless, "--purpose", "membership"],
        ),
        "no column holds an email or a phone",
    );
    refused(
        &vaultctl(
            &daemon,
            None,
            &["import", "/nonexistent/x.csv", "--purpose", "membership"],
        ),
        "cannot read /nonexistent/x.csv",
    );
}

#[test]
fn rights_commands_check_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    refused(
        &vaultctl(
            &daemon,
            None,
            &[
                "rights",
                "requests",
                "open",
                "--kind",
                "access",
                "--received",
                "31/01/2026",
                "--reference",
                "r",
            ],
        ),
        "is not a date: expected YYYY-MM-DD",
    );
    let both = vaultctl(
        &daemon,
        None,
        &["rights", "export", "--id", "x", "--email", "a@b.fr"],
    );
    assert!(!both.status.success());
    let missing = vaultctl(&daemon, None, &["rights", "erase", "--id", "x"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--request-ref"));
}

/// The whole tour through the command line. Needs the server side of Import, Search, Watch,
/// Rights, RotateKeys, Backup and RetentionSweep.
#[test]
fn import_search_watch_and_rights_tour() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"));
    // What reads personal data takes two admins: a second admin approves.
    let approver = token_of(&ok(&vaultctl(
        &daemon,
        None,
        &["client", "create", "--name", "approver", "--role", "admin"],
    )));
    vault_tests::leaks::watch_secret(&approver);
    let tool = two_admin_client(
        &daemon,
        &approver,
        &[
            "--name",
            "importer",
            "--role",
            "campaign-tool",
            "--purposes",
            "membership,newsletter",
        ],
    );
    let dpo = two_admin_client(&daemon, &approver, &["--name", "dpo", "--role", "dpo"]);

    // Row 2 has a field too many (refused by the CLI), row 4 a bad email (refused by the
    // server): both are reported with their file row numbers.
    let file = write(
        dir.path(),
        "adherents.csv",
        "Courriel;Prénom;Nom;Code postal;Tags;consent:newsletter\n\
         anne@exemple.fr;Anne;Martin;75011;benevole|quartier-nord;oui\n\
         trop@exemple.fr;Trop;De;Champs;75011;x;1\n\
         paul@exemple.fr;Paul;Durand;69001;benevole;non\n\
         pas-une-adresse;Zoé;Petit;75011;benevole;oui\n\
         lea@exemple.fr;Léa;Moreau;75011;Bénévole;1\n\
         jean@exemple.fr;Jean;Moulin;75011;Be\u{301}ne\u{301}vole|élu;oui\n",
    );
    let args = [
        "import",
        &file,
        "--purpose",
        "membership",
        "--notice-version",
        "2026-01",
        "--batch",
        "2",
        "--json",
    ];
    // Rejected rows make the command exit 3 (the rest is imported); --allow-rejects, 0.
    let out = vaultctl(&daemon, Some(&tool), &args);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut allowed = args.to_vec();
    allowed.push("--allow-rejects");
    let out = vaultctl(&daemon, Some(&tool), &allowed);
    let summary: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(summary["rows"], 6, "{summary}");
    assert_eq!(summary["unchanged"], 4, "{summary}");
    let rejected: Vec<u64> = summary["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![2, 4], "{summary}");
    // --strict (the default) keeps exit status 3; with --allow-rejects it is a usage error.
    let mut strict = args.to_vec();
    strict.push("--strict");
    let out = vaultctl(&daemon, Some(&tool), &strict);
    assert_eq!(out.status.code(), Some(3));
    strict.push("--allow-rejects");
    let out = vaultctl(&daemon, Some(&tool), &strict);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");

    // The consenting volunteers, as JSON lines (the newsletter may not see postcodes, so
    // it may not select by them).
    let lines = ok(&vaultctl(
        &daemon,
        Some(&tool),
        &[
            "supporter",
            "search",
            "--purpose",
            "newsletter",
            "--tag",
            "benevole",
            "--all-pages",
        ],
    ));
    let mut emails: Vec<String> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["email"].as_str().unwrap().to_owned()
        })
        .collect();
    emails.sort();
    assert_eq!(emails, vec!["anne@exemple.fr"]);
    // Accents are kept: `Bénévole`, typed composed or decomposed, is the tag `bénévole`.
    let lines = ok(&vaultctl(
        &daemon,
        Some(&tool),
        &[
            "supporter",
            "search",
            "--purpose",
            "newsletter",
            "--tag",
            "BÉNÉVOLE",
            "--all-pages",
        ],
    ));
    let mut accented: Vec<(String, serde_json::Value)> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["email"].as_str().unwrap().to_owned(), v["tags"].clone())
        })
        .collect();
    accented.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        accented,
        vec![
            (
                "jean@exemple.fr".to_owned(),
                serde_json::json!(["bénévole", "élu"])
            ),
            ("lea@exemple.fr".to_owned(), serde_json::json!(["bénévole"])),
        ]
    );

    // The change feed stops by itself once caught up.
    let started = std::time::Instant::now();
    let feed = ok(&vaultctl(
        &daemon,
        Some(&tool),
        &["watch", "--purpose", "membership"],
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        feed.lines().filter(|l| l.contains("created")).count() >= 3,
        "{feed}"
    );
    assert!(!feed.contains("anne@exemple.fr"), "{feed}");

    // Rights: export to a private file, ticket, erasure with its receipt.
    let export = dir.path().join("anne.json");
    ok(&vaultctl(
        &daemon,
        Some(&dpo),
        &[
            "rights",
            "export",
            "--email",
            "anne@exemple.fr",
            "--out",
            export.to_str().unwrap(),
        ],
    ));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    assert!(doc.to_string().contains("anne@exemple.fr"), "{doc}");
    let found = ok(&vaultctl(
        &daemon,
        Some(&tool),
        &[
            "supporter",
            "lookup",
            "--email",
            "anne@exemple.fr",
            "--purpose",
            "membership",
        ],
    ));
    let anne: serde_json::Value = serde_json::from_str(&found).unwrap();
    let id = anne["id"].as_str().unwrap();
    let ticket: serde_json::Value = serde_json::from_str(&ok(&vaultctl(
        &daemon,
        Some(&dpo),
        &[
            "rights",
            "requests",
            "open",
            "--kind",
            "erasure",
            "--received",
            "2026-01-31",
            "--subject",
            id,
            "--reference",
            "letter 2026-01-31",
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(ticket["due_at"], "2026-02-28");
    // Past its due date: open says overdue, as list does.
    assert_eq!(ticket["overdue"], true, "{ticket}");
    let ticket_id = ticket["id"].as_str().unwrap();
    let listed = ok(&vaultctl(
        &daemon,
        Some(&dpo),
        &["rights", "requests", "list", "--overdue"],
    ));
    assert!(listed.contains(ticket_id), "{listed}");
    assert!(listed.contains("open OVERDUE"), "{listed}");
    // A reference to a ticket of another kind is refused, and erases nothing.
    let access: serde_json::Value = serde_json::from_str(&ok(&vaultctl(
        &daemon,
        Some(&dpo),
        &[
            "rights",
            "requests",
            "open",
            "--kind",
            "access",
            "--subject",
            id,
            "--reference",
            "REQ-1",
            "--json",
        ],
    )))
    .unwrap();
    let erase = |request_ref: &str, extra: &[&str]| {
        let mut args = vec!["rights", "erase", "--id", id, "--request-ref", request_ref];
        args.extend_from_slice(extra);
        vaultctl(&daemon, Some(&dpo), &args)
    };
    let wrong = erase(access["id"].as_str().unwrap(), &[]);
    refused(
        &wrong,
        "FailedPrecondition: failed precondition: rights request",
    );
    refused(&wrong, "is of kind access, not erasure");
    let receipt = ok(&erase(ticket_id, &["--suppress"]));
    assert!(
        receipt.contains("erased") && receipt.contains(id),
        "{receipt}"
    );
    assert!(receipt.contains("suppressed   yes"), "{receipt}");
    // The erasure answered the ticket: closed with "erased", no longer overdue.
    let all: serde_json::Value = serde_json::from_str(&ok(&vaultctl(
        &daemon,
        Some(&dpo),
        &["rights", "requests", "list", "--all", "--json"],
    )))
    .unwrap();
    let closed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ticket_id)
        .unwrap();
    assert_eq!(closed["status"], "closed", "{closed}");
    assert_eq!(closed["action"], "erased", "{closed}");
    assert_eq!(closed["overdue"], false, "{closed}");
    refused(
        &vaultctl(
            &daemon,
            Some(&dpo),
            &[
                "rights", "requests", "close", "--id", ticket_id, "--action", "erased",
            ],
        ),
        "is already closed (erased)",
    );

    // Admin: rotation, backup, retention sweep.
    let rotated = ok(&vaultctl(&daemon, None, &["keys", "rotate", "--json"]));
    let rotated: serde_json::Value = serde_json::from_str(&rotated).unwrap();
    assert!(rotated["epoch"].as_u64().unwrap() >= 2, "{rotated}");
    let backup_dir = dir.path().join("backup");
    let manifest = ok(&vaultctl(
        &daemon,
        None,
        &["backup", "--out", backup_dir.to_str().unwrap()],
    ));
    // Readable lines without --json (the JSON shape is below).
    assert!(manifest.starts_with("backup "), "{manifest}");
    assert!(manifest.contains("\nsupporters "), "{manifest}");
    assert!(manifest.contains("\nroot key "), "{manifest}");
    assert!(
        manifest.contains("not included: keep the root key file apart"),
        "{manifest}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(&manifest).is_err());
    let again = backup_dir.with_extension("json-shape");
    let manifest = ok(&vaultctl(
        &daemon,
        None,
        &["backup", "--json", "--out", again.to_str().unwrap()],
    ));
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["root_key_included"], false, "{manifest}");
    assert!(manifest["supporters"].is_u64(), "{manifest}");
    let sweep = ok(&vaultctl(
        &daemon,
        None,
        &["retention", "sweep", "--dry-run"],
    ));
    assert!(sweep.starts_with("dry run: examined"), "{sweep}");
}

/// vault-load, which the benchmarks in docs/benchmarks.md rely on, registers its clients
/// through the two-admin flow and runs each kind of scenario on a fresh store (a short run:
/// this checks that it works, not how fast).
#[tokio::test]
async fn vault_load_registers_its_clients_and_runs_every_kind_of_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let token_file = d.data_dir.join("admin.token");
    let addr = d.addr.to_string();
    for args in [
        &[
            "--scenario",
            "lookup",
            "--seconds",
            "1",
            "--seed",
            "20",
            "--concurrency",
            "2",
        ][..],
        &[
            "--scenario",
            "import",
            "--count",
            "300",
            "--batch",
            "100",
            "--concurrency",
            "1",
        ],
        &["--scenario", "erase", "--count", "3", "--concurrency", "1"],
    ] {
        let out = Command::new(&*vault_tests::VAULT_LOAD)
            .args(["--addr", &addr, "--admin-token-file"])
            .arg(&token_file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vault-load {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
