//! A store written by the layout of commit 31eb273 ("store v1", before issue 16's subject
//! rows and compact access-log entries) opens, is served unchanged and its access log still
//! verifies offline: the guard any later layout change and its start-up migrations must pass.
//!
//! The fixture is committed under `tests/fixtures/store-v1/` (tests/fixtures/README.md): for
//! the embedded engine the files of a data directory (`sled/data/`: root key, access-log
//! mark, admin token) and its sled store (`sled/store.tar.gz`, extracted into it), for
//! PostgreSQL a `pg_dump` of the vault's schema (`postgres/dump.sql`) with its data
//! directory (root key, mark, admin token). Beside each: the tokens of its
//! clients (`clients.json`), the access-log export, pin and public key an auditor kept
//! (`audit-export.jsonl`, `audit-pin.json`, `audit-public-key.hex`), and `expected.json`,
//! everything the vault served about the store when it was written, collected by
//! [`collect_view`] on the daemon of that commit.
//!
//! [`a_v1_store_is_served_unchanged_and_its_log_still_verifies`] copies the fixture of the
//! engine `VAULT_TEST_BACKEND` selects into a fresh data directory (or schema), starts
//! today's daemon on it, collects the same view with the same calls and compares it with
//! `expected.json` field by field: every supporter (Get with every field, with a field mask,
//! and through each campaign purpose), lookups, consent status and history, the rights
//! export of each, searches (and one per posting-list term), the change feed of every purpose, clients, purposes, proposals,
//! the record of processing, rights requests, the erasure journal, and the access log
//! (every entry's stored bytes and served fields, per-subject, per-actor and per-call
//! queries, signed checkpoints, the public key, inclusion and consistency proofs). Then
//! `Audit.Verify`, the offline verifier on the kept export and the kept pin, new writes of
//! every kind, a restart, and a new export that verifies offline from entry 0 through the
//! entries written before and after the reopen, extending the kept pin.
//!
//! [`write_fixture_store_v1`] (ignored) wrote the fixture; tests/fixtures/make-store-v1.sh
//! runs it. It refuses to run unless vault-core, vault-server and proto are those of commit
//! 31eb273, and never overwrites a fixture: a later layout must not regenerate it.
//!
//! Time: the daemon runs on the system clock, so the test freezes what would move with the
//! fixture's age ([`CONFIG`]: no retention sweep, no scheduled key rotation or destruction,
//! the longest access-log retention) and judges rights-request deadlines at a fixed
//! `as_of`. Access-log retention cannot be switched off (at most 1095 days), so the test
//! says so and fails once the fixture is older than that (see the README).

// Test helpers unwrap: a failure is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tonic::Status;
use vault_proto::v1 as pb;
use vault_tests::{Creds, Daemon, PgSchema, TestStore, VAULTCTL, authed, leaks, use_store};

/// The commit whose vault-core, vault-server and proto wrote the fixture.
const V1_PRODUCT_COMMIT: &str = "31eb27350ae8aafcad36ad63e224547a1f3cd915";
/// What must equal [`V1_PRODUCT_COMMIT`] for the generator to run.
const PRODUCT_PATHS: &[&str] = &[
    "vault-core",
    "vault-server",
    "proto",
    "Cargo.toml",
    "Cargo.lock",
];
const FIXTURE_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/store-v1");
/// `expected.json`'s format.
const VIEW_FORMAT: &str = "vault-fixture-view/1";
/// The schema name `postgres/dump.sql` uses (the test puts its own in its place).
const DUMP_SCHEMA: &str = "vault_store_v1";
/// Freezes what the daemon would otherwise do because the fixture is old: the retention
/// sweep of supporters, scheduled key rotation and the destruction of retired epochs, and
/// (as far as it goes: 1095 days) access-log pruning. Used to write the fixture too.
const CONFIG: &str = "retention_sweep_hours = 0\naudit_retention_days = 1095\n\n[keys]\n\
                      rotate_every_hours = 0\nbackup_window_hours = 876000\n";
/// The longest access-log retention the daemon accepts, in days.
const MAX_LOG_RETENTION_DAYS: i64 = 1095;
/// Rights-request deadlines are judged as of this time (2026-12-15T00:00:00Z).
const AS_OF_SECONDS: i64 = 1_797_292_800;
/// Hang guard for the change feed (a stream stays open waiting for new events): never a
/// timing assertion, only how long a missing event is waited for before failing.
const FEED_EVENT_WAIT: Duration = Duration::from_secs(60);
/// At generation only: the feed is caught up after this long without an event.
const FEED_IDLE_AT_GENERATION: Duration = Duration::from_secs(3);

const CRM_PURPOSES: [&str; 3] = ["membership", "canvassing", "donations-accounting"];
const SIGNUP_PURPOSES: [&str; 3] = ["event-invitations", "newsletter", "sms-mobilisation"];

// ---- the fixture's clients --------------------------------------------------------------

/// The fixture's clients (`clients.json`; the bootstrap admin's token is the data
/// directory's `admin.token`). Test credentials of a throwaway store, nothing else.
#[derive(Clone, Debug)]
struct Clients {
    admin: String,
    approver: Creds,
    /// campaign-tool: membership, canvassing, donations-accounting.
    crm: Creds,
    /// campaign-tool: event-invitations, newsletter, sms-mobilisation.
    signup: Creds,
    /// campaign-tool: newsletter.
    mailer: Creds,
    /// dpo, declaring data-subject-rights.
    dpo: Creds,
    /// auditor (with a registered certificate fingerprint).
    auditor: Creds,
}

impl Clients {
    fn tool(&self, purpose: &str) -> Creds {
        let client = if CRM_PURPOSES.contains(&purpose) {
            &self.crm
        } else {
            &self.signup
        };
        client.with_purpose(Some(purpose))
    }

    fn to_json(&self) -> Value {
        let c = |c: &Creds| json!({"client_id": c.client_id, "token": c.token});
        json!({
            "approver": c(&self.approver),
            "crm": c(&self.crm),
            "signup": c(&self.signup),
            "mailer": c(&self.mailer),
            "dpo": c(&self.dpo),
            "auditor": c(&self.auditor),
        })
    }

    fn from_json(v: &Value, admin: String) -> Clients {
        let c = |name: &str, purpose: Option<&str>| {
            let token = v[name]["token"].as_str().unwrap().to_owned();
            leaks::watch_secret(&token);
            Creds {
                client_id: v[name]["client_id"].as_str().unwrap().to_owned(),
                token,
                purpose: purpose.map(str::to_owned),
            }
        };
        leaks::watch_secret(&admin);
        Clients {
            admin,
            approver: c("approver", None),
            crm: c("crm", Some("membership")),
            signup: c("signup", Some("event-invitations")),
            mailer: c("mailer", Some("newsletter")),
            dpo: c("dpo", Some("data-subject-rights")),
            auditor: c("auditor", None),
        }
    }
}

/// A supporter of the fixture: its label (stable across engines), id, and the email and
/// phone it is looked up by (as first written, so erased people are looked up too).
#[derive(Clone, Debug)]
struct Subject {
    label: String,
    id: String,
    email: String,
    phone: String,
}

impl Subject {
    fn to_json(&self) -> Value {
        json!({"label": self.label, "id": self.id, "email": self.email, "phone": self.phone})
    }

    fn from_json(v: &Value) -> Subject {
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        Subject {
            label: s("label"),
            id: s("id"),
            email: s("email"),
            phone: s("phone"),
        }
    }
}

// ---- replies as JSON ------------------------------------------------------------------

fn ts(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(format!("{}.{:09}", t.seconds, t.nanos))
    })
}

fn status_json(s: &Status) -> Value {
    json!({"code": format!("{:?}", s.code()), "message": s.message()})
}

/// `{"ok": f(reply)}` or `{"error": {"code", "message"}}`.
fn outcome<T>(r: Result<tonic::Response<T>, Status>, f: impl FnOnce(&T) -> Value) -> Value {
    match r {
        Ok(r) => json!({"ok": f(r.get_ref())}),
        Err(s) => json!({"error": status_json(&s)}),
    }
}

fn sorted(m: &std::collections::HashMap<String, String>) -> BTreeMap<&str, &str> {
    m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn supporter_json(s: &pb::Supporter) -> Value {
    json!({
        "id": s.id,
        "given_name": s.given_name,
        "family_name": s.family_name,
        "email": s.email,
        "phone": s.phone,
        "address": s.address.as_ref().map(|a| json!({
            "line1": a.line1, "line2": a.line2, "postcode": a.postcode, "city": a.city,
            "country": a.country,
        })),
        "tags": s.tags,
        "custom": sorted(&s.custom),
        "source": s.source,
        "created_at": ts(s.created_at.as_ref()),
        "updated_at": ts(s.updated_at.as_ref()),
        "consents": s.consents.len(),
        "visible_fields": s.visible_fields.as_ref().map(|m| m.paths.clone()),
    })
}

fn consent_event_json(e: &pb::ConsentEvent) -> Value {
    json!({
        "subject_id": e.subject_id, "seq": e.seq, "purpose": e.purpose, "channel": e.channel,
        "kind": e.kind, "at": ts(e.at.as_ref()), "source": e.source,
        "notice_version": e.notice_version, "client_id": e.client_id,
    })
}

fn consent_status_json(r: &pb::ConsentStatusResponse) -> Value {
    let states: Vec<Value> = r
        .states
        .iter()
        .map(|s| {
            json!({
                "purpose": s.purpose, "channel": s.channel, "active": s.active,
                "last_event_seq": s.last_event_seq, "since": ts(s.since.as_ref()),
            })
        })
        .collect();
    json!({"subject_id": r.subject_id, "states": states})
}

fn consent_history_json(r: &pb::ConsentHistoryResponse) -> Value {
    let events: Vec<Value> = r.events.iter().map(consent_event_json).collect();
    json!({"subject_id": r.subject_id, "events": events})
}

fn ticket_json(r: &pb::RightsRequest) -> Value {
    json!({
        "id": r.id, "kind": r.kind, "received_at": ts(r.received_at.as_ref()),
        "due_at": ts(r.due_at.as_ref()), "subject_id": r.subject_id, "status": r.status,
        "closed_at": ts(r.closed_at.as_ref()), "action": r.action, "reference": r.reference,
        "overdue": r.overdue, "opened_by": r.opened_by, "closed_by": r.closed_by,
    })
}

fn client_json(c: &pb::Client) -> Value {
    json!({
        "id": c.id, "name": c.name, "role": c.role, "purposes": c.purposes,
        "created_at": ts(c.created_at.as_ref()), "revoked_at": ts(c.revoked_at.as_ref()),
        "cert_sha256": c.cert_sha256, "expires_at": ts(c.expires_at.as_ref()),
    })
}

fn purpose_json(p: &pb::Purpose) -> Value {
    json!({
        "id": p.id, "description": p.description, "lawful_basis": p.lawful_basis,
        "special_category_basis": p.special_category_basis, "channels": p.channels,
        "retention_days": p.retention_days, "fields": p.fields,
        "reaches_collected_for": p.reaches_collected_for,
    })
}

fn proposal_json(p: &pb::Proposal) -> Value {
    let change = match &p.change {
        Some(pb::proposal::Change::CreateClient(c)) => json!({"create_client": client_json(c)}),
        Some(pb::proposal::Change::PutPurpose(p)) => json!({"put_purpose": purpose_json(p)}),
        None => Value::Null,
    };
    json!({
        "id": p.id, "status": p.status, "proposed_by": p.proposed_by,
        "proposed_at": ts(p.proposed_at.as_ref()), "expires_at": ts(p.expires_at.as_ref()),
        "approved_by": p.approved_by, "approved_at": ts(p.approved_at.as_ref()),
        "change_sha256": p.change_sha256, "widens": p.widens, "summary": p.summary,
        "change": change, "previous_purpose": p.previous_purpose.as_ref().map(purpose_json),
    })
}

/// The stored bytes as text (v1 entries are JSON lines), or hex when they are not UTF-8.
fn raw_text(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("(not UTF-8) {}", hex::encode(raw)),
    }
}

