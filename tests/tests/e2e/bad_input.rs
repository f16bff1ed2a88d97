//! Bad input gets the right status code and a clear message, and changes nothing.

use tonic::{Code, Request, Status};
use vault_proto::v1 as pb;
use vault_proto::v1::supporters_client::SupportersClient;
use vault_tests::{Creds, Daemon, Supporter, authed, supporter};

type Client = SupportersClient<tonic::transport::Channel>;

enum Call {
    Upsert(Supporter),
    UpsertEmpty,
    Get(String, Vec<&'static str>),
    LookupNone,
    Update(String, Supporter, Vec<&'static str>),
    Tag(String, Vec<String>),
}

enum Credentials {
    Token,
    Missing,
    Wrong,
    Malformed,
}

struct Case {
    name: &'static str,
    call: Call,
    credentials: Credentials,
    code: Code,
    message: &'static str,
}

fn with(s: Supporter, f: impl FnOnce(&mut Supporter)) -> Supporter {
    let mut s = s;
    f(&mut s);
    s
}

async fn run(
    c: &mut Client,
    call: Call,
    credentials: &Credentials,
    token: &Creds,
) -> Result<(), Status> {
    fn req<T>(m: T, credentials: &Credentials, token: &Creds) -> Request<T> {
        match credentials {
            Credentials::Token => authed(m, token),
            Credentials::Missing => Request::new(m),
            Credentials::Wrong => authed(
                m,
                "vault_0000000000000000000000000000000000000000000000000000000000000000",
            ),
            Credentials::Malformed => {
                let mut r = Request::new(m);
                r.metadata_mut().insert(
                    vault_proto::metadata::AUTHORIZATION,
                    format!("Basic {}", token.token).parse().unwrap(),
                );
                r
            }
        }
    }
    let mask = |p: Vec<&str>| {
        Some(prost_types::FieldMask {
            paths: p.into_iter().map(String::from).collect(),
        })
    };
    match call {
        Call::Upsert(s) => c
            .upsert(req(
                pb::UpsertRequest {
                    supporter: Some(s),
                    ..Default::default()
                },
                credentials,
                token,
            ))
            .await
            .map(|_| ()),
        Call::UpsertEmpty => c
            .upsert(req(pb::UpsertRequest::default(), credentials, token))
            .await
            .map(|_| ()),
        Call::Get(id, fields) => c
            .get(req(
                pb::GetRequest {
                    id,
                    fields: if fields.is_empty() {
                        None
                    } else {
                        mask(fields)
                    },
                },
                credentials,
                token,
            ))
            .await
            .map(|_| ()),
        Call::LookupNone => c
            .lookup(req(pb::LookupRequest { key: None }, credentials, token))
            .await
            .map(|_| ()),
        Call::Update(id, s, paths) => c
            .update(req(
                pb::UpdateRequest {
                    id,
                    supporter: Some(s),
                    update_mask: mask(paths),
                    request_ref: String::new(),
                },
                credentials,
                token,
            ))
            .await
            .map(|_| ()),
        Call::Tag(id, tags) => c
            .tag(req(pb::TagRequest { id, tags }, credentials, token))
            .await
            .map(|_| ()),
    }
}

#[tokio::test]
async fn bad_input_is_refused_precisely_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let mut c = daemon.supporters().await;

    // One existing supporter, whose state must not move.
    let existing = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter(
                    "Ada",
                    "Existing",
                    "ada@existing.fr",
                    "0612345678",
                )),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let snapshot = |c: &mut Client| {
        let mut c = c.clone();
        let id = existing.clone();
        let token = token.clone();
        async move {
            c.get(authed(pb::GetRequest { id, fields: None }, &token))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let before = snapshot(&mut c).await;

    let fresh = |n: &str| supporter("Test", "Person", &format!("{n}@bad-input.fr"), "");
    let unknown_id = "6f1c1a7e-3b7d-4d0e-9a51-2c9f5d3e8b10".to_owned();
    let cases = vec![
        Case {
            name: "malformed email",
            call: Call::Upsert(supporter("A", "B", "not-an-email", "")),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "email:",
        },
        Case {
            name: "email with a space",
            call: Call::Upsert(supporter("A", "B", "a b@bad-input.fr", "")),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "email:",
        },
        Case {
            name: "unparseable phone",
            call: Call::Upsert(with(fresh("p1"), |s| s.phone = "call me maybe".into())),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "phone:",
        },
        Case {
            name: "too short phone",
            call: Call::Upsert(with(fresh("p2"), |s| s.phone = "06 12".into())),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "phone:",
        },
        Case {
            name: "oversized given name",
            call: Call::Upsert(with(fresh("n1"), |s| s.given_name = "x".repeat(5000))),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "given_name: must be at most 200",
        },
        Case {
            name: "control character in name",
            call: Call::Upsert(with(fresh("n2"), |s| {
                s.family_name = "Bad\u{0007}Name".into()
            })),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "family_name:",
        },
        Case {
            name: "oversized custom value",
            call: Call::Upsert(with(fresh("c1"), |s| {
                s.custom.insert("note".into(), "v".repeat(5000));
            })),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "custom.note:",
        },
        Case {
            name: "too many custom fields",
            call: Call::Upsert(with(fresh("c2"), |s| {
                for i in 0..100 {
                    s.custom.insert(format!("k{i}"), "v".into());
                }
            })),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "custom",
        },
        Case {
            name: "bad tag",
            call: Call::Upsert(with(fresh("t1"), |s| {
                s.tags = vec!["no spaces allowed".into()]
            })),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "tags",
        },
        Case {
            name: "thousands of tags",
            call: Call::Upsert(with(fresh("t2"), |s| {
                s.tags = (0..5000).map(|i| format!("t{i}")).collect()
            })),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "tags",
        },
        Case {
            name: "bad country",
            call: Call::Upsert(with(fresh("a1"), |s| {
                s.address = Some(pb::Address {
                    country: "France".into(),
                    ..Default::default()
                })
            })),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "address.country",
        },
        Case {
            name: "no email and no phone",
            call: Call::Upsert(supporter("Only", "Names", "", "")),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "needs an email or a phone",
        },
        Case {
            name: "missing supporter",
            call: Call::UpsertEmpty,
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "supporter: is required",
        },
        Case {
            name: "unknown id",
            call: Call::Get(unknown_id.clone(), vec![]),
            credentials: Credentials::Token,
            code: Code::NotFound,
            message: "no supporter with id",
        },
        Case {
            name: "malformed id",
            call: Call::Get("../../etc/passwd".into(), vec![]),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "id: must be a supporter id",
        },
        Case {
            name: "unknown field path",
            call: Call::Get(existing.clone(), vec!["password"]),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "fields: unknown field path",
        },
        Case {
            name: "lookup without key",
            call: Call::LookupNone,
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "set either email or phone",
        },
        Case {
            name: "update without mask",
            call: Call::Update(existing.clone(), fresh("u1"), vec![]),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "update_mask: must list",
        },
        Case {
            name: "update read-only field",
            call: Call::Update(existing.clone(), fresh("u2"), vec!["created_at"]),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "cannot be updated",
        },
        Case {
            name: "update clears both contacts",
            call: Call::Update(
                existing.clone(),
                supporter("", "", "", ""),
                vec!["email", "phone"],
            ),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "needs an email or a phone",
        },
        Case {
            name: "update to an invalid email",
            call: Call::Update(
                existing.clone(),
                supporter("", "", "nope", ""),
                vec!["email"],
            ),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "email:",
        },
        Case {
            name: "update unknown id",
            call: Call::Update(unknown_id.clone(), fresh("u3"), vec!["email"]),
            credentials: Credentials::Token,
            code: Code::NotFound,
            message: "no supporter with id",
        },
        Case {
            name: "tag with nothing",
            call: Call::Tag(existing.clone(), vec![]),
            credentials: Credentials::Token,
            code: Code::InvalidArgument,
            message: "tags: must name at least one tag",
        },
        Case {
            name: "missing token",
            call: Call::Upsert(fresh("auth1")),
            credentials: Credentials::Missing,
            code: Code::Unauthenticated,
            message: "missing credentials",
        },
        Case {
            name: "wrong token",
            call: Call::Upsert(fresh("auth2")),
            credentials: Credentials::Wrong,
            code: Code::Unauthenticated,
            message: "invalid credentials",
        },
        Case {
            name: "malformed authorization",
            call: Call::Upsert(fresh("auth3")),
            credentials: Credentials::Malformed,
            code: Code::Unauthenticated,
            message: "malformed credentials",
        },
        Case {
            name: "wrong token on get",
            call: Call::Get(existing.clone(), vec![]),
            credentials: Credentials::Wrong,
            code: Code::Unauthenticated,
            message: "invalid credentials",
        },
    ];

    for case in cases {
        let err = run(&mut c, case.call, &case.credentials, &token)
            .await
            .expect_err(case.name);
        assert_eq!(err.code(), case.code, "{}: {}", case.name, err.message());
        assert!(
            err.message().contains(case.message),
            "{}: message {:?} should contain {:?}",
            case.name,
            err.message(),
            case.message
        );
        // Nothing changed: the existing supporter is untouched...
        assert_eq!(
            snapshot(&mut c).await,
            before,
            "{} changed the existing supporter",
            case.name
        );
    }
    // ...and none of the refused supporters exists.
    for n in [
        "p1", "p2", "n1", "n2", "c1", "c2", "t1", "t2", "a1", "auth1", "auth2", "auth3",
    ] {
        let r = c
            .lookup(authed(
                pb::LookupRequest {
                    key: Some(pb::lookup_request::Key::Email(format!("{n}@bad-input.fr"))),
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(r.code(), Code::NotFound, "{n} was written");
    }

    // Conflicts are refused too: an email that belongs to someone else.
    let other = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", "other@existing.fr", "")),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let err = c
        .update(authed(
            pb::UpdateRequest {
                id: other.clone(),
                supporter: Some(supporter("", "", "ADA@existing.fr", "")),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
                request_ref: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    // Naming nobody: the caller may have no basis for the other person.
    assert!(!err.message().contains(&existing), "{}", err.message());
    assert!(
        err.message().contains("another supporter"),
        "{}",
        err.message()
    );
    let err = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", "other@existing.fr", "06 12 34 56 78")),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
    assert_eq!(snapshot(&mut c).await, before);

    // The daemon is still up and serving.
    assert!(daemon.logs().contains("listening on"));
    c.get(authed(
        pb::GetRequest {
            id: other,
            fields: None,
        },
        &token,
    ))
    .await
    .unwrap();
}
