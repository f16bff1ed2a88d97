//! `vaultctl import` of real-world files against a running daemon: French headers and
//! accented tags, a row with a bad value (its report line and the exit status), a
//! NationBuilder people export with `--preset nationbuilder`, and the purpose registry a
//! config file with one `[[purposes]]` table gives.

use vault_proto::v1 as pb;
use vault_tests::ctl::vaultctl;
use vault_tests::{Creds, Daemon, authed, write};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `Supporters.Lookup` by email under the tool's purpose.
async fn lookup(d: &Daemon, tool: &Creds, email: &str) -> pb::Supporter {
    d.supporters()
        .await
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(email.into())),
            },
            tool,
        ))
        .await
        .unwrap_or_else(|s| panic!("lookup {email}: {s:?}"))
        .into_inner()
}

/// The active consents of `id`, as (purpose, channel).
async fn active_consents(d: &Daemon, tool: &Creds, id: &str) -> Vec<(String, String)> {
    let mut active: Vec<(String, String)> = d
        .consent()
        .await
        .status(authed(
            pb::ConsentStatusRequest {
                subject_id: id.into(),
            },
            tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .states
        .into_iter()
        .filter(|s| s.active)
        .map(|s| (s.purpose, s.channel))
        .collect();
    active.sort();
    active
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn french_file_with_accents_and_a_bad_phone_reports_the_row_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("d"));
    let tool = d.tool("membership").await;
    for name in ["Zoé", "Lefèvre", "Hervé", "Gaëlle", "Noël"] {
        vault_tests::leaks::watch_name(name);
    }
    // Row 2's number reads as a French mobile, but 071 is not an allocated range.
    let file = write(
        dir.path(),
        "adhérents.csv",
        "Courriel;Prénom;Nom;Téléphone;Code postal;Étiquettes;Complément d'adresse\n\
         zoe@exemple.fr;Zoé;Lefèvre;06 12 34 56 78;75011;Bénévole|Élu;Bât. C\n\
         herve@exemple.fr;Hervé;Noël;+33712345678;69001;bénévole;\n\
         gaelle@exemple.fr;Gaëlle;Noël;;13001;Be\u{301}ne\u{301}vole;\n",
    );
    let args = ["--purpose", "membership", "import", &file];
    let out = vaultctl(&d, Some(&tool.token), &args);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.starts_with(&format!(
            "{file}: 3 rows: 2 created, 0 updated, 0 unchanged, 1 rejected"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "\n  row 2, column \"Téléphone\": invalid argument: phone: is not a valid number for FR \
             (unallocated range) [InvalidArgument]"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("international format"), "{stdout}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("1 of 3 rows rejected") && stderr.contains("--allow-rejects"),
        "{stderr}"
    );

    // The good rows are in, accents kept; the bad row left nothing behind.
    let zoe = lookup(&d, &tool, "zoe@exemple.fr").await;
    assert_eq!(
        (zoe.given_name.as_str(), zoe.family_name.as_str()),
        ("Zoé", "Lefèvre")
    );
    assert_eq!(zoe.tags, vec!["bénévole", "élu"]);
    assert_eq!(zoe.phone, "+33612345678");
    assert_eq!(zoe.address.unwrap().line2, "Bât. C");
    assert_eq!(
        lookup(&d, &tool, "gaelle@exemple.fr").await.tags,
        vec!["bénévole"]
    );
    let herve = d
        .supporters()
        .await
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("herve@exemple.fr".into())),
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(herve.code(), tonic::Code::NotFound);

    // --allow-rejects: the same report, exit status 0; the re-run changes nothing.
    let mut allowed = args.to_vec();
    allowed.extend(["--allow-rejects", "--json"]);
    let out = vaultctl(&d, Some(&tool.token), &allowed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["unchanged"], 2, "{summary}");
    assert_eq!(summary["rejected"][0]["row"], 2, "{summary}");
    assert_eq!(
        summary["rejected"][0]["column"], "\"Téléphone\"",
        "{summary}"
    );
    assert_eq!(summary["rejected"][0]["field"], "phone", "{summary}");
}

/// NationBuilder's people export header, a realistic subset of its columns in its order.
const NATIONBUILDER_HEADER: &str = "nationbuilder_id,salesforce_id,external_id,ngp_id,\
    prefix,first_name,middle_name,last_name,suffix,email,email_opt_in,email1,email2,\
    is_deceased,is_volunteer,is_supporter,phone_number,mobile_number,mobile_opt_in,\
    work_phone_number,do_not_call,do_not_contact,sex,born_at,employer,occupation,party,\
    support_level,tag_list,address1,address2,address3,city,county,state,zip,country_code,\
    precinct_name,recruiter_id,parent_id,note,created_at,updated_at";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nationbuilder_export_imports_with_the_preset() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("d"));
    let tool = d
        .create_client(
            "nationbuilder-import",
            "campaign-tool",
            &["membership", "newsletter", "sms-mobilisation"],
        )
        .await
        .with_purpose(Some("membership"));
    for name in ["Camille", "Rousseau", "Théo", "Garnier"] {
        vault_tests::leaks::watch_name(name);
    }
    let rows = [
        // Both phones: the mobile is the phone, the landline kept as custom.phone_number.
        "4242,,crm-0042,,Mme,Camille,Anne,Rousseau,,camille@exemple.fr,true,,,false,true,true,\
         01 23 45 67 89,06 11 22 33 44,true,,false,false,F,1990-04-01,Mairie,Agente,,1,\
         \"Bénévole, Porte à porte\",12 rue des Lilas,Apt 3,,Lyon,,,69003,FR,,,,\
         Met at the market,2024-01-02T10:00:00+01:00,2025-11-30T09:00:00+01:00",
        // No mobile: the landline is the phone. No consent.
        "4243,,,,,Théo,,Garnier,,theo@exemple.fr,false,,,false,false,true,\
         04 78 00 00 01,,false,,false,false,M,,,,,,,,,,Lyon,,,69002,FR,,,,,\
         2024-02-03T10:00:00+01:00,2024-02-03T10:00:00+01:00",
    ];
    let file = write(
        dir.path(),
        "nationbuilder-people.csv",
        &format!("{NATIONBUILDER_HEADER}\n{}\n", rows.join("\n")),
    );
    // Without the preset, the file is refused as a whole: nothing is dropped silently.
    let out = vaultctl(
        &d,
        Some(&tool.token),
        &["--purpose", "membership", "import", &file],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("\"nationbuilder_id\""));

    let preset = [
        "--purpose",
        "membership",
        "import",
        &file,
        "--preset",
        "nationbuilder",
        "--notice-version",
        "2026-03",
        "--json",
    ];
    // The opt-ins are consent for the call's purpose; membership rests on a contract, so
    // the row that opted in is refused, naming the column, and the command exits 3.
    let out = vaultctl(&d, Some(&tool.token), &preset);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["created"], 1, "{summary}");
    assert_eq!(summary["rejected"][0]["row"], 1, "{summary}");
    assert_eq!(
        summary["rejected"][0]["column"], "\"email_opt_in\" or \"mobile_opt_in\"",
        "{summary}"
    );
    // Placed under consent-based purposes with --map, every row goes in.
    let mut mapped = preset.to_vec();
    mapped.extend([
        "--map",
        "email_opt_in=consent:newsletter:email",
        "--map",
        "mobile_opt_in=consent:sms-mobilisation:sms",
    ]);
    let out = vaultctl(&d, Some(&tool.token), &mapped);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["created"], 1, "{summary}");
    assert_eq!(summary["unchanged"], 1, "{summary}");
    assert_eq!(summary["rejected"], serde_json::json!([]), "{summary}");
    // Every column without a place, by name, with its non-empty cells.
    let unplaced: Vec<(String, u64)> = summary["unplaced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["column"].as_str().unwrap().trim_matches('"').to_owned(),
                u["cells"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("salesforce_id", 0),
        ("ngp_id", 0),
        ("prefix", 1),
        ("middle_name", 1),
        ("suffix", 0),
        ("email1", 0),
        ("email2", 0),
        ("is_deceased", 2),
        ("is_volunteer", 2),
        ("is_supporter", 2),
        ("work_phone_number", 0),
        ("do_not_call", 2),
        ("do_not_contact", 2),
        ("sex", 2),
        ("born_at", 1),
        ("employer", 1),
        ("occupation", 1),
        ("party", 0),
        ("support_level", 1),
        ("address3", 0),
        ("county", 0),
        ("state", 0),
        ("precinct_name", 0),
        ("recruiter_id", 0),
        ("parent_id", 0),
        ("note", 1),
        ("created_at", 2),
        ("updated_at", 2),
    ]
    .iter()
    .map(|(c, n)| ((*c).to_owned(), *n))
    .collect();
    assert_eq!(unplaced, expected, "{summary}");

    let camille = lookup(&d, &tool, "camille@exemple.fr").await;
    assert_eq!(
        (camille.given_name.as_str(), camille.family_name.as_str()),
        ("Camille", "Rousseau")
    );
    assert_eq!(camille.phone, "+33611223344");
    assert_eq!(camille.tags, vec!["bénévole", "porte-à-porte"]);
    let address = camille.address.clone().unwrap();
    assert_eq!(
        (
            address.line1.as_str(),
            address.line2.as_str(),
            address.city.as_str(),
            address.postcode.as_str(),
            address.country.as_str()
        ),
        ("12 rue des Lilas", "Apt 3", "Lyon", "69003", "FR")
    );
    // A protobuf map arrives in no particular order: compare it sorted.
    let custom: std::collections::BTreeMap<&str, &str> = camille
        .custom
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        custom,
        std::collections::BTreeMap::from([
            ("external_id", "crm-0042"),
            ("nationbuilder_id", "4242"),
            ("phone_number", "01 23 45 67 89"),
        ])
    );
    assert_eq!(
        active_consents(&d, &tool, &camille.id).await,
        vec![
            ("newsletter".to_owned(), "email".to_owned()),
            ("sms-mobilisation".to_owned(), "sms".to_owned()),
        ]
    );

    let theo = lookup(&d, &tool, "theo@exemple.fr").await;
    assert_eq!(theo.phone, "+33478000001");
    assert_eq!(theo.custom.get("nationbuilder_id").unwrap(), "4243");
    assert!(!theo.custom.contains_key("phone_number"));
    assert!(!theo.custom.contains_key("external_id"));
    assert!(theo.tags.is_empty());
    assert!(active_consents(&d, &tool, &theo.id).await.is_empty());
}

