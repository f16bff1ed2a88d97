//! Invariant: no plaintext personal data on disk (and none in the daemon's log).
//!
//! Under the PostgreSQL backend "on disk" is the database: every row of every table of
//! the daemon's schema is dumped as raw bytes and searched, as well as the data directory
//! (which then holds only the root key and the admin token).

use vault_proto::v1 as pb;

use vault_tests::{Daemon, authed, files_containing, files_under, pg_schema_of, supporter};

struct Person {
    given: &'static str,
    family: &'static str,
    email: &'static str,
    phone_in: &'static str,
    needles: &'static [&'static str],
}

const PEOPLE: &[Person] = &[
    Person {
        given: "Zéphyrine",
        family: "Quintavalle",
        email: "Zephyrine.Quintavalle@Exemple-Campagne.fr",
        phone_in: "06 48 27 91 35",
        needles: &["+33648279135", "0648279135", "648279135", "06 48 27 91 35"],
    },
    Person {
        given: "Barthélémy",
        family: "Onfroy-Kerguelen",
        email: "b.onfroy@courriel-militant.org",
        phone_in: "+33 7 81 62 40 59",
        needles: &["+33781624059", "0781624059", "781624059"],
    },
];

fn all_needles() -> Vec<String> {
    let mut n = Vec::new();
    for p in PEOPLE {
        n.push(p.given.to_owned());
        n.push(p.family.to_owned());
        n.push(p.email.to_owned());
        n.push(p.email.to_lowercase());
        n.extend(p.needles.iter().map(|s| (*s).to_owned()));
    }
    n.extend(
        [
            "Rue des Cerisiers Anonymes",
            "Trouville-sur-Secret",
            "sympathisant-discret",
            "valeur-personnelle-unique",
        ]
        .map(String::from),
    );
    n
}

/// No needle under `dir`, nor (PostgreSQL backend) in a dump of the daemon's schema, which
/// must hold every id of `ids` (so the search is not vacuous).
fn assert_absent(dir: &std::path::Path, when: &str, ids: &[String]) {
    assert!(!files_under(dir).is_empty());
    for needle in all_needles() {
        let hits = files_containing(dir, needle.as_bytes());
        assert!(
            hits.is_empty(),
            "{when}: {needle:?} found in clear in {hits:?}"
        );
    }
    if let Some(pg) = pg_schema_of(dir) {
        let dump = pg.dump();
        for id in ids {
            assert!(dump.contains(id.as_bytes()), "{when}: {id} not in the dump");
        }
        for needle in all_needles() {
            assert!(
                !dump.contains(needle.as_bytes()),
                "{when}: {needle:?} found in clear in the database ({:?})",
                dump.rows
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_in_clear_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let mut c = daemon.supporters().await;
    let mut ids = Vec::new();
    for p in PEOPLE {
        let mut s = supporter(p.given, p.family, p.email, p.phone_in);
        s.address = Some(pb::Address {
            line1: "12 Rue des Cerisiers Anonymes".into(),
            city: "Trouville-sur-Secret".into(),
            postcode: "14360".into(),
            ..Default::default()
        });
        s.tags = vec!["sympathisant-discret".into()];
        s.custom
            .insert("note".into(), "valeur-personnelle-unique".into());
        let r = c
            .upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(s),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap();
        ids.push(r.into_inner().id);
    }
    // Update and tag too, so stale record versions exist in the log-structured store.
    c.update(authed(
        pb::UpdateRequest {
            id: ids[0].clone(),
            supporter: Some(supporter("", "", "", "06 48 27 91 35")),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["phone".into()],
            }),
            request_ref: String::new(),
        },
        &token,
    ))
    .await
    .unwrap();
    c.tag(authed(
        pb::TagRequest {
            id: ids[1].clone(),
            tags: vec!["sympathisant-discret".into()],
        },
        &token,
    ))
    .await
    .unwrap();

    // Acknowledged writes are on disk now: check while the daemon runs...
    assert_absent(dir.path(), "while running", &ids);
    // ...and after a clean shutdown flushed everything.
    drop(c);
    assert!(daemon.terminate().success());
    assert_absent(dir.path(), "after shutdown", &ids);

    // The records really are there (the check above is not vacuous).
    let daemon = Daemon::start(dir.path());
    let mut c = daemon.supporters().await;
    let s = c
        .get(authed(
            pb::GetRequest {
                id: ids[0].clone(),
                fields: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.given_name, PEOPLE[0].given);

    // Nor in the daemon's own log, nor the token, nor the database password.
    let logs = daemon.logs();
    let db_password = pg_schema_of(dir.path()).and_then(|pg| {
        let authority = pg.url.split_once("://")?.1.split('/').next()?.to_owned();
        let userinfo = authority.rsplit_once('@')?.0.to_owned();
        Some(userinfo.split_once(':')?.1.to_owned())
    });
    for needle in all_needles()
        .into_iter()
        .chain([token.token.clone(), daemon.admin_token()])
        .chain(db_password)
    {
        assert!(!logs.contains(&needle), "{needle:?} in the daemon log");
    }
}

/// Free text a caller sends where no personal data is promised never reaches the store: an
/// unknown purpose (well formed or not) is logged without its value, and a reference or a
/// closing action that is not a number or a code is refused.
#[tokio::test]
async fn free_text_never_reaches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("newsletter").await;
    let dpo = daemon.dpo().await;
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    for purpose in [
        "quintavalle-zephyrine",
        "Letter from Zephyrine Quintavalle zephyrine.quintavalle@example.fr",
    ] {
        let e = daemon
            .get_supporter(&tool.with_purpose(Some(purpose)), &id)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
    // A call that needs no purpose, with one declared anyway.
    let admin = vault_tests::Creds {
        client_id: "bootstrap-admin".into(),
        token: daemon.admin_token(),
        purpose: Some("quintavalle-admin".into()),
    };
    daemon
        .admin()
        .await
        .list_clients(authed(pb::ListClientsRequest {}, &admin))
        .await
        .unwrap();
    let mut rights = daemon.rights().await;
    let open = |reference: &str| {
        authed(
            pb::OpenRequestRequest {
                kind: "erasure".into(),
                reference: reference.into(),
                ..Default::default()
            },
            &dpo,
        )
    };
    let e = rights
        .open_request(open("Letter from Zephyrine Quintavalle"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let ticket = rights
        .open_request(open("REQ-2026-990"))
        .await
        .unwrap()
        .into_inner();
    let e = rights
        .close_request(authed(
            pb::CloseRequestRequest {
                id: ticket.id.clone(),
                action: "exported to Zephyrine Quintavalle by post".into(),
            },
            &dpo,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    rights
        .close_request(authed(
            pb::CloseRequestRequest {
                id: ticket.id.clone(),
                action: "exported".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    daemon.check_logs();
    assert!(daemon.terminate().success());

    let needles = ["quintavalle", "Quintavalle", "Zephyrine"];
    for needle in needles {
        let hits = files_containing(dir.path(), needle.as_bytes());
        assert!(hits.is_empty(), "{needle:?} found in clear in {hits:?}");
    }
    // Not vacuous: the valid reference is there.
    if let Some(pg) = pg_schema_of(dir.path()) {
        let dump = pg.dump();
        assert!(dump.contains(b"REQ-2026-990"));
        for needle in needles {
            assert!(
                !dump.contains(needle.as_bytes()),
                "{needle:?} in the database"
            );
        }
    } else {
        assert!(!files_containing(dir.path(), b"REQ-2026-990").is_empty());
    }
}