fn entry_json(e: &pb::AuditEntry) -> Value {
    json!({
        "seq": e.seq, "at": ts(e.at.as_ref()), "request_id": e.request_id, "actor": e.actor,
        "role": e.role, "action": e.action, "purpose": e.purpose,
        "subject_ids": e.subject_ids, "fields": e.fields, "outcome": e.outcome,
        "reason": e.reason, "request_ref": e.request_ref, "raw": raw_text(&e.raw),
    })
}

fn checkpoint_json(c: &pb::SignedCheckpoint) -> Value {
    json!({
        "size": c.size, "root": hex::encode(&c.root), "last_leaf": hex::encode(&c.last_leaf),
        "at": ts(c.at.as_ref()), "at_us": c.at_us, "signature": hex::encode(&c.signature),
    })
}

fn change_json(e: &pb::ChangeEvent) -> Value {
    json!({
        "cursor": e.cursor, "subject_id": e.subject_id, "kind": e.kind,
        "at": ts(e.at.as_ref()), "purpose": e.purpose, "channel": e.channel,
    })
}

fn hexes(hashes: &[Vec<u8>]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

// ---- calls ----------------------------------------------------------------------------

fn get_req(id: &str, mask: Option<&[&str]>) -> pb::GetRequest {
    pb::GetRequest {
        id: id.to_owned(),
        fields: mask.map(|paths| prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    }
}

fn lookup_req(key: pb::lookup_request::Key) -> pb::LookupRequest {
    pb::LookupRequest { key: Some(key) }
}

async fn get(d: &Daemon, creds: &Creds, id: &str, mask: Option<&[&str]>) -> Value {
    outcome(
        d.supporters()
            .await
            .get(authed(get_req(id, mask), creds))
            .await,
        supporter_json,
    )
}

async fn lookup(d: &Daemon, creds: &Creds, key: pb::lookup_request::Key) -> Value {
    outcome(
        d.supporters()
            .await
            .lookup(authed(lookup_req(key), creds))
            .await,
        supporter_json,
    )
}

/// Every page of a search (`page_size` 4, so page tokens are exercised).
async fn search_all(d: &Daemon, creds: &Creds, mut req: pb::SearchRequest) -> Value {
    req.page_size = 4;
    let mut c = d.supporters().await;
    let mut found = Vec::new();
    let mut pages = 0;
    loop {
        let resp = match c.search(authed(req.clone(), creds)).await {
            Ok(r) => r,
            Err(s) => return json!({"error": status_json(&s), "after_pages": pages}),
        };
        let next = resp
            .metadata()
            .get("x-vault-next-page-token")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut stream = resp.into_inner();
        loop {
            match stream.message().await {
                Ok(Some(s)) => found.push(supporter_json(&s)),
                Ok(None) => break,
                Err(s) => return json!({"error": status_json(&s), "after_pages": pages}),
            }
        }
        pages += 1;
        match next {
            Some(t) => req.page_token = t,
            None => return json!({"pages": pages, "supporters": found}),
        }
    }
}

/// The ids a search finds (one page of up to 10,000), or its refusal.
async fn search_ids(d: &Daemon, creds: &Creds, mut req: pb::SearchRequest) -> Value {
    req.page_size = 10_000;
    let resp = match d.supporters().await.search(authed(req, creds)).await {
        Ok(r) => r,
        Err(s) => return json!({"error": status_json(&s)}),
    };
    let more = resp.metadata().get("x-vault-next-page-token").is_some();
    let mut stream = resp.into_inner();
    let mut ids = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(s)) => ids.push(s.id),
            Ok(None) => break,
            Err(s) => return json!({"error": status_json(&s), "after": ids}),
        }
    }
    json!({"ids": ids, "more": more})
}

/// The channels of a default purpose.
fn channels_of(purpose: &str) -> &'static [&'static str] {
    match purpose {
        "membership" => &["email", "sms", "phone", "post", "in-person"],
        "canvassing" => &["in-person"],
        "donations-accounting" => &["post"],
        "event-invitations" => &["email", "sms"],
        "newsletter" => &["email"],
        "sms-mobilisation" => &["sms"],
        other => panic!("no channels known for {other}"),
    }
}

/// The change feed of `creds`' purpose from `cursor`: `count` events (waiting at most
/// [`FEED_EVENT_WAIT`] for each), or, when `count` is `None` (generation), until none came
/// for [`FEED_IDLE_AT_GENERATION`].
/// A stream that fails ends the list with the error (compared like any event).
async fn feed(d: &Daemon, creds: &Creds, cursor: &str, count: Option<usize>) -> Vec<Value> {
    let mut stream = d
        .supporters()
        .await
        .watch(authed(
            pb::WatchRequest {
                cursor: cursor.to_owned(),
            },
            creds,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    loop {
        if count.is_some_and(|n| out.len() >= n) {
            return out;
        }
        let wait = if count.is_some() {
            FEED_EVENT_WAIT
        } else {
            FEED_IDLE_AT_GENERATION
        };
        match tokio::time::timeout(wait, stream.message()).await {
            Ok(Ok(Some(e))) => out.push(change_json(&e)),
            Ok(Ok(None)) => return out,
            Ok(Err(s)) => {
                out.push(json!({"error": status_json(&s)}));
                return out;
            }
            Err(_) if count.is_none() => return out,
            Err(_) => panic!(
                "the change feed of {:?} from {cursor:?} delivered {} of the {} events \
                 expected (none for {FEED_EVENT_WAIT:?})",
                creds.purpose,
                out.len(),
                count.unwrap()
            ),
        }
    }
}

async fn audit_query(d: &Daemon, creds: &Creds, q: pb::QueryRequest) -> Vec<pb::AuditEntry> {
    d.audit_entries(creds, q).await
}

fn as_of() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: AS_OF_SECONDS,
        nanos: 0,
    }
}

fn drop_key(mut v: Value, key: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
    v
}

/// A rights export document without what changes on every call: `generated_at`, and the
/// access-log entries written since `log_size` (the view's own reads).
fn export_doc(doc: &[u8], log_size: u64) -> Value {
    let mut v: Value = serde_json::from_slice(doc).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("generated_at");
    if let Some(Value::Array(entries)) = o.get_mut("access_log") {
        entries.retain(|e| e["seq"].as_u64().is_some_and(|s| s < log_size));
    }
    v
}

/// An erasure journal file with its rows decoded (key: the subject id; value: the receipt)
/// and without `as_of_us` (the time of the export).
fn journal_doc(raw: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(raw).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("as_of_us");
    if let Some(Value::Array(rows)) = o.get_mut("rows") {
        for row in rows {
            let decoded = |k: &str| {
                let bytes = hex::decode(row[k].as_str().unwrap_or_default()).unwrap_or_default();
                serde_json::from_slice::<Value>(&bytes)
                    .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
            };
            let (key, value) = (decoded("key_hex"), decoded("value_hex"));
            row["key"] = key;
            row["value"] = value;
        }
    }
    v
}

