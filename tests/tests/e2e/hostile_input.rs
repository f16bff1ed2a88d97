//! Hostile input, end to end: oversized and malformed messages, forged page tokens and
//! cursors, wrong purposes, revoked credentials, calls for data outside the caller's role,
//! and callers exceeding the daemon's limits. Each gets a precise status, changes nothing,
//! and leaves the daemon serving.
//!
//! `bad_input.rs` covers invalid field values one by one; this file goes further: sizes
//! around and past every bound, bytes that are not protobuf at all, and the `[limits]`
//! section (a daemon started with tiny limits from a config file).

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vault_proto::v1 as pb;
use vault_tests::{Creds, Daemon, Supporter, authed, supporter};

/// The daemon's default largest request (`[limits] max_request_bytes`).
const DEFAULT_MAX_REQUEST: usize = 4 * 1024 * 1024;

/// A codec that sends and receives raw bytes, so a test can put anything on the wire.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// Sends `bytes` as the request message of the unary method at `path`.
async fn raw_unary(
    d: &Daemon,
    creds: &Creds,
    path: &'static str,
    bytes: Vec<u8>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(d.channel().await);
    grpc.ready().await.unwrap();
    grpc.unary(
        authed(bytes, creds),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|_| ())
}

/// Who makes a call.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// A campaign tool with purpose `membership` (sees every field, no consent needed).
    Member,
    /// A campaign tool with purpose `newsletter` (consent needed).
    Newsletter,
    /// The member tool declaring no purpose.
    MemberNoPurpose,
    /// The member tool declaring a purpose it was not granted.
    MemberOtherPurpose,
    /// The member tool declaring a purpose that does not exist.
    MemberUnknownPurpose,
    /// The member tool declaring a 4 KiB purpose id.
    MemberHugePurpose,
    /// A client revoked by the admin.
    Revoked,
    /// A 20 KB bearer token: past the daemon's 16 KiB HTTP/2 header list limit.
    HugeToken,
    /// A DPO.
    Dpo,
    /// An auditor.
    Auditor,
    /// The bootstrap admin.
    Admin,
}

