//! Invariant: a write acknowledged before `kill -9` of the daemon is there after restart,
//! and a write cut by the kill is all there or not at all: upserts and tags, imports, and
//! erasures, with the access log verifying after every restart.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use vault_proto::v1 as pb;
use vault_proto::v1::audit_client::AuditClient;
use vault_proto::v1::rights_client::RightsClient;
use vault_proto::v1::supporters_client::SupportersClient;

use vault_tests::{Creds, Daemon, Supporter, VAULTCTL, authed, supporter};

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
// check everything known so far, put load on it from concurrent clients, and SIGKILL it at
// a random point: after a random delay (0–150 ms, from a seeded generator: the seed is
// printed, and `VAULT_CRASH_SEED=<seed>` replays the same choices).
//
// "Acknowledged" is per call: many small calls run at once, and a call whose reply arrived
// before the kill is acknowledged: everything it did must be there after the restart. A
// call cut by the kill is "in doubt": each of its rows (or its erasure) must be either
// entirely done or entirely not started, never half. Everything is checked through the API
// only, so the same tests hold the PostgreSQL backend to the same guarantee.
//
// Every call to the vault waits for its access-log entry to be durable, so the checks run
// their calls concurrently (group commit makes one flush serve them all).

/// Restarts per test.
const ROUNDS: usize = 20;
/// Longest wait before the kill (the shortest is zero).
const MAX_KILL_DELAY_MS: u64 = 150;
/// Concurrent client calls while the kill lands.
const WORKERS: usize = 3;
/// Rows per Import call: small, so many calls are acknowledged before a kill.
const ROWS_PER_IMPORT: usize = 3;
/// Live supporters at the start of each round of the erasure test (topped up by an import).
const ERASABLE: usize = 24;
/// Calls the checks run at once.
const CHECKS_IN_FLIGHT: usize = 16;

/// The test's random choices (SplitMix64: a few lines, no dependency, the same sequence on
/// every machine).
struct Chance(u64);