/// Everything the vault serves about the fixture's people, and its access log. The same
/// calls, in the same order, when writing the fixture and in the test. `expected` (the
/// expected view, in the test) gives the log bounds and how many change-feed events to read.
async fn collect_view(
    d: &Daemon,
    c: &Clients,
    subjects: &[Subject],
    expected: Option<&Value>,
) -> Value {
    let bound = |k: &str| expected.map(|e| e["log"]["bounds"][k].as_u64().unwrap());
    let verify = d
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &c.auditor))
        .await
        .unwrap()
        .into_inner();
    let view_log_size = bound("view_log_size").unwrap_or(verify.tree_size);
    let verified =
        json!({"ok": verify.ok, "first_seq": verify.first_seq, "problem": verify.problem});

    // Each person, as every caller sees them.
    let mut people = serde_json::Map::new();
    for s in subjects {
        use pb::lookup_request::Key;
        let mut v = serde_json::Map::new();
        v.insert("subject".into(), s.to_json());
        v.insert("dpo_get".into(), get(d, &c.dpo, &s.id, None).await);
        v.insert(
            "dpo_get_masked".into(),
            get(
                d,
                &c.dpo,
                &s.id,
                Some(&["email", "tags", "address.postcode"]),
            )
            .await,
        );
        for purpose in CRM_PURPOSES.iter().chain(&SIGNUP_PURPOSES) {
            v.insert(
                format!("get_as_{purpose}"),
                get(d, &c.tool(purpose), &s.id, None).await,
            );
        }
        if !s.email.is_empty() {
            v.insert(
                "dpo_lookup_email".into(),
                lookup(d, &c.dpo, Key::Email(s.email.to_uppercase())).await,
            );
            v.insert(
                "mailer_lookup_email".into(),
                lookup(d, &c.mailer, Key::Email(s.email.clone())).await,
            );
        }
        if !s.phone.is_empty() {
            v.insert(
                "dpo_lookup_phone".into(),
                lookup(d, &c.dpo, Key::Phone(s.phone.clone())).await,
            );
            v.insert(
                "member_lookup_phone".into(),
                lookup(d, &c.tool("membership"), Key::Phone(s.phone.clone())).await,
            );
        }
        let status = pb::ConsentStatusRequest {
            subject_id: s.id.clone(),
        };
        v.insert(
            "dpo_consent_status".into(),
            outcome(
                d.consent()
                    .await
                    .status(authed(status.clone(), &c.dpo))
                    .await,
                consent_status_json,
            ),
        );
        v.insert(
            "newsletter_consent_status".into(),
            outcome(
                d.consent()
                    .await
                    .status(authed(status, &c.tool("newsletter")))
                    .await,
                consent_status_json,
            ),
        );
        v.insert(
            "dpo_consent_history".into(),
            outcome(
                d.consent()
                    .await
                    .history(authed(
                        pb::ConsentHistoryRequest {
                            subject_id: s.id.clone(),
                        },
                        &c.dpo,
                    ))
                    .await,
                consent_history_json,
            ),
        );
        v.insert(
            "dpo_rights_export".into(),
            outcome(
                d.rights()
                    .await
                    .export(authed(
                        pb::ExportRequest {
                            subject: Some(pb::export_request::Subject::SubjectId(s.id.clone())),
                            format: String::new(),
                        },
                        &c.dpo,
                    ))
                    .await,
                |r| {
                    json!({
                        "format": r.format,
                        "subject_id": r.subject_id,
                        "document": export_doc(&r.document, view_log_size),
                    })
                },
            ),
        );
        people.insert(s.label.clone(), Value::Object(v));
    }

    // Segments.
    let searches: Vec<(&str, pb::SearchRequest)> = vec![
        (
            "membership",
            pb::SearchRequest {
                tags_any: vec!["bénévole".into(), "jeunes".into()],
                ..Default::default()
            },
        ),
        (
            "membership",
            pb::SearchRequest {
                tags_all: vec!["tractage".into()],
                ..Default::default()
            },
        ),
        (
            "membership",
            pb::SearchRequest {
                postcodes: vec!["75005".into(), "67000".into(), "75011".into()],
                ..Default::default()
            },
        ),
        ("membership", pb::SearchRequest::default()),
        (
            "canvassing",
            pb::SearchRequest {
                tags_any: vec!["bénévole".into(), "élu".into()],
                ..Default::default()
            },
        ),
        (
            "donations-accounting",
            pb::SearchRequest {
                postcodes: vec!["75007".into(), "68000".into(), "97400".into()],
                ..Default::default()
            },
        ),
        (
            "event-invitations",
            pb::SearchRequest {
                postcodes: vec!["75011".into(), "75014".into(), "75018".into()],
                ..Default::default()
            },
        ),
        (
            "event-invitations",
            pb::SearchRequest {
                tags_any: vec!["bénévole".into(), "jeunes".into(), "tractage".into()],
                consent_channel: "sms".into(),
                ..Default::default()
            },
        ),
        ("newsletter", pb::SearchRequest::default()),
        ("sms-mobilisation", pb::SearchRequest::default()),
    ];
    let mut segments = Vec::new();
    for (purpose, req) in searches {
        let label = format!(
            "{purpose} all={:?} any={:?} postcodes={:?} channel={:?}",
            req.tags_all, req.tags_any, req.postcodes, req.consent_channel
        );
        let found = search_all(d, &c.tool(purpose), req).await;
        segments.push(json!({"search": label, "result": found}));
    }

    // One search per term of the posting lists (every tag and postcode the people carry,
    // everyone a purpose reaches, on each of its channels), so a lost or extra posting shows.
    let mut tags = std::collections::BTreeSet::new();
    let mut postcodes = std::collections::BTreeSet::new();
    for person in people.values() {
        let shown = &person["dpo_get"]["ok"];
        for t in shown["tags"].as_array().into_iter().flatten() {
            tags.insert(t.as_str().unwrap().to_owned());
        }
        if let Some(pc) = shown["address"]["postcode"]
            .as_str()
            .filter(|p| !p.is_empty())
        {
            postcodes.insert(pc.to_owned());
        }
    }
    let mut by_term = serde_json::Map::new();
    for purpose in CRM_PURPOSES.iter().chain(&SIGNUP_PURPOSES) {
        // A posting is per term and person, whatever the purpose: each term is searched
        // under the purposes that together reach every person carrying it.
        let (sees_tags, sees_postcode) = (
            matches!(*purpose, "membership" | "event-invitations" | "newsletter"),
            matches!(
                *purpose,
                "membership" | "donations-accounting" | "event-invitations"
            ),
        );
        let mut terms: Vec<(String, pb::SearchRequest)> =
            vec![("everyone".into(), pb::SearchRequest::default())];
        for channel in channels_of(purpose) {
            terms.push((
                format!("channel {channel}"),
                pb::SearchRequest {
                    consent_channel: (*channel).into(),
                    ..Default::default()
                },
            ));
        }
        for tag in tags.iter().filter(|_| sees_tags) {
            terms.push((
                format!("tag {tag}"),
                pb::SearchRequest {
                    tags_any: vec![tag.clone()],
                    ..Default::default()
                },
            ));
        }
        for pc in postcodes.iter().filter(|_| sees_postcode) {
            terms.push((
                format!("postcode {pc}"),
                pb::SearchRequest {
                    postcodes: vec![pc.clone()],
                    ..Default::default()
                },
            ));
        }
        for (term, req) in terms {
            by_term.insert(
                format!("{purpose}: {term}"),
                search_ids(d, &c.tool(purpose), req).await,
            );
        }
    }

    // The change feed of every purpose a tool uses.
    let mut feeds = serde_json::Map::new();
    for purpose in CRM_PURPOSES.iter().chain(&SIGNUP_PURPOSES) {
        let count = expected.map(|e| e["feeds"][*purpose].as_array().map_or(0, Vec::len));
        feeds.insert(
            (*purpose).to_owned(),
            Value::Array(feed(d, &c.tool(purpose), "", count).await),
        );
    }

    // What an admin and the DPO see of the whole vault.
    let mut admin = d.admin().await;
    let clients = outcome(
        admin
            .list_clients(authed(pb::ListClientsRequest {}, &c.admin))
            .await,
        |r| json!(r.clients.iter().map(client_json).collect::<Vec<_>>()),
    );
    let purposes = outcome(
        admin
            .list_purposes(authed(pb::ListPurposesRequest {}, &c.admin))
            .await,
        |r| json!(r.purposes.iter().map(purpose_json).collect::<Vec<_>>()),
    );
    let proposals = outcome(
        admin
            .list_proposals(authed(pb::ListProposalsRequest { all: true }, &c.admin))
            .await,
        |r| json!(r.proposals.iter().map(proposal_json).collect::<Vec<_>>()),
    );
    let report = outcome(
        admin
            .processing_report(authed(
                pb::ProcessingReportRequest {
                    format: "json".into(),
                },
                &c.admin,
            ))
            .await,
        |r| {
            // The record names where the data is: the test's data directory, or its
            // database and schema.
            let mut text = String::from_utf8_lossy(&r.document)
                .replace(&d.data_dir.display().to_string(), "<data dir>");
            if let Some(pg) = vault_tests::pg_schema_of(&d.data_dir) {
                let database =
                    vault_core::storage::postgres::DatabaseUrl::new(pg.url.as_str()).redacted();
                text = text
                    .replace(&database, "<database>")
                    .replace(&pg.schema, "<schema>");
            }
            json!({
                "format": r.format,
                "document": drop_key(serde_json::from_str(&text).unwrap(), "generated_at_us"),
            })
        },
    );
    let journal = {
        let mut stream = admin
            .export_erasure_journal(authed(pb::ExportErasureJournalRequest {}, &c.admin))
            .await
            .unwrap()
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            bytes.extend_from_slice(&chunk.data);
        }
        journal_doc(&bytes)
    };
    let mut rights = d.rights().await;
    let mut tickets = serde_json::Map::new();
    for (name, req) in [
        (
            "all",
            pb::ListRequestsRequest {
                overdue_only: false,
                include_closed: true,
                as_of: Some(as_of()),
            },
        ),
        (
            "open",
            pb::ListRequestsRequest {
                overdue_only: false,
                include_closed: false,
                as_of: Some(as_of()),
            },
        ),
        (
            "overdue",
            pb::ListRequestsRequest {
                overdue_only: true,
                include_closed: false,
                as_of: Some(as_of()),
            },
        ),
    ] {
        tickets.insert(
            name.into(),
            outcome(rights.list_requests(authed(req, &c.dpo)).await, |r| {
                json!(r.requests.iter().map(ticket_json).collect::<Vec<_>>())
            }),
        );
    }

    // The access log.
    let all = audit_query(d, &c.auditor, pb::QueryRequest::default()).await;
    let entries = bound("entries").unwrap_or(all.len() as u64);
    let mut audit = d.audit().await;
    let checkpoints = audit
        .checkpoints(authed(pb::CheckpointsRequest { since_seq: 0 }, &c.auditor))
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    let proof_size = bound("proof_size").unwrap_or_else(|| {
        checkpoints
            .iter()
            .map(|c| c.size)
            .filter(|s| *s <= entries)
            .max()
            .unwrap_or(0)
    });
    let checkpoints_up_to = bound("checkpoints_up_to")
        .unwrap_or_else(|| checkpoints.iter().map(|c| c.size).max().unwrap_or(0));
    let within = |es: Vec<pb::AuditEntry>| -> Vec<u64> {
        es.iter().map(|e| e.seq).filter(|s| *s < entries).collect()
    };
    let mut by_subject = serde_json::Map::new();
    for s in subjects {
        let q = pb::QueryRequest {
            subject_id: s.id.clone(),
            ..Default::default()
        };
        by_subject.insert(
            s.label.clone(),
            json!(within(audit_query(d, &c.auditor, q).await)),
        );
    }
    let by_actor = within(
        audit_query(
            d,
            &c.dpo,
            pb::QueryRequest {
                actor: c.crm.client_id.clone(),
                ..Default::default()
            },
        )
        .await,
    );
    let by_action = within(
        audit_query(
            d,
            &c.auditor,
            pb::QueryRequest {
                action: "Rights.Erase".into(),
                ..Default::default()
            },
        )
        .await,
    );
    let public_key = audit
        .public_key(authed(pb::PublicKeyRequest {}, &c.auditor))
        .await
        .unwrap()
        .into_inner();
    let mut inclusion = serde_json::Map::new();
    let mut seqs: Vec<u64> = (0..proof_size).step_by(37).collect();
    seqs.extend(proof_size.checked_sub(1));
    for seq in seqs {
        let r = audit
            .inclusion_proof(authed(
                pb::InclusionProofRequest {
                    seq,
                    tree_size: proof_size,
                },
                &c.auditor,
            ))
            .await;
        inclusion.insert(seq.to_string(), outcome(r, |p| json!(hexes(&p.hashes))));
    }
    let mut consistency = serde_json::Map::new();
    for from in checkpoints
        .iter()
        .map(|c| c.size)
        .filter(|s| *s <= proof_size)
    {
        let r = audit
            .consistency_proof(authed(
                pb::ConsistencyProofRequest {
                    from_size: from,
                    to_size: proof_size,
                },
                &c.auditor,
            ))
            .await;
        consistency.insert(from.to_string(), outcome(r, |p| json!(hexes(&p.hashes))));
    }
    let log = json!({
        "bounds": {
            "view_log_size": view_log_size,
            "entries": entries,
            "proof_size": proof_size,
            "checkpoints_up_to": checkpoints_up_to,
        },
        "verify_before_view": verified,
        "entries": all.iter().take(entries as usize).map(entry_json).collect::<Vec<_>>(),
        "served_entries_at_least": (all.len() as u64).min(entries),
        "by_subject": by_subject,
        "by_crm_actor": by_actor,
        "by_action_rights_erase": by_action,
        "checkpoints": checkpoints
            .iter()
            .filter(|c| c.size <= checkpoints_up_to)
            .map(checkpoint_json)
            .collect::<Vec<_>>(),
        "public_key": {
            "public_key": hex::encode(&public_key.public_key),
            "origin": public_key.origin,
            "vkey": public_key.vkey,
        },
        "inclusion_proofs": inclusion,
        "consistency_proofs": consistency,
    });

    json!({
        "people": people,
        "segments": segments,
        "segments_by_term": by_term,
        "feeds": feeds,
        "clients": clients,
        "purposes": purposes,
        "proposals": proposals,
        "processing_report": report,
        "erasure_journal": journal,
        "rights_requests": tickets,
        "log": log,
    })
}