/// The purpose ids `Admin.ListPurposes` returns, sorted.
async fn purpose_ids(d: &Daemon) -> Vec<String> {
    let mut ids: Vec<String> = d
        .admin()
        .await
        .list_purposes(authed(pb::ListPurposesRequest {}, &d.admin_token()))
        .await
        .unwrap()
        .into_inner()
        .purposes
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.sort();
    ids
}

const FLASH: &str = r#"
[[purposes]]
id = "petition-2026"
description = "Signatures of the 2026 petition, kept for the campaign"
lawful_basis = "legitimate-interest"
special_category_basis = "political-body-regular-contacts"
channels = ["email"]
retention_days = 365
fields = ["given_name", "family_name", "email"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_configured_purpose_keeps_the_other_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "vault.toml", FLASH);
    let data = dir.path().join("d");
    let d = Daemon::start_with(&data, &["--config", &config]);
    let defaults = [
        "canvassing",
        "data-subject-rights",
        "donations-accounting",
        "event-invitations",
        "membership",
        "newsletter",
        "petition-2026",
        "sms-mobilisation",
    ];
    assert_eq!(purpose_ids(&d).await, defaults);
    let logs = d.logs();
    assert!(logs.contains("purpose registry in force"), "{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("petition-2026") && l.contains("retention_days=365")),
        "the registry in force is logged: {logs}"
    );
    drop(d);
    // A later start with the same file: the same registry.
    let d = Daemon::start_with(&data, &["--config", &config]);
    assert_eq!(purpose_ids(&d).await, defaults);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_defaults_starts_a_new_store_with_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "vault.toml",
        &format!("[purposes_policy]\nreplace_defaults = true\n{FLASH}"),
    );
    let d = Daemon::start_with(&dir.path().join("d"), &["--config", &config]);
    assert_eq!(
        purpose_ids(&d).await,
        ["data-subject-rights", "petition-2026"]
    );
}