impl Chance {
    /// Seeded from `VAULT_CRASH_SEED`, else from the clock; the seed is printed either way.
    fn seeded(test: &str) -> Chance {
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
        Chance(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn kill_delay(&mut self) -> Duration {
        Duration::from_millis(self.below(MAX_KILL_DELAY_MS + 1))
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
    /// Row number `n` of the test's rows of `kind` (`import` or `erase`).
    fn new(kind: &str, n: usize) -> Row {
        Row {
            email: format!("crash-{kind}-{n}@crash.test"),
            // In E.164 already, as the vault stores it; +33 6 1… for imports, +33 6 2… for
            // erasures, so no two rows share a number.
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
            source: "import".into(),
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
        assert_eq!(
            s.tags,
            std::slice::from_ref(&self.tag),
            "{context}: tags of {}",
            self.tag
        );
    }
}

/// The clients of a crash test, created once (they are acknowledged writes too).
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

/// Connections to one daemon with the test's clients; cheap to clone into tasks.
#[derive(Clone)]
struct Vault {
    supporters: SupportersClient<Channel>,
    rights: RightsClient<Channel>,
    audit: AuditClient<Channel>,
    clients: Clients,
}

impl Vault {
    async fn connect(d: &Daemon, clients: &Clients) -> Vault {
        Vault {
            supporters: d.supporters().await,
            rights: d.rights().await,
            audit: d.audit().await,
            clients: clients.clone(),
        }
    }

    /// Every supporter `creds` may see (only the consented ones under a consent-based
    /// purpose), following page tokens.
    async fn search_all(&self, creds: &Creds) -> Vec<Supporter> {
        let mut req = pb::SearchRequest {
            page_size: 10_000,
            ..Default::default()
        };
        let mut out = Vec::new();
        loop {
            let resp = self
                .supporters
                .clone()
                .search(authed(req.clone(), creds))
                .await
                .unwrap();
            let next = resp
                .metadata()
                .get(vault_proto::metadata::NEXT_PAGE_TOKEN)
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

    async fn lookup(&self, key: pb::lookup_request::Key) -> Result<Supporter, Status> {
        self.supporters
            .clone()
            .lookup(authed(
                pb::LookupRequest { key: Some(key) },
                &self.clients.member,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Lookups by the row's email and by its phone.
    async fn lookups(&self, row: &Row) -> [Result<Supporter, Status>; 2] {
        let (by_email, by_phone) = tokio::join!(
            self.lookup(pb::lookup_request::Key::Email(row.email.clone())),
            self.lookup(pb::lookup_request::Key::Phone(row.phone.clone())),
        );
        [by_email, by_phone]
    }

    async fn get(&self, id: &str) -> Result<Supporter, Status> {
        self.supporters
            .clone()
            .get(authed(
                pb::GetRequest {
                    id: id.into(),
                    fields: None,
                },
                &self.clients.member,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn export(&self, id: &str) -> Result<pb::ExportResponse, Status> {
        self.rights
            .clone()
            .export(authed(
                pb::ExportRequest {
                    subject: Some(pb::export_request::Subject::SubjectId(id.into())),
                    format: String::new(),
                },
                &self.clients.dpo,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn erase(&self, id: &str, suppress: bool) -> Result<pb::ErasureReceipt, Status> {
        self.rights
            .clone()
            .erase(authed(
                pb::EraseRequest {
                    subject_id: id.into(),
                    request_ref: "CRASH-1".into(),
                    suppress,
                },
                &self.clients.dpo,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn import(&self, rows: &[Row]) -> pb::ImportResponse {
        let messages: Vec<Supporter> = rows.iter().map(Row::message).collect();
        self.supporters
            .clone()
            .import(authed(tokio_stream::iter(messages), &self.clients.member))
            .await
            .unwrap()
            .into_inner()
    }

    /// The access log verifies (server side) and holds at least `at_least` entries;
    /// returns how many it holds.
    async fn verify_log(&self, at_least: u64, context: &str) -> u64 {
        let v = self
            .audit
            .clone()
            .verify(authed(pb::VerifyRequest::default(), &self.clients.auditor))
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
}

/// Runs `check` on every item, [`CHECKS_IN_FLIGHT`] at a time, results in order.
async fn concurrently<I, T, F, Fut>(items: Vec<I>, check: F) -> Vec<T>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let batch: Vec<_> = items
            .by_ref()
            .take(CHECKS_IN_FLIGHT)
            .map(|i| tokio::spawn(check(i)))
            .collect();
        for task in batch {
            out.push(task.await.unwrap());
        }
    }
    out
}

/// The access log exported with `vaultctl` verifies offline with the public key alone.
fn verify_log_offline(d: &Daemon, auditor: &Creds, dir: &Path) {
    let ctl = |args: &[&str]| {
        Command::new(&*VAULTCTL)
            .args(args)
            .env("VAULT_ADDR", format!("http://{}", d.addr))
            .env("VAULT_TOKEN", &auditor.token)
            .env_remove("VAULT_PURPOSE")
            .output()
            .unwrap()
    };
    let log = dir.join("crash-log.jsonl");
    let exported = ctl(&["audit", "export", "--out", log.to_str().unwrap()]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let key = ctl(&["audit", "public-key"]);
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let key_path = dir.join("crash-key.pub");
    std::fs::write(&key_path, &key.stdout).unwrap();
    let verified = Command::new(&*VAULTCTL)
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

/// SIGKILLs the daemon once `trigger` completes, then collects what `workers` did.
async fn kill_when<T: Send + 'static>(
    daemon: &mut Daemon,
    trigger: impl std::future::Future<Output = ()>,
    workers: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    trigger.await;
    tokio::task::block_in_place(|| daemon.kill9());
    let mut out = Vec::new();
    for w in workers {
        out.push(w.await.unwrap());
    }
    out
}

/// What one worker's Import calls did before the kill.
#[derive(Default)]
struct ImportOutcome {
    acked: Vec<Row>,
    /// The rows of the call the kill cut.
    in_doubt: Vec<Row>,
}

/// Sends Import calls of fresh rows, one after another, until one fails (the kill).
async fn import_until_killed(vault: Vault, next_row: Arc<AtomicUsize>) -> ImportOutcome {
    let mut outcome = ImportOutcome::default();
    loop {
        let rows: Vec<Row> = (0..ROWS_PER_IMPORT)
            .map(|_| Row::new("import", next_row.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let messages: Vec<Supporter> = rows.iter().map(Row::message).collect();
        let reply = vault
            .supporters
            .clone()
            .import(authed(tokio_stream::iter(messages), &vault.clients.member))
            .await;
        match reply {
            Ok(reply) => {
                let reply = reply.into_inner();
                assert!(reply.rejected.is_empty(), "{:?}", reply.rejected);
                assert_eq!(
                    reply.created as usize,
                    rows.len(),
                    "fresh rows, all created"
                );
                outcome.acked.extend(rows);
            }
            Err(_) => {
                outcome.in_doubt = rows;
                return outcome;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_imports_keeps_acknowledged_rows_and_never_half_a_row() {
    let started = std::time::Instant::now();
    let mut chance = Chance::seeded("kill_9_during_imports");
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let clients = Clients::create(&daemon).await;
    let next_row = Arc::new(AtomicUsize::new(0));
    let mut acked: Vec<Row> = Vec::new();
    let mut in_doubt: Vec<Row> = Vec::new();
    let (mut log_entries, mut cut_calls) = (0, 0);
    for round in 0..=ROUNDS {
        let context = format!("round {round}");
        if round > 0 {
            daemon = Daemon::start(dir.path());
        }
        let vault = Vault::connect(&daemon, &clients).await;
        // The log verifies, and kept the entry of every acknowledged row.
        log_entries = vault.verify_log(log_entries, &context).await;

        let everyone = vault.search_all(&clients.member).await;
        let by_email: HashMap<&str, &Supporter> =
            everyone.iter().map(|s| (s.email.as_str(), s)).collect();
        assert_eq!(by_email.len(), everyone.len(), "{context}: an email twice");
        let consented: HashSet<String> = vault
            .search_all(&clients.news)
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
            assert!(
                consented.contains(&s.id),
                "{context}: consent of {} lost",
                row.tag
            );
        }
        // A row of a cut call is all there (record, consent, both indexes) or not at all.
        let lookups = concurrently(in_doubt.clone(), |row| {
            let vault = vault.clone();
            async move { vault.lookups(&row).await }
        })
        .await;
        let mut present = 0;
        for (row, [by_mail, by_phone]) in in_doubt.iter().zip(lookups) {
            if let Some(s) = by_email.get(row.email.as_str()) {
                present += 1;
                row.assert_is(s, &context);
                assert!(
                    consented.contains(&s.id),
                    "{context}: {} lacks consent",
                    row.tag
                );
                assert_eq!(by_mail.unwrap().id, s.id, "{context}: email of {}", row.tag);
                assert_eq!(
                    by_phone.unwrap().id,
                    s.id,
                    "{context}: phone of {}",
                    row.tag
                );
            } else {
                for r in [by_mail, by_phone] {
                    let code = r.map(|s| s.id).unwrap_err().code();
                    assert_eq!(
                        code,
                        Code::NotFound,
                        "{context}: half of {} is there",
                        row.tag
                    );
                }
            }
        }
        // Nothing else: no duplicate, no stray record.
        assert_eq!(
            everyone.len(),
            acked.len() + present,
            "{context}: supporters no row accounts for"
        );
        // Importing the cut rows again completes exactly the absent ones: a leftover index
        // entry or consent event of a half-written row would make this fail or differ.
        if !in_doubt.is_empty() {
            let reply = vault.import(&in_doubt).await;
            assert!(reply.rejected.is_empty(), "{context}: {:?}", reply.rejected);
            let absent = (in_doubt.len() - present) as u64;
            assert_eq!(
                (reply.created, reply.updated, reply.unchanged),
                (absent, 0, present as u64),
                "{context}: importing the rows of cut calls again"
            );
            acked.append(&mut in_doubt);
        }
        if round == ROUNDS {
            verify_log_offline(&daemon, &clients.auditor, dir.path());
            drop(vault);
            assert!(daemon.terminate().success());
            break;
        }

        // Load, and the kill somewhere in it.
        let workers = (0..WORKERS)
            .map(|_| tokio::spawn(import_until_killed(vault.clone(), Arc::clone(&next_row))))
            .collect();
        let delay = chance.kill_delay();
        for outcome in kill_when(&mut daemon, tokio::time::sleep(delay), workers).await {
            log_entries += outcome.acked.len() as u64; // one entry per row
            acked.extend(outcome.acked);
            cut_calls += usize::from(!outcome.in_doubt.is_empty());
            in_doubt.extend(outcome.in_doubt);
        }
    }
    println!(
        "{ROUNDS} kills: {} rows acknowledged, {cut_calls} Import calls cut, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        acked.len() >= ROUNDS,
        "too few rows went through to test anything"
    );
    assert!(
        cut_calls >= ROUNDS,
        "every kill lands while calls are in flight"
    );
}

/// A supporter of the erasure test.
#[derive(Clone, Debug)]
struct Person {
    id: String,
    row: Row,
    /// Erasures of half of them ask for suppression: more to write, and to get wrong.
    suppress: bool,
}

/// What one worker's erasures did before the kill.
#[derive(Default)]
struct EraseOutcome {
    /// Acknowledged, with the receipt id.
    acked: Vec<(Person, String)>,
    /// The erasure the kill cut.
    in_doubt: Option<Person>,
}

/// Erases people from the shared queue one after another until one erasure fails (the
/// kill) or the queue is empty; counts acknowledged erasures in `done`.
async fn erase_until_killed(
    vault: Vault,
    queue: Arc<Mutex<Vec<Person>>>,
    done: Arc<tokio::sync::watch::Sender<usize>>,
) -> EraseOutcome {
    let mut outcome = EraseOutcome::default();
    loop {
        let Some(person) = queue.lock().unwrap().pop() else {
            return outcome;
        };
        match vault.erase(&person.id, person.suppress).await {
            Ok(receipt) => {
                assert_eq!(receipt.subject_id, person.id);
                outcome.acked.push((person, receipt.receipt_id));
                done.send_modify(|n| *n += 1);
            }
            Err(_) => {
                outcome.in_doubt = Some(person);
                return outcome;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_erasures_keeps_acknowledged_erasures_and_never_half_one() {
    let started = std::time::Instant::now();
    let mut chance = Chance::seeded("kill_9_during_erasures");
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let clients = Clients::create(&daemon).await;
    let mut live: Vec<Person> = Vec::new();
    // Erased people, with the receipt id when the erasure was acknowledged.
    let mut erased: Vec<(Person, Option<String>)> = Vec::new();
    let mut in_doubt: Vec<Person> = Vec::new();
    // Erasures to check after the restart: acknowledged ones, and cut ones found complete.
    let mut to_check: Vec<(Person, Option<String>)> = Vec::new();
    let (mut next_row, mut log_entries, mut cut_calls) = (0, 0, 0);
    for round in 0..=ROUNDS {
        let context = format!("round {round}");
        if round > 0 {
            daemon = Daemon::start(dir.path());
        }
        let vault = Vault::connect(&daemon, &clients).await;
        log_entries = vault.verify_log(log_entries, &context).await;

        // A cut erasure is complete or not started.
        let reads = concurrently(in_doubt.clone(), |p| {
            let vault = vault.clone();
            async move {
                let (get, lookups, export) =
                    tokio::join!(vault.get(&p.id), vault.lookups(&p.row), vault.export(&p.id));
                (get, lookups, export.map(|_| ()))
            }
        })
        .await;
        for (p, (get, [by_mail, by_phone], export)) in in_doubt.drain(..).zip(reads) {
            match get {
                Ok(s) => {
                    // Not started: the person is whole, found by every path.
                    p.row.assert_is(&s, &context);
                    for r in [by_mail, by_phone] {
                        let found = r.unwrap_or_else(|e| {
                            panic!(
                                "{context}: {} readable, not found by lookup: {e}",
                                p.row.tag
                            )
                        });
                        assert_eq!(found.id, p.id);
                    }
                    export.unwrap_or_else(|e| {
                        panic!("{context}: {} readable, not exported: {e}", p.row.tag)
                    });
                    live.push(p);
                }
                Err(e) => {
                    assert_eq!(e.code(), Code::NotFound, "{context}: {}: {e}", p.row.tag);
                    to_check.push((p.clone(), None));
                    erased.push((p, None));
                }
            }
        }
        // Erasures are complete: no read path finds the person, and erasing again returns
        // the receipt of the first time.
        concurrently(std::mem::take(&mut to_check), |(p, receipt)| {
            let (vault, context) = (vault.clone(), context.clone());
            async move {
                let (get, [by_mail, by_phone], export, again) = tokio::join!(
                    vault.get(&p.id),
                    vault.lookups(&p.row),
                    vault.export(&p.id),
                    vault.erase(&p.id, false),
                );
                for (r, path) in [(get, "Get"), (by_mail, "email"), (by_phone, "phone")] {
                    let code = r.map(|s| s.id).unwrap_err().code();
                    assert_eq!(
                        code,
                        Code::NotFound,
                        "{context}: erased {} found by {path}",
                        p.row.tag
                    );
                }
                let code = export.map(|_| ()).unwrap_err().code();
                assert_eq!(
                    code,
                    Code::NotFound,
                    "{context}: erased {} exported",
                    p.row.tag
                );
                let again = again.unwrap_or_else(|e| panic!("{context}: erasing again: {e}"));
                if let Some(receipt) = receipt {
                    assert_eq!(
                        again.receipt_id, receipt,
                        "{context}: receipt of {}",
                        p.row.tag
                    );
                }
            }
        })
        .await;
        // Everyone live is whole, with consent; nobody erased is in any segment.
        let everyone = vault.search_all(&clients.member).await;
        let by_id: HashMap<&str, &Supporter> =
            everyone.iter().map(|s| (s.id.as_str(), s)).collect();
        let consented: HashSet<String> = vault
            .search_all(&clients.news)
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        for p in &live {
            let s = by_id
                .get(p.id.as_str())
                .unwrap_or_else(|| panic!("{context}: {} lost without erasure", p.row.tag));
            p.row.assert_is(s, &context);
            assert!(
                consented.contains(&p.id),
                "{context}: consent of {} lost",
                p.row.tag
            );
        }
        assert_eq!(
            everyone.len(),
            live.len(),
            "{context}: an erased supporter is back"
        );

        if round == ROUNDS {
            // Suppression held too: the suppressed people cannot be imported again, the
            // others can (their index entries are gone, not dangling).
            let rows: Vec<Row> = erased.iter().map(|(p, _)| p.row.clone()).collect();
            let reply = vault.import(&rows).await;
            let suppressed: Vec<u64> = (1..)
                .zip(&erased)
                .filter(|(_, (p, _))| p.suppress)
                .map(|(n, _)| n)
                .collect();
            let refused: Vec<u64> = reply.rejected.iter().map(|r| r.row).collect();
            assert_eq!(refused, suppressed, "exactly the suppressed are refused");
            assert_eq!(reply.created as usize, rows.len() - suppressed.len());
            verify_log_offline(&daemon, &clients.auditor, dir.path());
            drop(vault);
            assert!(daemon.terminate().success());
            break;
        }

        // Fresh people to erase, imported (acknowledged) before the load starts.
        let fresh: Vec<Row> = (live.len()..ERASABLE)
            .map(|_| {
                next_row += 1;
                Row::new("erase", next_row)
            })
            .collect();
        let reply = vault.import(&fresh).await;
        assert_eq!(
            reply.created as usize,
            fresh.len(),
            "{context}: {:?}",
            reply.rejected
        );
        log_entries += fresh.len() as u64;
        let ids: HashMap<String, String> = vault
            .search_all(&clients.member)
            .await
            .into_iter()
            .map(|s| (s.email, s.id))
            .collect();
        live.extend(fresh.into_iter().enumerate().map(|(i, row)| Person {
            id: ids[&row.email].clone(),
            suppress: (next_row + i) % 2 == 0,
            row,
        }));

        // Erase them concurrently, and kill after a random delay once at least one of them
        // is acknowledged (so every round tests a kept erasure, however slow the store), or
        // earlier once a random number of them is (so the kill lands among the calls on a
        // fast machine too).
        let queue = Arc::new(Mutex::new(std::mem::take(&mut live)));
        let (done, mut progress) = tokio::sync::watch::channel(0);
        let done = Arc::new(done);
        let workers = (0..WORKERS)
            .map(|_| {
                tokio::spawn(erase_until_killed(
                    vault.clone(),
                    Arc::clone(&queue),
                    Arc::clone(&done),
                ))
            })
            .collect();
        let delay = chance.kill_delay();
        let enough = 1 + chance.below((ERASABLE - WORKERS) as u64) as usize;
        let mut first = progress.clone();
        let trigger = async move {
            tokio::select! {
                () = async {
                    tokio::time::sleep(delay).await;
                    // Bounded: a store that acknowledges nothing fails the floor below.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        first.wait_for(|n| *n >= 1),
                    )
                    .await;
                } => {}
                _ = progress.wait_for(|n| *n >= enough) => {}
            }
        };
        for outcome in kill_when(&mut daemon, trigger, workers).await {
            log_entries += outcome.acked.len() as u64; // one entry per erasure
            for (p, receipt) in outcome.acked {
                to_check.push((p.clone(), Some(receipt.clone())));
                erased.push((p, Some(receipt)));
            }
            cut_calls += usize::from(outcome.in_doubt.is_some());
            in_doubt.extend(outcome.in_doubt);
        }
        // Those no worker reached are untouched.
        live = std::mem::take(&mut *queue.lock().unwrap());
    }
    println!(
        "{ROUNDS} kills: {} erased ({} acknowledged), {cut_calls} Erase calls cut, {:.1} s",
        erased.len(),
        erased.iter().filter(|(_, r)| r.is_some()).count(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        erased.len() >= ROUNDS,
        "too few erasures went through to test anything"
    );
    assert!(
        cut_calls >= ROUNDS / 2,
        "kills should land while erasures are in flight"
    );
}
