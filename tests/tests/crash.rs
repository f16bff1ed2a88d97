//! Invariant: a write acknowledged before `kill -9` of the daemon is there after restart,
//! and a write cut by the kill is all there or not at all: upserts and tags, imports, and
//! erasures, with the access log verifying after every restart.

// Test helpers unwrap: a failure is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use vault_proto::v1 as pb;
use vault_proto::v1::rights_client::RightsClient;
use vault_proto::v1::supporters_client::SupportersClient;
mod common;

use common::{Creds, Daemon, Supporter, VAULTCTL, authed, supporter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(String, String)> = Vec::new(); // (id, tag added last)
    for round in 0..4 {
        let mut daemon = Daemon::start(dir.path());
        let token = daemon.tool("membership").await;
        let client = daemon.supporters().await;

        // Everything acknowledged in earlier rounds is still there.
        for (id, tag) in &acked {
            let s = client
                .clone()
                .get(authed(
                    pb::GetRequest {
                        id: id.clone(),
                        fields: None,
                    },
                    &token,
                ))
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged supporter {id} lost: {e}"))
                .into_inner();
            assert!(
                s.tags.contains(tag),
                "round {round}: acknowledged tag {tag} of {id} lost"
            );
        }

        // Concurrent writes, each acknowledged, then SIGKILL with no chance to flush.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let mut c = client.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let email = format!("crash-{round}-{i}@example.fr");
                let id = c
                    .upsert(authed(
                        pb::UpsertRequest {
                            supporter: Some(supporter("", "", &email, "")),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .id;
                let tag = format!("r{round}-n{i}");
                c.tag(authed(
                    pb::TagRequest {
                        id: id.clone(),
                        tags: vec![tag.clone()],
                    },
                    &token,
                ))
                .await
                .unwrap();
                (id, tag)
            }));
        }
        for t in tasks {
            acked.push(t.await.unwrap());
        }
        daemon.kill9();
    }
    let daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let mut c = daemon.supporters().await;
    for (id, tag) in &acked {
        let s = c
            .get(authed(
                pb::GetRequest {
                    id: id.clone(),
                    fields: None,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(s.tags.contains(tag));
    }
    assert_eq!(acked.len(), 160);
}

// ---- kill -9 at random points during imports and erasures ---------------------------------
//
// Each test runs many rounds on one data directory: start the daemon (the store must open),
// check everything known so far, put load on it from concurrent clients, and SIGKILL it after
// a random delay (0–150 ms, from a seeded generator: the seed is printed, and
// `VAULT_CRASH_SEED=<seed>` replays the same delays).
//
// "Acknowledged" is per call: many small calls run at once, and a call whose reply arrived
// before the kill is acknowledged, everything it did must be there after the restart. A
// call cut by the kill is "in doubt": each of its rows (or its erasure) must be either
// entirely done or entirely not started, never half. Whatever is checked goes through the
// API only, so the same tests hold the PostgreSQL backend to the same guarantee.

/// Restarts per test.
const ROUNDS: usize = 20;
/// Longest wait before the kill (the shortest is zero).
const MAX_KILL_DELAY_MS: u64 = 150;
/// Concurrent client calls while the kill lands.
const WORKERS: usize = 3;
/// Rows per Import call: small, so many calls are acknowledged before a kill.
const ROWS_PER_IMPORT: usize = 3;
/// Fresh supporters per round of the erasure test, erased while the kill lands.
const ERASABLE_PER_ROUND: usize = 12;

/// The delays' generator (SplitMix64: a few lines, no dependency, same sequence everywhere).
struct Delays(u64);

impl Delays {
    /// Seeded from `VAULT_CRASH_SEED`, else from the clock; the seed is printed either way.
    fn seeded(test: &str) -> Delays {
        let seed = std::env::var("VAULT_CRASH_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{test}: seed {seed} (replay with VAULT_CRASH_SEED={seed})");
        Delays(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn kill_delay(&mut self) -> Duration {
        Duration::from_millis(self.next() % (MAX_KILL_DELAY_MS + 1))
    }
}

/// One supporter of the crash tests: every field the checks compare, and a tag of its own.
#[derive(Clone, Debug)]
struct Row {
    email: String,
    phone: String,
    family: String,
    tag: String,
}

impl Row {
    /// Row number `n` of a test whose rows are told apart by `kind`.
    fn new(kind: &str, n: usize) -> Row {
        Row {
            email: format!("crash-{kind}-{n}@crash.test"),
            // Already in E.164, as the vault stores it; +33 6 1… for imports, +33 6 2… for
            // erasures, so no two rows of a run share a number.
            phone: format!("+336{}{n:07}", if kind == "import" { 1 } else { 2 }),
            family: format!("Crash{kind}{n}"),
            tag: format!("{kind}-{n}"),
        }
    }

    /// The Import row: the supporter with its tag and newsletter consent by email.
    fn message(&self) -> Supporter {
        let mut s = supporter("Crashtest", &self.family, &self.email, &self.phone);
        s.tags = vec![self.tag.clone()];
        s.consents = vec![pb::ConsentRequest {
            purpose: "newsletter".into(),
            channel: "email".into(),
            source: "crash-test".into(),
            notice_version: "2026-10".into(),
            ..Default::default()
        }];
        s
    }

    /// Panics unless `s` is this row, complete.
    fn assert_is(&self, s: &Supporter, context: &str) {
        assert_eq!(
            (
                s.given_name.as_str(),
                s.family_name.as_str(),
                s.email.as_str(),
                s.phone.as_str()
            ),
            (
                "Crashtest",
                self.family.as_str(),
                self.email.as_str(),
                self.phone.as_str()
            ),
            "{context}: {} is not intact",
            self.tag
        );
        assert_eq!(s.tags, [self.tag.clone()], "{context}: tags of {}", self.tag);
    }
}

/// The clients of a crash test, created once (clients are acknowledged writes too).
#[derive(Clone)]
struct Clients {
    /// Imports and reads everything (`membership`), records newsletter consent.
    member: Creds,
    /// The same client under `newsletter`: its searches return consented supporters only.
    news: Creds,
    dpo: Creds,
    auditor: Creds,
}

impl Clients {
    async fn create(d: &Daemon) -> Clients {
        let tool = d
            .create_client("crash-tool", "campaign-tool", &["membership", "newsletter"])
            .await;
        Clients {
            member: tool.with_purpose(Some("membership")),
            news: tool.with_purpose(Some("newsletter")),
            dpo: d.dpo().await,
            auditor: d.create_client("crash-auditor", "auditor", &[]).await,
        }
    }
}

/// Every supporter `creds` may see (the consented ones under a consent-based purpose),
/// following page tokens.
async fn search_all(d: &Daemon, creds: &Creds) -> Vec<Supporter> {
    let mut c = d.supporters().await;
    let mut req = pb::SearchRequest {
        page_size: 10_000,
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let resp = c.search(authed(req.clone(), creds)).await.unwrap();
        let next = resp
            .metadata()
            .get("x-vault-next-page-token")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut stream = resp.into_inner();
        while let Some(s) = stream.message().await.unwrap() {
            out.push(s);
        }
        match next {
            Some(t) => req.page_token = t,
            None => return out,
        }
    }
}

async fn lookup(d: &Daemon, creds: &Creds, key: pb::lookup_request::Key) -> Result<Supporter, Status> {
    d.supporters()
        .await
        .lookup(authed(pb::LookupRequest { key: Some(key) }, creds))
        .await
        .map(tonic::Response::into_inner)
}

async fn get(d: &Daemon, creds: &Creds, id: &str) -> Result<Supporter, Status> {
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
        .map(tonic::Response::into_inner)
}

async fn export(d: &Daemon, dpo: &Creds, id: &str) -> Result<pb::ExportResponse, Status> {
    d.rights()
        .await
        .export(authed(
            pb::ExportRequest {
                subject: Some(pb::export_request::Subject::SubjectId(id.into())),
                format: String::new(),
            },
            dpo,
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn erase_request(id: &str, suppress: bool) -> pb::EraseRequest {
    pb::EraseRequest {
        subject_id: id.into(),
        request_ref: format!("CRASH-{id}"),
        suppress,
    }
}

/// The access log verifies (server side) and holds at least `at_least` entries; returns how
/// many it holds.
async fn verify_log(d: &Daemon, auditor: &Creds, at_least: u64, context: &str) -> u64 {
    let v = d
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(
        v.ok,
        "{context}: the access log does not verify: entry {} {}: {}",
        v.bad_seq, v.problem, v.detail
    );
    assert!(
        v.entries >= at_least,
        "{context}: the access log lost acknowledged entries ({} < {at_least})",
        v.entries
    );
    v.entries
}

/// The access log exported with `vaultctl` verifies offline with the public key alone.
fn verify_log_offline(d: &Daemon, auditor: &Creds, dir: &Path) {
    let ctl = |args: &[&str]| {
        Command::new(VAULTCTL)
            .args(args)
            .env("VAULT_ADDR", format!("http://{}", d.addr))
            .env("VAULT_TOKEN", &auditor.token)
            .env_remove("VAULT_PURPOSE")
            .output()
            .unwrap()
    };
    let log = dir.join("crash-log.jsonl");
    let exported = ctl(&["audit", "export", "--out", log.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let key = ctl(&["audit", "public-key"]);
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let key_path = dir.join("crash-key.pub");
    std::fs::write(&key_path, &key.stdout).unwrap();
    let verified = Command::new(VAULTCTL)
        .args(["audit", "verify", log.to_str().unwrap()])
        .args(["--public-key", key_path.to_str().unwrap()])
        .env("VAULT_ADDR", "http://127.0.0.1:1") // offline: nothing listens there
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "offline verification failed: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// SIGKILLs the daemon after `delay` while the calls of `workers` run, then waits for them.
async fn kill_during<T: Send + 'static>(
    daemon: &mut Daemon,
    delay: Duration,
    workers: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    tokio::time::sleep(delay).await;
    tokio::task::block_in_place(|| daemon.kill9());
    let mut out = Vec::new();
    for w in workers {
        out.push(w.await.unwrap());
    }
    out
}

/// What Import calls did before the kill: rows acknowledged, rows of cut calls.
#[derive(Default)]
struct ImportOutcome {
    acked: Vec<Row>,
    in_doubt: Vec<Row>,
}

/// Sends Import calls of fresh rows, one after another, until one fails (the kill).
async fn import_until_killed(
    mut client: SupportersClient<Channel>,
    creds: Creds,
    next_row: Arc<AtomicUsize>,
) -> ImportOutcome {
    let mut outcome = ImportOutcome::default();
    loop {
        let rows: Vec<Row> = (0..ROWS_PER_IMPORT)
            .map(|_| Row::new("import", next_row.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let messages: Vec<Supporter> = rows.iter().map(Row::message).collect();
        match client
            .import(authed(tokio_stream::iter(messages), &creds))
            .await
        {
            Ok(reply) => {
                let reply = reply.into_inner();
                assert!(reply.rejected.is_empty(), "rows rejected: {:?}", reply.rejected);
                assert_eq!(reply.created as usize, rows.len(), "fresh rows not all created");
                outcome.acked.extend(rows);
            }
            Err(_) => {
                outcome.in_doubt.extend(rows);
                return outcome;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_imports_keeps_acknowledged_rows_and_never_half_a_row() {
    let started = std::time::Instant::now();
    let mut delays = Delays::seeded("kill_9_during_imports");
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let clients = Clients::create(&daemon).await;
    let next_row = Arc::new(AtomicUsize::new(0));
    let mut acked: Vec<Row> = Vec::new();
    let mut in_doubt: Vec<Row> = Vec::new();
    let mut log_entries = 0;
    let mut cut_calls = 0;
    for round in 0..=ROUNDS {
        let context = format!("round {round}");
        if round > 0 {
            daemon = Daemon::start(dir.path());
        }
        // The log verifies and kept the entries of every acknowledged row.
        log_entries = verify_log(&daemon, &clients.auditor, log_entries, &context).await;

        let everyone = search_all(&daemon, &clients.member).await;
        let by_email: HashMap<&str, &Supporter> =
            everyone.iter().map(|s| (s.email.as_str(), s)).collect();
        assert_eq!(by_email.len(), everyone.len(), "{context}: two supporters share an email");
        let consented: HashSet<String> = search_all(&daemon, &clients.news)
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        // Every acknowledged row is there, whole: record, tag, consent.
        for row in &acked {
            let s = by_email
                .get(row.email.as_str())
                .unwrap_or_else(|| panic!("{context}: acknowledged row {} lost", row.tag));
            row.assert_is(s, &context);
            assert!(consented.contains(&s.id), "{context}: consent of {} lost", row.tag);
        }
        // A row of a cut call is all there or not at all.
        let (mut present, mut absent) = (0, 0);
        for row in &in_doubt {
            let by_mail = lookup(
                &daemon,
                &clients.member,
                pb::lookup_request::Key::Email(row.email.clone()),
            )
            .await;
            let by_phone = lookup(
                &daemon,
                &clients.member,
                pb::lookup_request::Key::Phone(row.phone.clone()),
            )
            .await;
            match by_email.get(row.email.as_str()) {
                Some(s) => {
                    present += 1;
                    row.assert_is(s, &context);
                    assert!(consented.contains(&s.id), "{context}: {} without its consent", row.tag);
                    assert_eq!(by_mail.unwrap().id, s.id, "{context}: email index of {}", row.tag);
                    assert_eq!(by_phone.unwrap().id, s.id, "{context}: phone index of {}", row.tag);
                }
                None => {
                    absent += 1;
                    assert_eq!(by_mail.unwrap_err().code(), Code::NotFound, "{context}: {}", row.tag);
                    assert_eq!(by_phone.unwrap_err().code(), Code::NotFound, "{context}: {}", row.tag);
                }
            }
        }
        // Nothing else: no duplicate, no stray record of a cut row.
        assert_eq!(
            everyone.len(),
            acked.len() + present,
            "{context}: supporters that no row accounts for"
        );
        // Importing the cut rows again completes exactly the absent ones: a leftover index
        // entry, suppression or consent of a half-written row would make this fail or differ.
        if !in_doubt.is_empty() {
            let messages: Vec<Supporter> = in_doubt.iter().map(Row::message).collect();
            let reply = daemon
                .supporters()
                .await
                .import(authed(tokio_stream::iter(messages), &clients.member))
                .await
                .unwrap()
                .into_inner();
            assert!(reply.rejected.is_empty(), "{context}: {:?}", reply.rejected);
            assert_eq!(
                (reply.created, reply.updated, reply.unchanged),
                (absent as u64, 0, present as u64),
                "{context}: re-importing the rows of cut calls"
            );
            acked.append(&mut in_doubt);
        }
        if round == ROUNDS {
            verify_log_offline(&daemon, &clients.auditor, dir.path());
            assert!(daemon.terminate().success());
            break;
        }

        // Load, and the kill somewhere in it.
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            workers.push(tokio::spawn(import_until_killed(
                daemon.supporters().await,
                clients.member.clone(),
                Arc::clone(&next_row),
            )));
        }
        for outcome in kill_during(&mut daemon, delays.kill_delay(), workers).await {
            log_entries += outcome.acked.len() as u64; // one entry per row
            acked.extend(outcome.acked);
            cut_calls += usize::from(!outcome.in_doubt.is_empty());
            in_doubt.extend(outcome.in_doubt);
        }
    }
    println!(
        "{ROUNDS} kills: {} rows acknowledged, {cut_calls} calls cut by the kill, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(acked.len() >= ROUNDS, "too few rows went through to test anything");
    assert!(cut_calls >= ROUNDS, "the kills should land while calls are in flight");
}

/// The live and erased supporters of the erasure test.
struct Population {
    live: Vec<(String, Row)>,
    /// Erased, with the receipt id when the erasure was acknowledged, and whether it asked
    /// for suppression.
    erased: Vec<(String, Row, Option<String>, bool)>,
}

/// Erases supporters from the shared queue one after another until one erasure fails (the
/// kill). Returns the acknowledged ones with their receipt, and the cut one.
async fn erase_until_killed(
    mut client: RightsClient<Channel>,
    dpo: Creds,
    queue: Arc<Mutex<Vec<(String, Row)>>>,
) -> (Vec<(String, Row, String, bool)>, Option<(String, Row, bool)>) {
    let mut done = Vec::new();
    loop {
        let Some((id, row)) = queue.lock().unwrap().pop() else {
            return (done, None);
        };
        // Half of them with suppression: more to write, and to get wrong.
        let suppress = row.tag.ends_with(['0', '2', '4', '6', '8']);
        match client.erase(authed(erase_request(&id, suppress), &dpo)).await {
            Ok(receipt) => {
                let receipt = receipt.into_inner();
                assert_eq!(receipt.subject_id, id);
                done.push((id, row, receipt.receipt_id, suppress));
            }
            Err(_) => return (done, Some((id, row, suppress))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_erasures_keeps_acknowledged_erasures_and_never_half_one() {
    let started = std::time::Instant::now();
    let mut delays = Delays::seeded("kill_9_during_erasures");
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let clients = Clients::create(&daemon).await;
    let mut pop = Population {
        live: Vec::new(),
        erased: Vec::new(),
    };
    let mut next_row = 0;
    let mut in_doubt: Vec<(String, Row, bool)> = Vec::new();
    let mut log_entries = 0;
    let mut acked_this_round: Vec<usize> = Vec::new(); // indexes into pop.erased
    for round in 0..=ROUNDS {
        let context = format!("round {round}");
        if round > 0 {
            daemon = Daemon::start(dir.path());
        }
        log_entries = verify_log(&daemon, &clients.auditor, log_entries, &context).await;

        // A cut erasure is complete or not started.
        for (id, row, suppress) in in_doubt.drain(..) {
            match get(&daemon, &clients.member, &id).await {
                Ok(s) => {
                    // Not started: the person is whole and reachable everywhere.
                    row.assert_is(&s, &context);
                    let found = lookup(
                        &daemon,
                        &clients.member,
                        pb::lookup_request::Key::Email(row.email.clone()),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{context}: {} readable, not by email: {e}", row.tag));
                    assert_eq!(found.id, id);
                    export(&daemon, &clients.dpo, &id)
                        .await
                        .unwrap_or_else(|e| panic!("{context}: {} readable, not exportable: {e}", row.tag));
                    pop.live.push((id, row));
                }
                Err(e) => {
                    assert_eq!(e.code(), Code::NotFound, "{context}: {}: {e}", row.tag);
                    pop.erased.push((id, row, None, suppress));
                    acked_this_round.push(pop.erased.len() - 1);
                }
            }
        }
        // Acknowledged (and completed cut) erasures are complete: no read path finds the
        // person, and erasing again returns the same receipt.
        for &i in &acked_this_round {
            let (id, row, receipt, _) = &pop.erased[i];
            let gone = |r: Result<Supporter, Status>, path: &str| {
                assert_eq!(
                    r.map(|s| s.id).unwrap_err().code(),
                    Code::NotFound,
                    "{context}: erased {} still found by {path}",
                    row.tag
                );
            };
            gone(get(&daemon, &clients.member, id).await, "Get");
            gone(
                lookup(&daemon, &clients.member, pb::lookup_request::Key::Email(row.email.clone())).await,
                "Lookup by email",
            );
            gone(
                lookup(&daemon, &clients.member, pb::lookup_request::Key::Phone(row.phone.clone())).await,
                "Lookup by phone",
            );
            assert_eq!(
                export(&daemon, &clients.dpo, id).await.unwrap_err().code(),
                Code::NotFound,
                "{context}: erased {} still exported",
                row.tag
            );
            let again = daemon
                .rights()
                .await
                .erase(authed(erase_request(id, false), &clients.dpo))
                .await
                .unwrap()
                .into_inner();
            if let Some(receipt) = receipt {
                assert_eq!(&again.receipt_id, receipt, "{context}: receipt of {}", row.tag);
            }
        }
        acked_this_round.clear();
        // Everyone live is whole, with consent; nobody erased is in any segment.
        let everyone = search_all(&daemon, &clients.member).await;
        let by_id: HashMap<&str, &Supporter> = everyone.iter().map(|s| (s.id.as_str(), s)).collect();
        let consented: HashSet<String> = search_all(&daemon, &clients.news)
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        for (id, row) in &pop.live {
            let s = by_id
                .get(id.as_str())
                .unwrap_or_else(|| panic!("{context}: {} lost without an erasure", row.tag));
            row.assert_is(s, &context);
            assert!(consented.contains(id), "{context}: consent of {} lost", row.tag);
        }
        assert_eq!(everyone.len(), pop.live.len(), "{context}: an erased supporter is back");

        if round == ROUNDS {
            // Suppression held too: the suppressed ones cannot be imported again; the
            // others can (their index entries are gone, not dangling).
            let rows: Vec<&(String, Row, Option<String>, bool)> = pop.erased.iter().collect();
            let reply = daemon
                .supporters()
                .await
                .import(authed(
                    tokio_stream::iter(rows.iter().map(|(_, row, ..)| row.message()).collect::<Vec<_>>()),
                    &clients.member,
                ))
                .await
                .unwrap()
                .into_inner();
            let suppressed: Vec<u64> = rows
                .iter()
                .enumerate()
                .filter(|(_, (.., suppress))| *suppress)
                .map(|(i, _)| i as u64 + 1)
                .collect();
            let refused: Vec<u64> = reply.rejected.iter().map(|r| r.row).collect();
            assert_eq!(refused, suppressed, "exactly the suppressed rows are refused");
            assert_eq!(reply.created as usize, rows.len() - suppressed.len());
            verify_log_offline(&daemon, &clients.auditor, dir.path());
            assert!(daemon.terminate().success());
            println!(
                "{ROUNDS} kills: {} erasures ({} acknowledged), {:.1} s",
                pop.erased.len(),
                pop.erased.iter().filter(|e| e.2.is_some()).count(),
                started.elapsed().as_secs_f64()
            );
            assert!(pop.erased.len() >= ROUNDS, "too few erasures went through to test anything");
            break;
        }

        // Fresh people to erase this round, imported (acknowledged) before the load starts.
        let rows: Vec<Row> = (0..ERASABLE_PER_ROUND)
            .map(|_| {
                next_row += 1;
                Row::new("erase", next_row)
            })
            .collect();
        let reply = daemon
            .supporters()
            .await
            .import(authed(
                tokio_stream::iter(rows.iter().map(Row::message).collect::<Vec<_>>()),
                &clients.member,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.created as usize, rows.len(), "{context}: {:?}", reply.rejected);
        log_entries += rows.len() as u64;
        for row in rows {
            let id = lookup(&daemon, &clients.member, pb::lookup_request::Key::Email(row.email.clone()))
                .await
                .unwrap()
                .id;
            pop.live.push((id, row));
        }

        // Erase the live ones concurrently, and kill somewhere in it.
        let queue = Arc::new(Mutex::new(std::mem::take(&mut pop.live)));
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            workers.push(tokio::spawn(erase_until_killed(
                daemon.rights().await,
                clients.dpo.clone(),
                Arc::clone(&queue),
            )));
        }
        for (done, cut) in kill_during(&mut daemon, delays.kill_delay(), workers).await {
            log_entries += done.len() as u64; // one entry per erasure
            for (id, row, receipt, suppress) in done {
                pop.erased.push((id, row, Some(receipt), suppress));
                acked_this_round.push(pop.erased.len() - 1);
            }
            in_doubt.extend(cut);
        }
        // Not reached by any worker: untouched.
        pop.live = std::mem::take(&mut *queue.lock().unwrap());
    }
}