enum Call {
    Upsert(Supporter),
    Get(String, Vec<String>),
    LookupEmail(String),
    LookupPhone(String),
    Update(String, Supporter, Vec<String>),
    Tag(String, Vec<String>),
    Search(pb::SearchRequest),
    Watch(String),
    Import(Vec<Supporter>),
    Raw(&'static str, Vec<u8>),
    Export(String),
    Erase(String),
    AuditQuery,
    ListClients,
    RevokeClient(String),
    Grant(pb::ConsentRequest),
}

struct Case {
    name: &'static str,
    who: Who,
    call: Call,
    code: Code,
    message: &'static str,
}

struct Clients {
    member: Creds,
    newsletter: Creds,
    revoked: Creds,
    dpo: Creds,
    auditor: Creds,
    admin: Creds,
}

impl Clients {
    fn creds(&self, who: Who) -> Creds {
        match who {
            Who::Member => self.member.clone(),
            Who::Newsletter => self.newsletter.clone(),
            Who::MemberNoPurpose => self.member.with_purpose(None),
            Who::MemberOtherPurpose => self.member.with_purpose(Some("newsletter")),
            Who::MemberUnknownPurpose => self.member.with_purpose(Some("no-such-purpose")),
            Who::MemberHugePurpose => self.member.with_purpose(Some(&"p".repeat(4096))),
            Who::Revoked => self.revoked.clone(),
            Who::HugeToken => Creds {
                client_id: String::new(),
                token: format!("vault_{}", "a".repeat(20_000)),
                purpose: Some("membership".into()),
            },
            Who::Dpo => self.dpo.clone(),
            Who::Auditor => self.auditor.clone(),
            Who::Admin => self.admin.clone(),
        }
    }
}

fn mask(paths: Vec<String>) -> Option<prost_types::FieldMask> {
    (!paths.is_empty()).then_some(prost_types::FieldMask { paths })
}

async fn run(d: &Daemon, creds: &Creds, call: Call) -> Result<(), Status> {
    let mut s = d.supporters().await;
    match call {
        Call::Upsert(supporter) => s
            .upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(supporter),
                    ..Default::default()
                },
                creds,
            ))
            .await
            .map(|_| ()),
        Call::Get(id, fields) => s
            .get(authed(
                pb::GetRequest {
                    id,
                    fields: mask(fields),
                },
                creds,
            ))
            .await
            .map(|_| ()),
        Call::LookupEmail(email) => s
            .lookup(authed(
                pb::LookupRequest {
                    key: Some(pb::lookup_request::Key::Email(email)),
                },
                creds,
            ))
            .await
            .map(|_| ()),
        Call::LookupPhone(phone) => s
            .lookup(authed(
                pb::LookupRequest {
                    key: Some(pb::lookup_request::Key::Phone(phone)),
                },
                creds,
            ))
            .await
            .map(|_| ()),
        Call::Update(id, supporter, paths) => s
            .update(authed(
                pb::UpdateRequest {
                    id,
                    supporter: Some(supporter),
                    update_mask: mask(paths),
                    request_ref: String::new(),
                },
                creds,
            ))
            .await
            .map(|_| ()),
        Call::Tag(id, tags) => s
            .tag(authed(pb::TagRequest { id, tags }, creds))
            .await
            .map(|_| ()),
        Call::Search(req) => {
            let mut stream = s.search(authed(req, creds)).await?.into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
        Call::Watch(cursor) => s
            .watch(authed(pb::WatchRequest { cursor }, creds))
            .await
            .map(|_| ()),
        Call::Import(rows) => s
            .import(authed(tokio_stream::iter(rows), creds))
            .await
            .map(|_| ()),
        Call::Raw(path, bytes) => raw_unary(d, creds, path, bytes).await,
        Call::Export(id) => d
            .rights()
            .await
            .export(authed(
                pb::ExportRequest {
                    subject: Some(pb::export_request::Subject::SubjectId(id)),
                    format: "json".into(),
                },
                creds,
            ))
            .await
            .map(|_| ()),
        Call::Erase(id) => d
            .rights()
            .await
            .erase(authed(
                pb::EraseRequest {
                    subject_id: id,
                    request_ref: "ticket-42".into(),
                    suppress: false,
                },
                creds,
            ))
            .await
            .map(|_| ()),
        Call::AuditQuery => {
            let mut stream = d
                .audit()
                .await
                .query(authed(pb::QueryRequest::default(), creds))
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
        Call::ListClients => d
            .admin()
            .await
            .list_clients(authed(pb::ListClientsRequest {}, creds))
            .await
            .map(|_| ()),
        Call::RevokeClient(id) => d
            .admin()
            .await
            .revoke_client(authed(pb::RevokeClientRequest { id }, creds))
            .await
            .map(|_| ()),
        Call::Grant(req) => d
            .consent()
            .await
            .grant(authed(req, creds))
            .await
            .map(|_| ()),
    }
}