/// Every difference between `expected` and `got`, by JSON path.
fn differences(path: &str, expected: &Value, got: &Value, out: &mut Vec<String>) {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => differences(&p, ev, gv, out),
                    None => out.push(format!("{p}: expected {ev}, missing")),
                }
            }
            for k in g.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}.{k}: not expected, got {}", g[k]));
            }
        }
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                differences(&format!("{path}[{i}]"), ev, gv, out);
            }
        }
        _ if expected == got => {}
        _ => {
            let cut = |v: &Value| {
                let s = v.to_string();
                if s.chars().count() > 400 {
                    format!("{}…", s.chars().take(400).collect::<String>())
                } else {
                    s
                }
            };
            out.push(format!(
                "{path}: expected {}, got {}",
                cut(expected),
                cut(got)
            ));
        }
    }
}

fn assert_same(what: &str, expected: &Value, got: &Value) {
    let mut diffs = Vec::new();
    differences(what, expected, got, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{} difference(s) between the v1 fixture's expected view and what today's daemon \
         serves on it; the first ones:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---- files and tools --------------------------------------------------------------------

fn fixture_dir(engine: &str) -> PathBuf {
    Path::new(FIXTURE_ROOT).join(engine)
}

fn engine() -> &'static str {
    if vault_tests::on_postgres() {
        "postgres"
    } else {
        "sled"
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn vaultctl(
    addr: Option<std::net::SocketAddr>,
    token: &str,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = Command::new(&*VAULTCTL);
    cmd.args(args)
        .env_remove("VAULT_PURPOSE")
        .env_remove("VAULT_DATA_DIR");
    match addr {
        Some(a) => cmd.env("VAULT_ADDR", format!("http://{a}")),
        // The offline verifier needs no daemon: an address nothing listens on.
        None => cmd.env("VAULT_ADDR", "http://127.0.0.1:1"),
    };
    if token.is_empty() {
        cmd.env_remove("VAULT_TOKEN");
    } else {
        cmd.env("VAULT_TOKEN", token);
    }
    cmd.output().unwrap()
}

fn succeeded(what: &str, out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("vault.toml");
    std::fs::write(&path, CONFIG).unwrap();
    path
}

fn start(data_dir: &Path, config: &Path) -> Daemon {
    Daemon::start_with(data_dir, &["--config", config.to_str().unwrap()])
}

/// The entry lines of an offline export (not the header, checkpoint or witnessed lines).
fn export_entries(text: &str) -> Vec<&str> {
    text.lines()
        .skip(1)
        .filter(|l| !l.starts_with("{\"checkpoint\":") && !l.starts_with("{\"witnessed\":"))
        .collect()
}

// ---- the test ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_store_is_served_unchanged_and_its_log_still_verifies() {
    let engine = engine();
    let fixture = fixture_dir(engine);
    let read = |name: &str| std::fs::read_to_string(fixture.join(name)).unwrap();
    let expected: Value = serde_json::from_str(&read("expected.json")).unwrap();
    assert_eq!(expected["format"], VIEW_FORMAT);
    assert_eq!(expected["written_by"]["engine"], engine);
    assert_eq!(expected["written_by"]["product_commit"], V1_PRODUCT_COMMIT);
    let written_at = expected["written_by"]["at_unix"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        now - written_at < (MAX_LOG_RETENTION_DAYS - 1) * 86_400,
        "the v1 fixture was written more than {MAX_LOG_RETENTION_DAYS} days ago: access-log \
         retention (at most {MAX_LOG_RETENTION_DAYS} days, not configurable further) now prunes \
         its entries at start, so this test can no longer compare them. \
         tests/fixtures/README.md says what to do (never regenerate with a later layout)."
    );

    // A fresh data directory (and schema) holding the fixture.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&fixture.join("data"), &dir);
    if engine == "sled" {
        let untar = Command::new("tar")
            .arg("-xzf")
            .arg(fixture.join("store.tar.gz"))
            .arg("-C")
            .arg(&dir)
            .status()
            .expect("tar");
        assert!(untar.success(), "tar -xzf store.tar.gz");
    }
    set_mode(&dir, 0o700);
    for secret in ["root.key", "root.key.audit-mark", "admin.token"] {
        set_mode(&dir.join(secret), 0o600);
    }
    if let vault_tests::Backend::Postgres(url) = vault_tests::backend() {
        let pg = PgSchema::new(&url);
        let dump = read("dump.sql");
        assert!(dump.contains(DUMP_SCHEMA));
        // psql's meta-commands (`\restrict`, `\unrestrict` of pg_dump 15.14 and later) are
        // not SQL: the rest is.
        let sql: String = dump
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace(DUMP_SCHEMA, &pg.schema);
        pg.execute(&sql);
        use_store(&dir, TestStore::Postgres(pg));
    } else {
        assert_eq!(engine, "sled");
        use_store(&dir, TestStore::Embedded);
    }
    let config = config_file(tmp.path());
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let c = Clients::from_json(&serde_json::from_str(&read("clients.json")).unwrap(), admin);
    vault_tests::adopt_approver(&dir, c.approver.clone());
    let subjects: Vec<Subject> = expected["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(Subject::from_json)
        .collect();
    // The daemon's log must not show the fixture's people either.
    for person in expected["view"]["people"].as_object().unwrap().values() {
        for k in ["given_name", "family_name"] {
            if let Some(name) = person["dpo_get"]["ok"][k].as_str() {
                leaks::watch_name(name);
            }
        }
    }
    let key_file = tmp.path().join("key.pub");
    std::fs::write(&key_file, read("audit-public-key.hex")).unwrap();
    let kept_pin = fixture.join("audit-pin.json");
    let kept_export = fixture.join("audit-export.jsonl");

    // Today's daemon opens (and, once there are migrations, migrates) the v1 store. It
    // knows the store's bootstrap admin: no new admin token.
    let mut d = start(&dir, &config);
    assert!(!d.logs().contains("wrote bootstrap admin token"));
    let verify = d
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &c.auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(
        verify.ok,
        "Audit.Verify on the reopened v1 store: {verify:?}"
    );
    assert_eq!(verify.first_seq, 0);

    // Everything served as it was.
    let got = collect_view(&d, &c, &subjects, Some(&expected["view"])).await;
    assert_same("view", &expected["view"], &got);

    // The kept export verifies offline with today's verifier, and the log served today
    // extends the checkpoint the auditor pinned.
    let key = key_file.to_str().unwrap();
    let offline = vaultctl(
        None,
        "",
        &[
            "audit",
            "verify",
            kept_export.to_str().unwrap(),
            "--public-key",
            key,
            "--whole",
        ],
    );
    let report = succeeded("vaultctl audit verify (the kept v1 export)", &offline);
    assert_eq!(report["ok"], true, "{report}");
    let since = vaultctl(
        Some(d.addr),
        &c.auditor.token,
        &[
            "audit",
            "verify-since",
            kept_pin.to_str().unwrap(),
            "--public-key",
            key,
        ],
    );
    let report = succeeded("vaultctl audit verify-since (the kept v1 pin)", &since);
    assert_eq!(report["ok"], true, "{report}");

    // New writes of every kind work on the reopened store.
    let pins: Value = serde_json::from_str(&read("audit-pin.json")).unwrap();
    let new = new_writes(&d, &c, &subjects, &expected).await;

    // Reopened again: old and new data served, the log verifies.
    assert!(d.terminate().success());
    d = start(&dir, &config);
    assert!(!d.logs().contains("wrote bootstrap admin token"));
    let dpo_get = |id: String| {
        let d = &d;
        let dpo = c.dpo.clone();
        async move { get(d, &dpo, &id, None).await }
    };
    let p05 = subjects.iter().find(|s| s.label == "p05").unwrap();
    let mut after = dpo_get(p05.id.clone()).await;
    let mut before = expected["view"]["people"]["p05"]["dpo_get"]["ok"].clone();
    // The one field the new writes changed.
    assert_eq!(
        after["ok"]["tags"],
        json!(["bénévole", "migration-v1"]),
        "{after}"
    );
    for v in [&mut after["ok"], &mut before] {
        for k in ["tags", "updated_at"] {
            v.as_object_mut().unwrap().remove(k);
        }
    }
    assert_eq!(after["ok"], before);
    for id in &new {
        assert!(dpo_get(id.clone()).await.get("ok").is_some(), "{id}");
    }
    let verify = d
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &c.auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(
        verify.ok,
        "Audit.Verify after the new writes and a restart: {verify:?}"
    );

    // A new export: verifies offline from entry 0, through the v1 entries and those written
    // after the reopen, and extends the kept pin; its first entries are the kept export's,
    // byte for byte.
    let export = tmp.path().join("after.jsonl");
    succeeded(
        "vaultctl audit export",
        &vaultctl(
            Some(d.addr),
            &c.auditor.token,
            &["audit", "export", "--out", export.to_str().unwrap()],
        ),
    );
    let report = succeeded(
        "vaultctl audit verify --since (the new export, the kept pin)",
        &vaultctl(
            None,
            "",
            &[
                "audit",
                "verify",
                export.to_str().unwrap(),
                "--public-key",
                key,
                "--whole",
                "--since",
                kept_pin.to_str().unwrap(),
            ],
        ),
    );
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["extends"]["size"], pins["size"], "{report}");
    assert_eq!(report["first_seq"], 0, "{report}");
    let kept = read("audit-export.jsonl");
    let now_text = std::fs::read_to_string(&export).unwrap();
    let (kept_entries, now_entries) = (export_entries(&kept), export_entries(&now_text));
    assert!(
        now_entries.len() > kept_entries.len(),
        "the new export holds the entries written after the reopen"
    );
    assert!(
        now_entries.starts_with(&kept_entries),
        "the kept export's entries are the first entries of today's export, byte for byte"
    );
    assert_eq!(
        report["entries"].as_u64(),
        Some(now_entries.len() as u64),
        "{report}"
    );
    assert!(d.terminate().success());
}

/// Writes of every kind on the reopened store; returns the ids of the supporters created.
/// Each purpose's change feed, resumed from the last event of the fixture's, goes on with
/// the first new write it may see (nothing lost, nothing stale in between).
async fn new_writes(
    d: &Daemon,
    c: &Clients,
    subjects: &[Subject],
    expected: &Value,
) -> Vec<String> {
    let by = |label: &str| subjects.iter().find(|s| s.label == label).unwrap().clone();
    let mut sup = d.supporters().await;
    let member = vault_tests::supporter(
        "Nouvelle",
        "Adhérente-Après",
        "nouvelle.adherente@exemple.fr",
        "06 99 88 77 66",
    );
    let m1 = sup
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(member),
                consents: vec![],
            },
            &c.tool("membership"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(m1.created);
    let mut donor = vault_tests::supporter(
        "Donatien",
        "Après-Migration",
        "donatien.apres@exemple.fr",
        "",
    );
    donor.address = Some(pb::Address {
        line1: "3 rue Neuve".into(),
        postcode: "75007".into(),
        city: "Paris".into(),
        country: "FR".into(),
        ..Default::default()
    });
    let m2 = sup
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(donor),
                consents: vec![],
            },
            &c.tool("donations-accounting"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(m2.created);
    let mut signup = vault_tests::supporter(
        "Inscrite",
        "Après-Réouverture",
        "inscrite.apres@exemple.fr",
        "07 88 77 66 55",
    );
    signup.address = Some(pb::Address {
        postcode: "75011".into(),
        ..Default::default()
    });
    let m3 = sup
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(signup),
                consents: vec![
                    consent("event-invitations", "email"),
                    consent("newsletter", "email"),
                    consent("sms-mobilisation", "sms"),
                ],
            },
            &c.tool("event-invitations"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(m3.created);
    for (purpose, marker) in [
        ("membership", &m1.id),
        ("canvassing", &m1.id),
        ("donations-accounting", &m2.id),
        ("event-invitations", &m3.id),
        ("newsletter", &m3.id),
        ("sms-mobilisation", &m3.id),
    ] {
        let old = expected["view"]["feeds"][purpose].as_array().unwrap();
        let cursor = old.last().map_or("", |e| e["cursor"].as_str().unwrap());
        let next = feed(d, &c.tool(purpose), cursor, Some(1)).await;
        assert_eq!(
            next[0]["subject_id"], **marker,
            "the {purpose} feed resumed from the fixture's last event: {next:?}"
        );
    }

    // People no purpose reaches in the fixture kept their posting lists: the restricted p06
    // once unrestricted, and p20 (who objected on email) once consenting to SMS invitations,
    // are found again by their tags and postcodes.
    let p06 = by("p06");
    d.rights()
        .await
        .unrestrict(authed(
            pb::RestrictRequest {
                subject_id: p06.id.clone(),
                request_ref: "REQ-2027-003".into(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    let p20 = by("p20");
    let p20_phone = expected["view"]["people"]["p20"]["dpo_get"]["ok"]["phone"]
        .as_str()
        .unwrap()
        .to_owned();
    d.consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: p20.id.clone(),
                purpose: "event-invitations".into(),
                channel: "sms".into(),
                source: "phone".into(),
                notice_version: "2027-01".into(),
                contact_phone: p20_phone,
                ..Default::default()
            },
            &c.tool("event-invitations"),
        ))
        .await
        .unwrap();
    for (purpose, id, req) in [
        ("membership", &p06.id, search_tags(&["élu"])),
        ("membership", &p06.id, search_tags(&["bénévole"])),
        ("membership", &p06.id, search_postcodes(&["29200"])),
        ("event-invitations", &p20.id, search_tags(&["jeunes"])),
        ("event-invitations", &p20.id, search_postcodes(&["13002"])),
    ] {
        let label = format!("{req:?}");
        let found = search_ids(d, &c.tool(purpose), req).await;
        assert!(
            found["ids"].as_array().unwrap().contains(&json!(id)),
            "{purpose} {label}: {found}"
        );
    }

    // Old people: tag, consent, rectification, erasure with suppression; keys, tickets,
    // clients and purposes.
    let p05 = by("p05");
    sup.tag(authed(
        pb::TagRequest {
            id: p05.id.clone(),
            tags: vec!["migration-v1".into()],
        },
        &c.tool("membership"),
    ))
    .await
    .unwrap();
    let p03 = by("p03");
    d.consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: p03.id.clone(),
                purpose: "newsletter".into(),
                channel: "email".into(),
                source: "form".into(),
                notice_version: "2027-01".into(),
                contact_email: p03.email.clone(),
                ..Default::default()
            },
            &c.mailer,
        ))
        .await
        .unwrap();
    assert!(
        get(d, &c.mailer, &p03.id, None).await.get("ok").is_some(),
        "the newsletter now reaches p03"
    );
    let p16 = by("p16");
    sup.update(authed(
        pb::UpdateRequest {
            id: p16.id.clone(),
            supporter: Some(pb::Supporter {
                family_name: "Sørensen-Rectifiée".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["family_name".into()],
            }),
            request_ref: "REQ-2027-001".into(),
        },
        &c.dpo,
    ))
    .await
    .unwrap();
    let mut rights = d.rights().await;
    let p24 = by("p24");
    let ticket = rights
        .open_request(authed(
            pb::OpenRequestRequest {
                kind: "erasure".into(),
                received_at: None,
                subject_id: p24.id.clone(),
                reference: "REQ-2027-002".into(),
            },
            &c.dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    rights
        .erase(authed(
            pb::EraseRequest {
                subject_id: p24.id.clone(),
                request_ref: ticket.id.clone(),
                suppress: true,
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    let again = sup
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(vault_tests::supporter("", "", &p24.email, "")),
                consents: vec![consent("event-invitations", "email")],
            },
            &c.tool("event-invitations"),
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
    // The suppression written by v1 still holds too.
    let p09 = by("p09");
    let v1_suppressed = sup
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(vault_tests::supporter("", "", &p09.email, "")),
                consents: vec![],
            },
            &c.tool("membership"),
        ))
        .await
        .unwrap_err();
    assert_eq!(v1_suppressed.code(), tonic::Code::FailedPrecondition);
    // So does v1's objection to every channel: the phone cannot come back.
    let p12 = by("p12");
    let v1_objected = sup
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(vault_tests::supporter("", "", "", &p12.phone)),
                consents: vec![],
            },
            &c.tool("membership"),
        ))
        .await
        .unwrap_err();
    assert_eq!(v1_objected.code(), tonic::Code::FailedPrecondition);
    let rotated = d
        .admin()
        .await
        .rotate_keys(authed(pb::RotateKeysRequest {}, &c.admin))
        .await
        .unwrap()
        .into_inner();
    // The fixture rotated once (epoch 2); both epochs are still held (no destruction).
    assert_eq!(
        (rotated.epoch, rotated.epochs.as_slice()),
        (3, [1, 2, 3].as_slice()),
        "{rotated:?}"
    );
    assert!(rotated.rewrapped > 0, "{rotated:?}");
    assert!(
        get(d, &c.dpo, &p12.id, None).await.get("ok").is_some(),
        "read after the rotation"
    );
    let (approved, token) = d
        .propose_and_approve(pb::propose_change_request::Change::CreateClient(
            pb::CreateClientRequest {
                name: "after-migration".into(),
                role: "campaign-tool".into(),
                purposes: vec!["membership".into()],
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(approved.status, "approved");
    let tool = Creds {
        client_id: String::new(),
        token,
        purpose: Some("membership".into()),
    };
    assert!(get(d, &tool, &p05.id, None).await.get("ok").is_some());
    vec![m1.id, m2.id, m3.id]
}

fn search_tags(tags: &[&str]) -> pb::SearchRequest {
    pb::SearchRequest {
        tags_any: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

fn search_postcodes(postcodes: &[&str]) -> pb::SearchRequest {
    pb::SearchRequest {
        postcodes: postcodes.iter().map(|p| (*p).to_owned()).collect(),
        ..Default::default()
    }
}

fn consent(purpose: &str, channel: &str) -> pb::ConsentRequest {
    pb::ConsentRequest {
        purpose: purpose.into(),
        channel: channel.into(),
        source: "form".into(),
        notice_version: "2026-11".into(),
        ..Default::default()
    }
}

// ---- the generator --------------------------------------------------------------------

/// One supporter of the fixture and how it enters the vault.
struct Person {
    label: &'static str,
    given: &'static str,
    family: &'static str,
    email: &'static str,
    phone: &'static str,
    /// line1, line2, postcode, city, country.
    address: [&'static str; 5],
    tags: &'static [&'static str],
    custom: &'static [(&'static str, &'static str)],
    source: &'static str,
    via: Via,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Upsert by the CRM under membership.
    Member,
    /// Upsert by the CRM under donations-accounting (names, address, email).
    Donor,
    /// Upsert by the sign-up form under event-invitations, with these consents.
    Signup(&'static [(&'static str, &'static str)]),
    /// Upsert by the mailer under newsletter, with newsletter consent.
    Newsletter,
    /// A row of the sign-up form's import, with these consents.
    Import(&'static [(&'static str, &'static str)]),
    /// Upsert by the CRM under membership after the mid-scenario restart.
    MemberLater,
}

const EV_EMAIL: (&str, &str) = ("event-invitations", "email");
const EV_SMS: (&str, &str) = ("event-invitations", "sms");
const NL_EMAIL: (&str, &str) = ("newsletter", "email");
const SMS: (&str, &str) = ("sms-mobilisation", "sms");

const NO_ADDRESS: [&str; 5] = ["", "", "", "", ""];

#[rustfmt::skip]
const PEOPLE: &[Person] = &[
    Person { label: "p01", given: "Éloïse", family: "Dubois-Lefèvre", email: "eloise.dubois@exemple.fr", phone: "06 11 22 33 44",
        address: ["12 rue des Écoles", "Apt 3", "75005", "Paris", "FR"], tags: &["bénévole", "tractage"],
        custom: &[("quartier", "Quartier latin"), ("t_shirt", "M")], source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p02", given: "François", family: "Müller", email: "F.Muller@Exemple.FR", phone: "+33 7 81 22 33 45",
        address: ["4 place Kléber", "", "67000", "Strasbourg", "FR"], tags: &["tractage", "porte-à-porte"],
        custom: &[("langue", "de")], source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p03", given: "Zoë", family: "N'Diaye", email: "zoe.ndiaye@exemple.fr", phone: "0612345679",
        address: ["8 cours Lafayette", "", "69003", "Lyon", "FR"], tags: &["jeunes"], custom: &[],
        source: "event:université-d-été", via: Via::Member },
    Person { label: "p04", given: "Jérôme", family: "Castañeda", email: "jerome.c@exemple.fr", phone: "",
        address: ["3 impasse du Moulin", "Bâtiment C", "13001", "Marseille", "FR"], tags: &[],
        custom: &[("parrainage", "oui")], source: "import:fichier-2025", via: Via::Member },
    Person { label: "p05", given: "Anaïs", family: "Le Goff", email: "anais.legoff@exemple.fr", phone: "06 98 76 54 32",
        address: ["22 quai de la Fosse", "", "44000", "Nantes", "FR"], tags: &["bénévole"], custom: &[],
        source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p06", given: "Maël", family: "Kerbrat-Quéré", email: "mael.kq@exemple.bzh", phone: "07 60 11 22 33",
        address: ["1 rue de Siam", "", "29200", "Brest", "FR"], tags: &["élu", "bénévole"],
        custom: &[("mandat", "conseiller municipal")], source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p07", given: "Hélène", family: "Nguyễn", email: "helene.nguyen@exemple.fr", phone: "06 55 44 33 22",
        address: ["140 avenue de Choisy", "", "75013", "Paris", "FR"], tags: &[], custom: &[],
        source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p08", given: "Łukasz", family: "Wójcik", email: "lukasz.wojcik@exemple.pl", phone: "+48 512 345 678",
        address: ["ul. Długa 5", "", "80-827", "Gdańsk", "PL"], tags: &["international"], custom: &[],
        source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p09", given: "Søren", family: "O'Connor", email: "soren.oconnor@example.ie", phone: "+353 85 123 4567",
        address: ["7 Grafton Street", "", "D02", "Dublin", "IE"], tags: &[], custom: &[],
        source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p10", given: "Ségolène", family: "de La Tour d'Auvergne", email: "segolene.dlt@exemple.fr", phone: "06 01 02 03 04",
        address: ["Château de la Tour", "Lieu-dit Les Prés", "63000", "Clermont-Ferrand", "FR"], tags: &["donateur", "élu"],
        custom: &[("civilite", "Mme"), ("note", "Préfère être appelée le soir ; ne pas écrire à l'adresse pro.")],
        source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p11", given: "Noël", family: "Bénard", email: "", phone: "06 12 12 12 12",
        address: ["", "", "75019", "Paris", "FR"], tags: &["tractage"], custom: &[],
        source: "in-person:marché-de-belleville", via: Via::Member },
    Person { label: "p12", given: "Inès", family: "Benali", email: "ines.benali@exemple.fr", phone: "07 66 55 44 33",
        address: ["5 rue Molière", "", "59000", "Lille", "FR"], tags: &["jeunes", "tractage"],
        custom: &[("etudes", "droit")], source: "form:adhesion-2026", via: Via::Member },
    Person { label: "p13", given: "Gérard", family: "Depréaux", email: "gerard.depreaux@exemple.fr", phone: "",
        address: ["9 rue du Bac", "", "75007", "Paris", "FR"], tags: &[], custom: &[],
        source: "", via: Via::Donor },
    Person { label: "p14", given: "Marie-Thérèse", family: "Œhlenschläger", email: "mt.oehlenschlaeger@exemple.fr", phone: "",
        address: ["2 rue de l'Église", "", "68000", "Colmar", "FR"], tags: &[], custom: &[],
        source: "", via: Via::Donor },
    Person { label: "p15", given: "Côme", family: "Aubépine", email: "come.aubepine@exemple.fr", phone: "",
        address: ["BP 12", "Rue de Paris", "97400", "Saint-Denis", "FR"], tags: &[], custom: &[],
        source: "", via: Via::Donor },
    Person { label: "p16", given: "Camélia", family: "Sørensen", email: "camelia.s@exemple.fr", phone: "06 20 30 40 50",
        address: ["", "", "75011", "", ""], tags: &["bénévole"], custom: &[],
        source: "", via: Via::Signup(&[EV_EMAIL, EV_SMS, NL_EMAIL]) },
    Person { label: "p17", given: "Théo", family: "Brûlé", email: "theo.brule@exemple.fr", phone: "06 21 31 41 51",
        address: ["", "", "75011", "", ""], tags: &[], custom: &[],
        source: "", via: Via::Signup(&[EV_EMAIL, SMS]) },
    Person { label: "p18", given: "Aurélie", family: "Fontaine-Dupré", email: "aurelie.fd@exemple.fr", phone: "",
        address: ["", "", "75020", "", ""], tags: &["tractage"], custom: &[],
        source: "", via: Via::Signup(&[EV_EMAIL]) },
    Person { label: "p19", given: "Baptiste", family: "Ménard", email: "baptiste.menard@exemple.fr", phone: "07 82 34 56 78",
        address: ["", "", "93100", "", ""], tags: &[], custom: &[],
        source: "", via: Via::Signup(&[EV_EMAIL, EV_SMS]) },
    Person { label: "p20", given: "Yasmine", family: "El Idrissi", email: "yasmine.elidrissi@exemple.fr", phone: "06 31 41 59 26",
        address: ["", "", "13002", "", ""], tags: &["jeunes"], custom: &[],
        source: "", via: Via::Signup(&[EV_EMAIL, NL_EMAIL]) },
    Person { label: "p21", given: "Ulysse", family: "Ébrard", email: "ulysse.ebrard@exemple.fr", phone: "06 27 18 28 18",
        address: ["", "", "31000", "", ""], tags: &[], custom: &[],
        source: "", via: Via::Signup(&[EV_EMAIL]) },
    Person { label: "p22", given: "Clémence", family: "Rivière", email: "clemence.riviere@exemple.fr", phone: "",
        address: NO_ADDRESS, tags: &["lecteur"], custom: &[], source: "", via: Via::Newsletter },
    Person { label: "p23", given: "Raphaël", family: "Dumas-Sénéchal", email: "raphael.ds@exemple.fr", phone: "",
        address: NO_ADDRESS, tags: &[], custom: &[], source: "", via: Via::Newsletter },
    Person { label: "p24", given: "Agnès", family: "Varda-Leclerc", email: "agnes.vl@exemple.fr", phone: "06 40 50 60 70",
        address: ["", "", "75014", "", ""], tags: &["bénévole"], custom: &[],
        source: "", via: Via::Import(&[EV_EMAIL]) },
    Person { label: "p25", given: "Éric", family: "Tabarly-Kervella", email: "eric.tk@exemple.fr", phone: "",
        address: ["", "", "56000", "", ""], tags: &[], custom: &[],
        source: "", via: Via::Import(&[EV_EMAIL]) },
    Person { label: "p26", given: "Firmin", family: "Gémier", email: "firmin.gemier@exemple.fr", phone: "07 81 51 61 71",
        address: ["", "", "75018", "", ""], tags: &["tractage"], custom: &[],
        source: "", via: Via::Import(&[EV_EMAIL, EV_SMS]) },
    Person { label: "p27", given: "Olga", family: "Čapková", email: "olga.capkova@exemple.cz", phone: "+420 601 123 456",
        address: ["", "", "35000", "", ""], tags: &[], custom: &[],
        source: "", via: Via::Import(&[EV_EMAIL]) },
    Person { label: "p28", given: "Ánh", family: "Lâm Thị Ngọc", email: "lam.anh@exemple.fr", phone: "06 50 60 70 80",
        address: ["", "", "94200", "", ""], tags: &["jeunes"], custom: &[],
        source: "", via: Via::Import(&[EV_EMAIL, NL_EMAIL]) },
    Person { label: "p29", given: "Rémi-Žarko", family: "Jovanović", email: "remi.jovanovic@exemple.fr", phone: "",
        address: ["", "", "38000", "", ""], tags: &[], custom: &[],
        source: "", via: Via::Import(&[EV_EMAIL]) },
    Person { label: "p30", given: "Gwenaëlle", family: "Le Bihan", email: "gwenaelle.lebihan@exemple.fr", phone: "06 70 80 90 10",
        address: ["17 rue de la Soif", "", "35000", "Rennes", "FR"], tags: &["bénévole", "porte-à-porte"],
        custom: &[("disponibilites", "week-end")], source: "form:adhesion-2026", via: Via::MemberLater },
    Person { label: "p31", given: "Achille", family: "Zwiebel-Öztürk", email: "achille.zo@exemple.fr", phone: "07 51 20 30 40",
        address: ["", "", "67000", "Strasbourg", "FR"], tags: &["jeunes"], custom: &[],
        source: "form:adhesion-2026", via: Via::MemberLater },
];

fn person_supporter(p: &Person) -> pb::Supporter {
    let mut s = vault_tests::supporter(p.given, p.family, p.email, p.phone);
    let [line1, line2, postcode, city, country] = p.address;
    if p.address != NO_ADDRESS {
        s.address = Some(pb::Address {
            line1: line1.into(),
            line2: line2.into(),
            postcode: postcode.into(),
            city: city.into(),
            country: country.into(),
        });
    }
    s.tags = p.tags.iter().map(|t| (*t).to_owned()).collect();
    s.custom = p
        .custom
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    s.source = p.source.into();
    s
}

async fn upsert(
    d: &Daemon,
    creds: Creds,
    s: pb::Supporter,
    consents: Vec<pb::ConsentRequest>,
) -> Result<tonic::Response<pb::UpsertResponse>, Status> {
    d.supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(s),
                consents,
            },
            &creds,
        ))
        .await
}

fn consents(list: &[(&str, &str)]) -> Vec<pb::ConsentRequest> {
    list.iter().map(|(p, ch)| consent(p, ch)).collect()
}

fn git(args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git")
}

/// Writes the fixture of the engine `VAULT_TEST_BACKEND` selects, with the daemon of
/// commit 31eb273. Run by tests/fixtures/make-store-v1.sh; never by a later layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the committed v1 fixture; run only by tests/fixtures/make-store-v1.sh"]
async fn write_fixture_store_v1() {
    assert_eq!(
        std::env::var("VAULT_WRITE_FIXTURE").as_deref(),
        Ok("store-v1"),
        "set VAULT_WRITE_FIXTURE=store-v1 (tests/fixtures/make-store-v1.sh does)"
    );
    let engine = engine();
    let out_dir = fixture_dir(engine);
    assert!(
        !out_dir.exists(),
        "{} exists: a committed fixture is never regenerated (tests/fixtures/README.md)",
        out_dir.display()
    );
    // The product code must be the v1 layout's, committed or not.
    let mut diff = vec!["diff", "--quiet", V1_PRODUCT_COMMIT, "--"];
    diff.extend(PRODUCT_PATHS);
    assert!(
        git(&diff).status.success(),
        "vault-core, vault-server, proto or the Cargo files differ from {V1_PRODUCT_COMMIT}: \
         the v1 fixture is written by that code only"
    );
    let head = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout).unwrap();
    let written_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let pg = match vault_tests::backend() {
        vault_tests::Backend::Postgres(url) => {
            let pg = PgSchema::new(&url);
            use_store(&dir, TestStore::Postgres(pg.clone()));
            Some(pg)
        }
        vault_tests::Backend::Embedded => {
            use_store(&dir, TestStore::Embedded);
            None
        }
    };
    let config = config_file(tmp.path());
    let d = start(&dir, &config);
    let (mut d, c, subjects) = scenario(d, &dir, &config, tmp.path()).await;
    let view = collect_view(&d, &c, &subjects, None).await;
    let entries = view["log"]["bounds"]["entries"].as_u64().unwrap();
    assert!(entries > 500, "a realistic log: {entries} entries");

    // What an auditor keeps: the public key, a pin, an export.
    std::fs::create_dir_all(&out_dir).unwrap();
    let key = vaultctl(Some(d.addr), &c.auditor.token, &["audit", "public-key"]);
    assert!(key.status.success());
    std::fs::write(out_dir.join("audit-public-key.hex"), &key.stdout).unwrap();
    let pin = out_dir.join("audit-pin.json");
    succeeded(
        "vaultctl audit pin",
        &vaultctl(
            Some(d.addr),
            &c.auditor.token,
            &["audit", "pin", "--out", pin.to_str().unwrap()],
        ),
    );
    let export = out_dir.join("audit-export.jsonl");
    succeeded(
        "vaultctl audit export",
        &vaultctl(
            Some(d.addr),
            &c.auditor.token,
            &["audit", "export", "--out", export.to_str().unwrap()],
        ),
    );
    assert!(d.terminate().success());

    // The store as the v1 daemon left it: the files beside the root key as they are, sled's
    // files in a tarball (2 MB of a log-structured store, a quarter of it compressed).
    std::fs::create_dir_all(out_dir.join("data")).unwrap();
    for name in ["root.key", "root.key.audit-mark", "admin.token"] {
        std::fs::copy(dir.join(name), out_dir.join("data").join(name)).unwrap();
    }
    if pg.is_none() {
        let tar = Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mtime=@{written_at}"))
            .arg("-czf")
            .arg(out_dir.join("store.tar.gz"))
            .arg("-C")
            .arg(&dir)
            .arg("store")
            .status()
            .expect("tar");
        assert!(tar.success(), "tar of the sled store");
    }
    if let Some(pg) = &pg {
        let pg_dump = std::env::var("PG_DUMP").unwrap_or_else(|_| "pg_dump".into());
        let out = Command::new(&pg_dump)
            .args([
                "--schema",
                &pg.schema,
                "--no-owner",
                "--no-privileges",
                "--inserts",
                "--dbname",
                &pg.url,
            ])
            .output()
            .unwrap_or_else(|e| panic!("{pg_dump}: {e} (set PG_DUMP)"));
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = String::from_utf8(out.stdout).unwrap();
        assert!(!dump.contains(DUMP_SCHEMA));
        std::fs::write(
            out_dir.join("dump.sql"),
            dump.replace(&pg.schema, DUMP_SCHEMA),
        )
        .unwrap();
    }
    std::fs::write(
        out_dir.join("clients.json"),
        serde_json::to_string_pretty(&c.to_json()).unwrap() + "\n",
    )
    .unwrap();
    let expected = json!({
        "format": VIEW_FORMAT,
        "written_by": {
            "engine": engine,
            "product_commit": V1_PRODUCT_COMMIT,
            "head": head.trim(),
            "generator": "tests/tests/migration_from_v1.rs::write_fixture_store_v1",
            "at_unix": written_at,
        },
        "subjects": subjects.iter().map(Subject::to_json).collect::<Vec<_>>(),
        "view": view,
    });
    std::fs::write(
        out_dir.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

/// The life of a small campaign's vault on commit 31eb273: clients through the two-admin
/// flow, supporters from a CRM, a sign-up form, a mailer and an import, consents granted and
/// withdrawn, rectification, restriction, objections, erasures (one suppressed), rights
/// requests, purposes changed, a key rotation, a backup, a restart, reads and refusals of
/// every kind, exports and pins of the access log.
async fn scenario(
    d: Daemon,
    dir: &Path,
    config: &Path,
    scratch: &Path,
) -> (Daemon, Clients, Vec<Subject>) {
    let admin = d.admin_token();
    let approver = d.approver().await;
    let crm = d
        .create_client("crm", "campaign-tool", &CRM_PURPOSES)
        .await
        .with_purpose(Some("membership"));
    let signup = d
        .create_client("signup-form", "campaign-tool", &SIGNUP_PURPOSES)
        .await
        .with_purpose(Some("event-invitations"));
    let mailer = d
        .create_client("mailer", "campaign-tool", &["newsletter"])
        .await
        .with_purpose(Some("newsletter"));
    let dpo = d
        .create_client("dpo", "dpo", &[])
        .await
        .with_purpose(Some("data-subject-rights"));
    let auditor = d
        .create_client_with(pb::CreateClientRequest {
            name: "cnil".into(),
            role: "auditor".into(),
            purposes: vec![],
            cert_sha256: "a1".repeat(32),
            expires_at: None,
        })
        .await;
    let phonebank = d
        .create_client("old-phonebank", "campaign-tool", &["canvassing"])
        .await
        .with_purpose(Some("canvassing"));
    let c = Clients {
        admin,
        approver,
        crm,
        signup,
        mailer,
        dpo,
        auditor,
    };

    let mut subjects: Vec<Subject> = Vec::new();
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let record = |p: &Person, id: &str, subjects: &mut Vec<Subject>| {
        subjects.push(Subject {
            label: p.label.to_owned(),
            id: id.to_owned(),
            email: p.email.to_owned(),
            phone: p.phone.to_owned(),
        });
    };

    // Supporters, before the key rotation: CRM members and donors, sign-ups, newsletter.
    for p in PEOPLE
        .iter()
        .filter(|p| !matches!(p.via, Via::Import(_) | Via::MemberLater))
    {
        let (creds, cons) = match p.via {
            Via::Member => (c.tool("membership"), vec![]),
            Via::Donor => (c.tool("donations-accounting"), vec![]),
            Via::Signup(list) => (c.tool("event-invitations"), consents(list)),
            Via::Newsletter => (c.mailer.clone(), consents(&[NL_EMAIL])),
            Via::Import(_) | Via::MemberLater => unreachable!(),
        };
        let r = upsert(&d, creds, person_supporter(p), cons)
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", p.label))
            .into_inner();
        assert!(r.created, "{}", p.label);
        ids.insert(p.label, r.id.clone());
        record(p, &r.id, &mut subjects);
    }
    let id = |label: &str| ids[label].clone();
    let email = |label: &str| PEOPLE.iter().find(|p| p.label == label).unwrap().email;

    // A merge: the same email in other casing, with a phone and a tag.
    let mut merge = vault_tests::supporter("", "", "JEROME.C@EXEMPLE.FR", "07 70 70 70 70");
    merge.tags = vec!["donateur".into()];
    let r = upsert(&d, c.tool("membership"), merge, vec![])
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.id.as_str(), r.created), (id("p04").as_str(), false));

    let mut sup = d.supporters().await;
    let mut con = d.consent().await;
    let grant = |subject: &str, purpose: &str, channel: &str, email: &str, phone: &str| {
        pb::ConsentRequest {
            subject_id: subject.to_owned(),
            purpose: purpose.into(),
            channel: channel.into(),
            source: "form".into(),
            notice_version: "2026-11".into(),
            contact_email: email.into(),
            contact_phone: phone.into(),
        }
    };
    // Consents on existing people.
    con.grant(authed(
        grant(&id("p01"), "newsletter", "email", email("p01"), ""),
        &c.mailer,
    ))
    .await
    .unwrap();
    con.grant(authed(
        grant(&id("p02"), "sms-mobilisation", "sms", "", "+33781223345"),
        &c.tool("sms-mobilisation"),
    ))
    .await
    .unwrap();
    con.withdraw(authed(
        grant(&id("p16"), "newsletter", "email", "", ""),
        &c.tool("newsletter"),
    ))
    .await
    .unwrap();
    con.withdraw(authed(
        grant(&id("p17"), "sms-mobilisation", "sms", "", ""),
        &c.tool("sms-mobilisation"),
    ))
    .await
    .unwrap();
    con.grant(authed(
        grant(&id("p17"), "sms-mobilisation", "sms", "", "06 21 31 41 51"),
        &c.tool("sms-mobilisation"),
    ))
    .await
    .unwrap();
    con.withdraw(authed(
        grant(&id("p19"), "event-invitations", "sms", "", ""),
        &c.dpo,
    ))
    .await
    .unwrap();
    con.grant(authed(
        grant(&id("p22"), "event-invitations", "email", email("p22"), ""),
        &c.tool("event-invitations"),
    ))
    .await
    .unwrap();

    // Changes: an address, tags, a rectification.
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        })
    };
    sup.update(authed(
        pb::UpdateRequest {
            id: id("p03"),
            supporter: Some(pb::Supporter {
                address: Some(pb::Address {
                    line1: "27 rue Mercière".into(),
                    line2: "3e étage".into(),
                    postcode: "69002".into(),
                    city: "Lyon".into(),
                    country: "FR".into(),
                }),
                ..Default::default()
            }),
            update_mask: mask(&["address"]),
            request_ref: String::new(),
        },
        &c.tool("membership"),
    ))
    .await
    .unwrap();
    sup.tag(authed(
        pb::TagRequest {
            id: id("p01"),
            tags: vec!["Donateur".into(), "porte-à-porte".into()],
        },
        &c.tool("membership"),
    ))
    .await
    .unwrap();
    sup.untag(authed(
        pb::UntagRequest {
            id: id("p02"),
            tags: vec!["porte-à-porte".into(), "absent".into()],
        },
        &c.tool("membership"),
    ))
    .await
    .unwrap();
    sup.update(authed(
        pb::UpdateRequest {
            id: id("p05"),
            supporter: Some(pb::Supporter {
                family_name: "Le Goff-Tanguy".into(),
                custom: [("note".to_owned(), "rectifié sur demande".to_owned())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            update_mask: mask(&["family_name", "custom"]),
            request_ref: "REQ-2026-101".into(),
        },
        &c.dpo,
    ))
    .await
    .unwrap();
    leaks::watch_name("Le Goff-Tanguy");
    sup.update(authed(
        pb::UpdateRequest {
            id: id("p20"),
            supporter: Some(pb::Supporter {
                phone: "06 31 41 59 27".into(),
                ..Default::default()
            }),
            update_mask: mask(&["phone"]),
            request_ref: String::new(),
        },
        &c.tool("event-invitations"),
    ))
    .await
    .unwrap();

    // Purposes: a narrowing change at once, a new purpose through two admins.
    let mut admin_c = d.admin().await;
    let purposes = admin_c
        .list_purposes(authed(pb::ListPurposesRequest {}, &c.admin))
        .await
        .unwrap()
        .into_inner()
        .purposes;
    let mut newsletter = purposes
        .iter()
        .find(|p| p.id == "newsletter")
        .unwrap()
        .clone();
    newsletter.retention_days += 365;
    newsletter.description = "Lettre d'information mensuelle (conservation allongée)".into();
    admin_c
        .put_purpose(authed(
            pb::PutPurposeRequest {
                purpose: Some(newsletter),
            },
            &c.admin,
        ))
        .await
        .unwrap();
    d.propose_and_approve(pb::propose_change_request::Change::PutPurpose(
        pb::Purpose {
            id: "petitions".into(),
            description: "Pétitions signées en ligne".into(),
            lawful_basis: "consent".into(),
            special_category_basis: "explicit-consent".into(),
            channels: vec!["email".into()],
            retention_days: 730,
            fields: vec!["given_name".into(), "family_name".into(), "email".into()],
            reaches_collected_for: vec![],
        },
    ))
    .await;

    // Reads and refusals of every kind.
    let bogus = Creds {
        client_id: String::new(),
        token: "vault_0000000000000000000000000000000000000000000000000000000000000000".into(),
        purpose: Some("membership".into()),
    };
    let refusals = [
        get(&d, &c.mailer, &id("p03"), None).await, // no consent: NotFound
        get(&d, &c.crm.with_purpose(None), &id("p01"), None).await, // no purpose
        get(
            &d,
            &c.crm.with_purpose(Some("newsletter")),
            &id("p01"),
            None,
        )
        .await,
        get(
            &d,
            &c.crm.with_purpose(Some("no-such-purpose")),
            &id("p01"),
            None,
        )
        .await,
        get(&d, &bogus, &id("p01"), None).await,
        get(
            &d,
            &c.auditor.with_purpose(Some("membership")),
            &id("p01"),
            None,
        )
        .await,
        lookup(
            &d,
            &c.mailer,
            pb::lookup_request::Key::Phone("06 11 22 33 44".into()),
        )
        .await,
        get(
            &d,
            &c.tool("membership"),
            "00000000-0000-4000-8000-000000000000",
            None,
        )
        .await,
    ];
    for (i, r) in refusals.iter().enumerate() {
        assert!(r.get("error").is_some(), "refusal {i}: {r}");
    }
    // A mask naming only hidden fields narrows the reply to nothing (not a refusal).
    let narrowed = get(
        &d,
        &c.tool("event-invitations"),
        &id("p16"),
        Some(&["address.line1"]),
    )
    .await;
    assert_eq!(narrowed["ok"]["visible_fields"], json!([]), "{narrowed}");
    let refused = sup
        .update(authed(
            pb::UpdateRequest {
                id: id("p16"),
                supporter: Some(pb::Supporter {
                    phone: "06 00 00 00 00".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["phone"]),
                request_ref: String::new(),
            },
            &c.tool("newsletter"),
        ))
        .await;
    assert!(refused.is_err());
    let dup = upsert(
        &d,
        c.tool("membership"),
        vault_tests::supporter("Autre", "Personne", "", "+33 7 81 22 33 45"),
        vec![],
    )
    .await;
    assert!(dup.is_ok(), "an upsert by phone merges: {dup:?}");
    for p in ["p01", "p02", "p05", "p10"] {
        get(&d, &c.tool("membership"), &id(p), None).await;
        get(
            &d,
            &c.tool("canvassing"),
            &id(p),
            Some(&["given_name", "tags"]),
        )
        .await;
    }
    lookup(
        &d,
        &c.tool("membership"),
        pb::lookup_request::Key::Email("Eloise.Dubois@exemple.fr".into()),
    )
    .await;
    search_all(
        &d,
        &c.tool("event-invitations"),
        pb::SearchRequest {
            tags_any: vec!["bénévole".into()],
            ..Default::default()
        },
    )
    .await;
    // The phone bank's client: used once, revoked, refused.
    assert!(
        get(&d, &phonebank, &id("p01"), None)
            .await
            .get("ok")
            .is_some()
    );
    admin_c
        .revoke_client(authed(
            pb::RevokeClientRequest {
                id: phonebank.client_id.clone(),
            },
            &c.admin,
        ))
        .await
        .unwrap();
    assert!(
        get(&d, &phonebank, &id("p01"), None)
            .await
            .get("error")
            .is_some()
    );

    // Keys rotate; an auditor looks and pins; a backup.
    let rotated = admin_c
        .rotate_keys(authed(pb::RotateKeysRequest {}, &c.admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.epoch, 2, "{rotated:?}");
    audit_query(
        &d,
        &c.auditor,
        pb::QueryRequest {
            subject_id: id("p01"),
            ..Default::default()
        },
    )
    .await;
    succeeded(
        "vaultctl audit pin",
        &vaultctl(
            Some(d.addr),
            &c.auditor.token,
            &[
                "audit",
                "pin",
                "--out",
                scratch.join("mid-pin.json").to_str().unwrap(),
            ],
        ),
    );
    succeeded(
        "vaultctl audit export",
        &vaultctl(
            Some(d.addr),
            &c.auditor.token,
            &[
                "audit",
                "export",
                "--out",
                scratch.join("mid-export.jsonl").to_str().unwrap(),
            ],
        ),
    );
    admin_c
        .backup(authed(
            pb::BackupRequest {
                path: scratch.join("backup").to_str().unwrap().to_owned(),
            },
            &c.admin,
        ))
        .await
        .unwrap();
    admin_c
        .retention_sweep(authed(
            pb::RetentionSweepRequest { dry_run: true },
            &c.admin,
        ))
        .await
        .unwrap();

    // An import of the sign-up form's paper petition, one row refused.
    let mut rows: Vec<pb::Supporter> = Vec::new();
    let mut imported: Vec<&Person> = Vec::new();
    for p in PEOPLE.iter().filter(|p| matches!(p.via, Via::Import(_))) {
        let Via::Import(list) = p.via else {
            unreachable!()
        };
        let mut s = person_supporter(p);
        s.consents = consents(list);
        rows.push(s);
        imported.push(p);
        if rows.len() == 3 {
            let mut bad = vault_tests::supporter("Sans", "Courriel", "pas-une-adresse", "");
            bad.consents = consents(&[EV_EMAIL]);
            rows.push(bad);
        }
    }
    let report = sup
        .import(authed(
            tokio_stream::iter(rows),
            &c.tool("event-invitations"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (report.created, report.rejected_total),
        (imported.len() as u64, 1),
        "{report:?}"
    );
    for p in imported {
        let found = lookup(&d, &c.dpo, pb::lookup_request::Key::Email(p.email.into())).await;
        let found_id = found["ok"]["id"].as_str().unwrap().to_owned();
        ids.insert(p.label, found_id.clone());
        record(p, &found_id, &mut subjects);
    }

    // A restart: the store as a daemon reopened it.
    let mut d = d;
    assert!(d.terminate().success());
    let d = start(dir, config);
    let mut sup = d.supporters().await;
    for p in PEOPLE.iter().filter(|p| p.via == Via::MemberLater) {
        let r = upsert(&d, c.tool("membership"), person_supporter(p), vec![])
            .await
            .unwrap()
            .into_inner();
        ids.insert(p.label, r.id.clone());
        record(p, &r.id, &mut subjects);
    }
    let id = |label: &str| ids[label].clone();
    sup.tag(authed(
        pb::TagRequest {
            id: id("p30"),
            tags: vec!["responsable-de-quartier".into()],
        },
        &c.tool("membership"),
    ))
    .await
    .unwrap();

    // Rights: tickets, restriction, objections, erasures, an export.
    let mut rights = d.rights().await;
    let open = |kind: &str, subject: String, reference: &str, received: Option<i64>| {
        pb::OpenRequestRequest {
            kind: kind.into(),
            received_at: received.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            subject_id: subject,
            reference: reference.into(),
        }
    };
    let ticket = |req: pb::OpenRequestRequest| {
        let dpo = c.dpo.clone();
        let channel = d.channel();
        async move {
            vault_proto::v1::rights_client::RightsClient::new(channel.await)
                .open_request(authed(req, &dpo))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let restriction = ticket(open("restriction", id("p06"), "REQ-2026-110", None)).await;
    rights
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: id("p06"),
                request_ref: restriction.id.clone(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    rights
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: id("p07"),
                request_ref: "REQ-2026-104".into(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    rights
        .unrestrict(authed(
            pb::RestrictRequest {
                subject_id: id("p07"),
                request_ref: "REQ-2026-104".into(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    rights
        .object(authed(
            pb::ObjectRequest {
                subject_id: id("p20"),
                channels: vec!["email".into()],
                request_ref: "REQ-2026-103".into(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    let objection = ticket(open("objection", String::new(), "letter 2026-11-28", None)).await;
    rights
        .object(authed(
            pb::ObjectRequest {
                subject_id: id("p12"),
                channels: vec![],
                request_ref: objection.id.clone(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    let erasure = ticket(open("erasure", id("p09"), "REQ-2026-111", None)).await;
    rights
        .erase(authed(
            pb::EraseRequest {
                subject_id: id("p09"),
                request_ref: erasure.id.clone(),
                suppress: true,
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    rights
        .erase(authed(
            pb::EraseRequest {
                subject_id: id("p23"),
                request_ref: "REQ-2026-102".into(),
                suppress: false,
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    // Left open: an access request received on 1 October (overdue at `as_of`), and a
    // rectification letter about no one yet.
    ticket(open(
        "access",
        id("p10"),
        "REQ-2026-090",
        Some(1_790_812_800),
    ))
    .await;
    ticket(open(
        "rectification",
        String::new(),
        "letter 2026-11-20",
        None,
    ))
    .await;
    let portability = ticket(open("portability", id("p13"), "REQ-2026-112", None)).await;
    rights
        .export(authed(
            pb::ExportRequest {
                subject: Some(pb::export_request::Subject::Email(
                    "Gerard.Depreaux@exemple.fr".into(),
                )),
                format: "json".into(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();
    rights
        .close_request(authed(
            pb::CloseRequestRequest {
                id: portability.id.clone(),
                action: "exported".into(),
            },
            &c.dpo,
        ))
        .await
        .unwrap();

    // Refusals the rights left behind: a suppressed email, an objected channel, a
    // restricted person.
    let suppressed = upsert(
        &d,
        c.tool("membership"),
        vault_tests::supporter("", "", email("p09"), ""),
        vec![],
    )
    .await
    .unwrap_err();
    assert_eq!(suppressed.code(), tonic::Code::FailedPrecondition);
    let mut con = d.consent().await;
    let regrant = con
        .grant(authed(
            grant(&id("p20"), "newsletter", "email", email("p20"), ""),
            &c.tool("newsletter"),
        ))
        .await
        .unwrap_err();
    assert_eq!(regrant.code(), tonic::Code::FailedPrecondition);
    assert!(
        get(&d, &c.tool("membership"), &id("p06"), None)
            .await
            .get("error")
            .is_some()
    );
    assert!(
        get(&d, &c.dpo, &id("p23"), None)
            .await
            .get("error")
            .is_some()
    );

    // The admin's and the auditor's routine.
    let mut admin_c = d.admin().await;
    admin_c
        .processing_report(authed(pb::ProcessingReportRequest::default(), &c.admin))
        .await
        .unwrap();
    let mut audit = d.audit().await;
    audit
        .checkpoints(authed(pb::CheckpointsRequest { since_seq: 0 }, &c.auditor))
        .await
        .unwrap();
    let v = audit
        .verify(authed(pb::VerifyRequest::default(), &c.auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{v:?}");
    audit_query(
        &d,
        &c.dpo,
        pb::QueryRequest {
            subject_id: id("p06"),
            ..Default::default()
        },
    )
    .await;

    let order: BTreeMap<&str, usize> = PEOPLE
        .iter()
        .enumerate()
        .map(|(i, p)| (p.label, i))
        .collect();
    subjects.sort_by_key(|s| order[s.label.as_str()]);
    assert_eq!(subjects.len(), PEOPLE.len());
    (d, c, subjects)
}