/// Every supporter id the member tool can list (one page of up to 10,000).
async fn all_ids(d: &Daemon, member: &Creds) -> Vec<String> {
    let mut stream = d
        .supporters()
        .await
        .search(authed(
            pb::SearchRequest {
                page_size: 10_000,
                ..Default::default()
            },
            member,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(s) = stream.message().await.unwrap() {
        ids.push(s.id);
    }
    ids
}

async fn get(d: &Daemon, creds: &Creds, id: &str) -> Supporter {
    d.supporters()
        .await
        .get(authed(
            pb::GetRequest {
                id: id.into(),
                fields: None,
            },
            creds,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The health check answers SERVING and the process is still running.
async fn assert_alive(d: &mut Daemon, case: &str) {
    assert!(d.is_running(), "{case}: the daemon exited");
    let reply = HealthClient::new(d.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{case}: health check failed: {e}"))
        .into_inner();
    assert_eq!(reply.status, ServingStatus::Serving as i32, "{case}");
}

/// Protobuf varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A `GetRequest` whose unknown field 15 opens `depth` nested groups.
fn nested_groups(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * 2 + 8);
    out.extend(std::iter::repeat_n(15u8 << 3 | 3, depth));
    out.extend(std::iter::repeat_n(15u8 << 3 | 4, depth));
    out
}

/// A `GetRequest` whose field 1 (the id, a string) holds bytes that are not UTF-8.
fn non_utf8_id() -> Vec<u8> {
    vec![1 << 3 | 2, 4, 0xff, 0xfe, 0xfd, 0xfc]
}

/// A `GetRequest` whose field 1 claims 2 GiB of data and holds 3 bytes.
fn lying_length() -> Vec<u8> {
    let mut out = vec![1 << 3 | 2];
    varint(1 << 31, &mut out);
    out.extend_from_slice(b"abc");
    out
}

#[tokio::test]
async fn hostile_requests_get_precise_statuses_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let admin_token = d.admin_token();
    let member = d
        .create_client("hostile-member", "campaign-tool", &["membership"])
        .await
        .with_purpose(Some("membership"));
    let newsletter = d
        .create_client("hostile-news", "campaign-tool", &["newsletter"])
        .await
        .with_purpose(Some("newsletter"));
    let revoked = d
        .create_client("hostile-revoked", "campaign-tool", &["membership"])
        .await
        .with_purpose(Some("membership"));
    let dpo = d.dpo().await;
    let auditor = d.create_client("hostile-auditor", "auditor", &[]).await;
    let admin = Creds {
        client_id: "bootstrap-admin".into(),
        token: admin_token,
        purpose: None,
    };
    // Revoke one client: its token must be refused from now on.
    run(&d, &admin, Call::RevokeClient(revoked.client_id.clone()))
        .await
        .unwrap();
    let clients = Clients {
        member: member.clone(),
        newsletter,
        revoked,
        dpo,
        auditor: auditor.clone(),
        admin,
    };

    // Existing data whose state must not move: one supporter with every kind of field,
    // and a few volunteers for page tokens.
    let mut existing = supporter("Ada", "Existing", "ada@hostile.fr", "0612345678");
    existing.tags = vec!["volunteer".into()];
    existing.custom.insert("shirt".into(), "M".into());
    existing.address = Some(pb::Address {
        line1: "1 rue de la Paix".into(),
        postcode: "75002".into(),
        city: "Paris".into(),
        country: "FR".into(),
        ..Default::default()
    });
    let mut s = d.supporters().await;
    let existing_id = s
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(existing),
                ..Default::default()
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    for i in 0..5 {
        let mut v = supporter(
            "Vol",
            &format!("Unteer{i}"),
            &format!("vol{i}@hostile.fr"),
            "",
        );
        v.tags = vec!["volunteer".into()];
        s.upsert(authed(
            pb::UpsertRequest {
                supporter: Some(v),
                ..Default::default()
            },
            &member,
        ))
        .await
        .unwrap();
    }
    let before = get(&d, &member, &existing_id).await;
    let ids_before = all_ids(&d, &member).await;
    assert_eq!(ids_before.len(), 6, "the member tool lists everyone");

    // A genuine page token, to be tampered with.
    let volunteers = pb::SearchRequest {
        tags_all: vec!["volunteer".into()],
        page_size: 2,
        ..Default::default()
    };
    let first_page = s.search(authed(volunteers.clone(), &member)).await.unwrap();
    let token = first_page
        .metadata()
        .get(vault_proto::metadata::NEXT_PAGE_TOKEN)
        .expect("a next page")
        .to_str()
        .unwrap()
        .to_owned();
    drop(first_page);
    let with_token = |t: String| pb::SearchRequest {
        page_token: t,
        ..volunteers.clone()
    };
    let (payload, mac) = token.split_once('.').unwrap();
    let flip = |s: &str| -> String {
        let mut c: Vec<char> = s.chars().collect();
        c[0] = if c[0] == '0' { '1' } else { '0' };
        c.into_iter().collect()
    };

    let unknown_id = "6f1c1a7e-3b7d-4d0e-9a51-2c9f5d3e8b10".to_owned();
    let fresh = |n: &str| supporter("Hostile", "Person", &format!("{n}@hostile.fr"), "");
    let with = |mut s: Supporter, f: &dyn Fn(&mut Supporter)| {
        f(&mut s);
        s
    };
    let over_limit = "v".repeat(DEFAULT_MAX_REQUEST + 1024);
    let cases = vec![
        // ---- sizes: just past each bound, and far past it --------------------------------
        Case {
            name: "101 tags (the limit is 100)",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h1"), &|s| {
                s.tags = (0..101).map(|i| format!("t{i}")).collect()
            })),
            code: Code::InvalidArgument,
            message: "at most 100 distinct tags",
        },
        Case {
            name: "50,000 tags in one upsert (600 KB)",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h2"), &|s| {
                s.tags = (0..50_000).map(|i| format!("tag-{i:05}")).collect()
            })),
            code: Code::InvalidArgument,
            message: "tags",
        },
        Case {
            name: "50,000 tags added to an existing supporter",
            who: Who::Member,
            call: Call::Tag(
                existing_id.clone(),
                (0..50_000).map(|i| format!("tag-{i:05}")).collect(),
            ),
            code: Code::InvalidArgument,
            message: "tags",
        },
        Case {
            name: "a 65-character tag",
            who: Who::Member,
            call: Call::Tag(existing_id.clone(), vec!["t".repeat(65)]),
            code: Code::InvalidArgument,
            message: "tags",
        },
        Case {
            name: "33 custom fields (the limit is 32)",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h3"), &|s| {
                for i in 0..33 {
                    s.custom.insert(format!("k{i}"), "v".into());
                }
            })),
            code: Code::InvalidArgument,
            message: "custom",
        },
        Case {
            name: "a custom map of 100,000 entries (1.5 MB)",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h4"), &|s| {
                for i in 0..100_000 {
                    s.custom.insert(format!("key{i:06}"), "v".into());
                }
            })),
            code: Code::InvalidArgument,
            message: "custom",
        },
        Case {
            name: "a custom key with a path in it",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h5"), &|s| {
                s.custom.insert("../../etc/passwd".into(), "v".into());
            })),
            code: Code::InvalidArgument,
            message: "custom",
        },
        Case {
            name: "a 100,000-character custom key",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h6"), &|s| {
                s.custom.insert("k".repeat(100_000), "v".into());
            })),
            code: Code::InvalidArgument,
            message: "custom",
        },
        Case {
            name: "a 1,025-character custom value (the limit is 1,024)",
            who: Who::Member,
            call: Call::Update(
                existing_id.clone(),
                with(fresh("h7"), &|s| {
                    s.custom.insert("shirt".into(), "x".repeat(1025));
                }),
                vec!["custom".into()],
            ),
            code: Code::InvalidArgument,
            message: "custom.shirt",
        },
        Case {
            name: "a 1 MB email",
            who: Who::Member,
            call: Call::Upsert(supporter(
                "A",
                "B",
                &format!("{}@hostile.fr", "a".repeat(1 << 20)),
                "",
            )),
            code: Code::InvalidArgument,
            message: "email",
        },
        Case {
            name: "a 1 MB lookup email",
            who: Who::Member,
            call: Call::LookupEmail(format!("{}@hostile.fr", "a".repeat(1 << 20))),
            code: Code::InvalidArgument,
            message: "email",
        },
        Case {
            name: "a 100 KB lookup phone",
            who: Who::Member,
            call: Call::LookupPhone("6".repeat(100_000)),
            code: Code::InvalidArgument,
            message: "phone",
        },
        Case {
            name: "a 1 MB supporter id",
            who: Who::Member,
            call: Call::Get("a".repeat(1 << 20), vec![]),
            code: Code::InvalidArgument,
            message: "id: must be a supporter id",
        },
        Case {
            name: "an empty supporter id",
            who: Who::Member,
            call: Call::Get(String::new(), vec![]),
            code: Code::InvalidArgument,
            message: "id",
        },
        Case {
            name: "a field mask of 10,000 paths",
            who: Who::Member,
            call: Call::Get(
                existing_id.clone(),
                (0..10_000).map(|i| format!("custom.k{i}")).collect(),
            ),
            code: Code::InvalidArgument,
            message: "fields",
        },
        Case {
            name: "an update mask naming a field with a NUL byte",
            who: Who::Member,
            call: Call::Update(existing_id.clone(), fresh("h8"), vec!["email\0".into()]),
            code: Code::InvalidArgument,
            message: "update_mask",
        },
        // ---- messages past the daemon's size limit ------------------------------------------
        Case {
            name: "an upsert bigger than the 4 MiB request limit",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h9"), &|s| {
                s.custom.insert("note".into(), over_limit.clone());
            })),
            code: Code::ResourceExhausted,
            message: "request message too large",
        },
        Case {
            name: "100,000 tags of 64 characters (6.5 MB)",
            who: Who::Member,
            call: Call::Upsert(with(fresh("h10"), &|s| {
                s.tags = (0..100_000).map(|i| format!("{i:064}")).collect()
            })),
            code: Code::ResourceExhausted,
            message: "the limit is 4194304 bytes",
        },
        Case {
            name: "an import whose first row is bigger than the limit",
            who: Who::Member,
            call: Call::Import(vec![
                with(fresh("h11"), &|s| s.given_name = over_limit.clone()),
                fresh("h12"),
            ]),
            code: Code::ResourceExhausted,
            message: "max_request_bytes",
        },
        // ---- bytes that are not a valid message ---------------------------------------------
        Case {
            name: "100,000 nested groups",
            who: Who::Member,
            call: Call::Raw("/vault.v1.Supporters/Get", nested_groups(100_000)),
            code: Code::Internal,
            message: "recursion limit",
        },
        Case {
            name: "a string field that is not UTF-8",
            who: Who::Member,
            call: Call::Raw("/vault.v1.Supporters/Get", non_utf8_id()),
            code: Code::Internal,
            message: "failed to decode",
        },
        Case {
            name: "a length prefix of 2 GiB over 3 bytes",
            who: Who::Member,
            call: Call::Raw("/vault.v1.Supporters/Get", lying_length()),
            code: Code::Internal,
            message: "failed to decode",
        },
        Case {
            name: "random bytes as an upsert",
            who: Who::Member,
            call: Call::Raw(
                "/vault.v1.Supporters/Upsert",
                (0..4096u32)
                    .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
                    .collect(),
            ),
            code: Code::Internal,
            message: "failed to decode",
        },
        Case {
            name: "a method that does not exist",
            who: Who::Member,
            call: Call::Raw("/vault.v1.Supporters/DropAll", vec![]),
            code: Code::Unimplemented,
            message: "",
        },
        // ---- page tokens --------------------------------------------------------------------
        Case {
            name: "a truncated page token",
            who: Who::Member,
            call: Call::Search(with_token(token[..token.len() - 4].to_owned())),
            code: Code::InvalidArgument,
            message: "page_token",
        },
        Case {
            name: "a page token with a forged MAC",
            who: Who::Member,
            call: Call::Search(with_token(format!("{payload}.{}", flip(mac)))),
            code: Code::InvalidArgument,
            message: "page_token",
        },
        Case {
            name: "a page token with an altered payload",
            who: Who::Member,
            call: Call::Search(with_token(format!("{}.{mac}", flip(payload)))),
            code: Code::InvalidArgument,
            message: "page_token",
        },
        Case {
            name: "another purpose's page token for the same query",
            who: Who::Newsletter,
            call: Call::Search(with_token(token.clone())),
            code: Code::InvalidArgument,
            message: "page_token",
        },
        Case {
            name: "a 1 MB page token",
            who: Who::Member,
            call: Call::Search(with_token("ab".repeat(1 << 19))),
            code: Code::InvalidArgument,
            message: "page_token",
        },
        Case {
            name: "a page token that is only a dot",
            who: Who::Member,
            call: Call::Search(with_token(".".into())),
            code: Code::InvalidArgument,
            message: "page_token",
        },
        Case {
            name: "a search naming 10,000 tags",
            who: Who::Member,
            call: Call::Search(pb::SearchRequest {
                tags_any: (0..10_000).map(|i| format!("t{i}")).collect(),
                ..Default::default()
            }),
            code: Code::InvalidArgument,
            message: "at most",
        },
        Case {
            name: "a page of a million",
            who: Who::Member,
            call: Call::Search(pb::SearchRequest {
                page_size: 1_000_000,
                ..Default::default()
            }),
            code: Code::InvalidArgument,
            message: "page_size: must be at most",
        },
        // ---- Watch cursors ------------------------------------------------------------------
        Case {
            name: "a cursor that is not one",
            who: Who::Member,
            call: Call::Watch("garbage".into()),
            code: Code::InvalidArgument,
            message: "cursor",
        },
        Case {
            name: "a negative cursor",
            who: Who::Member,
            call: Call::Watch("-1.0".into()),
            code: Code::InvalidArgument,
            message: "cursor",
        },
        Case {
            name: "a cursor past u64",
            who: Who::Member,
            call: Call::Watch("99999999999999999999999.0".into()),
            code: Code::InvalidArgument,
            message: "cursor",
        },
        Case {
            name: "a cursor with three parts",
            who: Who::Member,
            call: Call::Watch("1.2.3".into()),
            code: Code::InvalidArgument,
            message: "cursor",
        },
        Case {
            name: "a 1 MB cursor",
            who: Who::Member,
            call: Call::Watch("1".repeat(1 << 20)),
            code: Code::InvalidArgument,
            message: "cursor",
        },
        // ---- purposes -----------------------------------------------------------------------
        Case {
            name: "no purpose declared",
            who: Who::MemberNoPurpose,
            call: Call::Get(existing_id.clone(), vec![]),
            code: Code::InvalidArgument,
            message: "purpose",
        },
        Case {
            name: "a purpose the client was not granted",
            who: Who::MemberOtherPurpose,
            call: Call::Get(existing_id.clone(), vec![]),
            code: Code::PermissionDenied,
            message: "newsletter",
        },
        Case {
            name: "a purpose that does not exist",
            who: Who::MemberUnknownPurpose,
            call: Call::Upsert(fresh("h13")),
            code: Code::InvalidArgument,
            message: "purpose",
        },
        Case {
            name: "a 4 KiB purpose id",
            who: Who::MemberHugePurpose,
            call: Call::Upsert(fresh("h14")),
            code: Code::InvalidArgument,
            message: "purpose",
        },
        Case {
            name: "a purpose without the person's consent",
            who: Who::Newsletter,
            call: Call::Get(existing_id.clone(), vec![]),
            // Answered as for someone not in the file.
            code: Code::NotFound,
            message: "no supporter with id",
        },
        // ---- credentials --------------------------------------------------------------------
        Case {
            name: "a revoked client's token",
            who: Who::Revoked,
            call: Call::Get(existing_id.clone(), vec![]),
            code: Code::Unauthenticated,
            message: "revoked",
        },
        Case {
            // Refused by HTTP/2 before any vault code runs: HTTP 431, which gRPC clients
            // report as UNKNOWN.
            name: "a 20 KB token",
            who: Who::HugeToken,
            call: Call::Get(existing_id.clone(), vec![]),
            code: Code::Unknown,
            message: "431",
        },
        Case {
            name: "a revoked client's write",
            who: Who::Revoked,
            call: Call::Tag(existing_id.clone(), vec!["hijacked".into()]),
            code: Code::Unauthenticated,
            message: "revoked",
        },
        // ---- other people's data, other roles' calls ----------------------------------------
        Case {
            name: "a campaign tool exporting a person's file",
            who: Who::Member,
            call: Call::Export(existing_id.clone()),
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "a campaign tool erasing a person",
            who: Who::Member,
            call: Call::Erase(existing_id.clone()),
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "a campaign tool reading the access log",
            who: Who::Member,
            call: Call::AuditQuery,
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "a campaign tool listing clients",
            who: Who::Member,
            call: Call::ListClients,
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "a campaign tool revoking another client",
            who: Who::Member,
            call: Call::RevokeClient(auditor.client_id.clone()),
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "an auditor reading a supporter",
            who: Who::Auditor,
            call: Call::Get(existing_id.clone(), vec![]),
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "an admin reading a supporter",
            who: Who::Admin,
            call: Call::Get(existing_id.clone(), vec![]),
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "an admin erasing a person",
            who: Who::Admin,
            call: Call::Erase(existing_id.clone()),
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "a DPO exporting someone who does not exist",
            who: Who::Dpo,
            call: Call::Export(unknown_id.clone()),
            code: Code::NotFound,
            message: "",
        },
        Case {
            name: "a DPO erasing someone who does not exist",
            who: Who::Dpo,
            call: Call::Erase(unknown_id.clone()),
            code: Code::NotFound,
            message: "",
        },
        Case {
            name: "consent for someone who does not exist",
            who: Who::Newsletter,
            call: Call::Grant(pb::ConsentRequest {
                subject_id: unknown_id.clone(),
                purpose: "newsletter".into(),
                channel: "email".into(),
                source: "form".into(),
                notice_version: "v1".into(),
                contact_email: "nobody@example.org".into(),
                ..Default::default()
            }),
            code: Code::NotFound,
            message: "",
        },
        Case {
            name: "consent granted by a tool for another tool's purpose",
            who: Who::Member,
            call: Call::Grant(pb::ConsentRequest {
                subject_id: existing_id.clone(),
                purpose: "newsletter".into(),
                channel: "email".into(),
                source: "form".into(),
                notice_version: "v1".into(),
                ..Default::default()
            }),
            code: Code::PermissionDenied,
            message: "",
        },
        Case {
            name: "revoking a client that does not exist",
            who: Who::Admin,
            call: Call::RevokeClient(unknown_id.clone()),
            code: Code::NotFound,
            message: "",
        },
    ];

    let mut names = std::collections::HashSet::new();
    for case in cases {
        assert!(names.insert(case.name), "duplicate case {}", case.name);
        let creds = clients.creds(case.who);
        let err = run(&d, &creds, case.call).await.expect_err(case.name);
        assert_eq!(
            err.code(),
            case.code,
            "{} ({:?}): {}",
            case.name,
            case.who,
            err.message()
        );
        assert!(
            err.message().contains(case.message),
            "{}: message {:?} should contain {:?}",
            case.name,
            err.message(),
            case.message
        );
        // Nothing changed, and the daemon still serves.
        assert_eq!(
            get(&d, &member, &existing_id).await,
            before,
            "{} changed the existing supporter",
            case.name
        );
        assert_eq!(
            all_ids(&d, &member).await,
            ids_before,
            "{} changed the set of supporters",
            case.name
        );
        assert_alive(&mut d, case.name).await;
    }

    // The refused callers can still make normal calls: nothing was left locked or poisoned.
    let page = s.search(authed(with_token(token), &member)).await.unwrap();
    assert!(
        page.metadata()
            .get(vault_proto::metadata::NEXT_PAGE_TOKEN)
            .is_some()
    );
    // The auditor a campaign tool tried to revoke still works, and the log verifies.
    let entries = d.audit_entries(&auditor, pb::QueryRequest::default()).await;
    assert!(!entries.is_empty());
    let verified = d
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "the access log verifies: {verified:?}");
    assert!(d.is_running());
}

/// Starts a daemon whose `[limits]` come from a config file.
fn start_with_limits(dir: &std::path::Path, limits: &str) -> Daemon {
    let config = dir.join("vault.toml");
    std::fs::write(&config, format!("[limits]\n{limits}")).unwrap();
    let data = dir.join("data");
    Daemon::start_with(&data, &["--config", config.to_str().unwrap()])
}

/// The number of access-log entries made by `actor`.
async fn entries_by(d: &Daemon, auditor: &Creds, actor: &str) -> usize {
    d.audit_entries(
        auditor,
        pb::QueryRequest {
            actor: actor.into(),
            ..Default::default()
        },
    )
    .await
    .len()
}

fn retry_after_ms(status: &Status) -> u64 {
    status
        .metadata()
        .get("retry-after-ms")
        .unwrap_or_else(|| panic!("no retry-after-ms in {status:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn open_watch(d: &Daemon, creds: &Creds) -> tonic::Streaming<pb::ChangeEvent> {
    d.supporters()
        .await
        .watch(authed(pb::WatchRequest::default(), creds))
        .await
        .unwrap()
        .into_inner()
}

/// Polls `call` until it succeeds (a dropped stream frees its slot once the daemon has seen
/// the client cancel it); fails after 20 s.
async fn until_ok<F, Fut>(what: &str, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match call().await {
            Ok(()) => return,
            Err(e)
                if e.code() == Code::ResourceExhausted && std::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

#[tokio::test]
async fn limits_refuse_with_resource_exhausted_and_a_retry_hint() {
    let dir = tempfile::tempdir().unwrap();
    // Every client gets 8 calls, then one every 1,000 s: the refusals below cannot turn
    // into successes however slow the machine. Two calls in flight per client, four in
    // the daemon, requests up to 64 KiB.
    let mut d = start_with_limits(
        dir.path(),
        "max_request_bytes = 65536\nrequests_per_second = 0.001\nrequest_burst = 8\n\
         calls_in_flight_per_client = 2\ncalls_in_flight = 4\n",
    );
    // The admin spends 4 of its 8 calls here.
    let rate = d
        .create_client("rate", "campaign-tool", &["membership"])
        .await
        .with_purpose(Some("membership"));
    let busy = d
        .create_client("busy", "campaign-tool", &["membership"])
        .await
        .with_purpose(Some("membership"));
    let other = d
        .create_client("other", "campaign-tool", &["membership"])
        .await
        .with_purpose(Some("membership"));
    let auditor = d.create_client("auditor", "auditor", &[]).await;

    // ---- rate: the burst passes, the next call is refused with a hint ---------------------
    let mut c = d.supporters().await;
    let id = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Roxane", "Limoges", "rate@limits.fr", "")),
                ..Default::default()
            },
            &rate,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let record = get(&d, &rate, &id).await;
    let get_req = || {
        authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None,
            },
            &rate,
        )
    };
    for _ in 2..8 {
        c.get(get_req()).await.unwrap();
    }
    let logged = entries_by(&d, &auditor, &rate.client_id).await;
    assert_eq!(logged, 8, "every admitted call is in the access log");
    for _ in 0..5 {
        let err = c.get(get_req()).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(
            err.message().contains("rate limit exceeded"),
            "{}",
            err.message()
        );
        assert!(err.message().contains("retry after"), "{}", err.message());
        // The next token is 1,000 s away (less the time this test has run).
        let hint = retry_after_ms(&err);
        assert!(
            (900_000..=1_000_000).contains(&hint),
            "retry-after-ms {hint}"
        );
        assert!(
            err.message().contains(&format!("{hint} ms")),
            "{}",
            err.message()
        );
    }
    // A refused write is refused as well, and writes nothing.
    let err = c
        .tag(authed(
            pb::TagRequest {
                id: id.clone(),
                tags: vec!["flood".into()],
            },
            &rate,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    // Refusals reach no data and are not logged; other clients are not affected.
    assert_eq!(entries_by(&d, &auditor, &rate.client_id).await, logged);
    assert_eq!(get(&d, &busy, &id).await, record, "the record is unchanged");
    assert_alive(&mut d, "rate").await;

    // ---- calls in flight per client: two open streams, the third call waits its turn -------
    let w1 = open_watch(&d, &busy).await;
    let w2 = open_watch(&d, &busy).await;
    let err = c
        .get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None,
            },
            &busy,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("too many calls in flight"),
        "{}",
        err.message()
    );
    assert_eq!(retry_after_ms(&err), 100);

    // ---- calls in flight in the daemon: four open streams refuse everyone, even health -----
    let w3 = open_watch(&d, &other).await;
    let w4 = open_watch(&d, &other).await;
    let mut health = HealthClient::new(d.channel().await);
    let err = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("the vault is busy"),
        "{}",
        err.message()
    );
    assert_eq!(retry_after_ms(&err), 100);
    let err = c.get(get_req()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("busy"), "{}", err.message());
    assert!(d.is_running());

    // Closing streams frees their slots.
    drop((w1, w3, w4));
    until_ok("health after the streams closed", || {
        let mut h = health.clone();
        async move {
            h.check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| ())
        }
    })
    .await;
    let busy_get = || {
        let mut c = c.clone();
        let req = authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None,
            },
            &busy,
        );
        async move { c.get(req).await.map(|_| ()) }
    };
    until_ok("a call beside one open stream", busy_get).await;
    drop(w2);

    // ---- message size: one byte over 64 KiB -----------------------------------------------
    let mut big = supporter("Bertille", "Mercier", "big@limits.fr", "");
    big.custom.insert("note".into(), "x".repeat(65536));
    let err = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(big),
                ..Default::default()
            },
            &busy,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("request message too large") && err.message().contains("65536"),
        "{}",
        err.message()
    );
    assert!(
        err.metadata().get("retry-after-ms").is_none(),
        "retrying an oversized message cannot help"
    );
    let err = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("big@limits.fr".into())),
            },
            &busy,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "the oversized upsert wrote nothing"
    );

    // Still serving, and the access log still verifies.
    assert_alive(&mut d, "limits").await;
    let verified = d
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
}

/// One Import stream carries at most `[limits] import_rows_per_call` rows: past it the call
/// ends with RESOURCE_EXHAUSTED saying how far it got, and the rows before stay imported.
#[tokio::test]
async fn an_import_stream_past_its_row_cap_is_refused_and_keeps_the_rows_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_with_limits(dir.path(), "import_rows_per_call = 5\n");
    let member = d.tool("membership").await;
    let rows = |n: usize| -> Vec<Supporter> {
        (0..n)
            .map(|i| supporter("Row", "Capped", &format!("row{i}@example.fr"), ""))
            .collect()
    };
    let over = d
        .supporters()
        .await
        .import(authed(tokio_stream::iter(rows(8)), &member))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert!(
        over.message().contains("at most 5 rows") && over.message().contains("5 created"),
        "{}",
        over.message()
    );
    // The first five are in: the same five again change nothing; the sixth is new.
    let again = d
        .supporters()
        .await
        .import(authed(tokio_stream::iter(rows(6).split_off(1)), &member))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.created, again.unchanged), (1, 4), "{again:?}");
}
