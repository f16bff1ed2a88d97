//! `vault-load`: a load generator for a running vault (or several replicas of one).
//!
//! It registers its own clients with the admin token (a campaign tool for `membership` and
//! `newsletter`, and a `dpo` client for erasures), prepares what the scenario needs, then
//! drives it at each requested number of calls in flight, spread over the given addresses,
//! and prints one JSON line per run: operations per second, p50 and p99 latency, and what
//! the scenario adds (supporters per second, segment size, the daemon's peak memory, the
//! data directory's size). It talks to loopback addresses only and stops by itself: runs are
//! bounded by time (`--seconds`) or by count (`--count`). See docs/benchmarks.md.
//!
//! The `import` scenario writes a deterministic population (from `--rng-seed`): supporter
//! `i` has the email `p<i>.s<seed>@load.test`, so later runs (`get`, `lookup`, `search` with
//! `--population N`) find the same people without keeping any state.

#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use vault_proto::metadata::DPO_PURPOSE;
use vault_proto::v1 as pb;
use vault_proto::v1::rights_client::RightsClient;
use vault_proto::v1::supporters_client::SupportersClient;
use vault_server::client::{CallMetadata, Session, TlsFiles, Token};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `grpc.health.v1.Health/Check`: the ceiling of the gRPC path itself.
    Health,
    /// Audited `Supporters.Get` by id (of seeded supporters, or of the imported population
    /// with `--population`).
    Get,
    /// Audited `Supporters.Lookup` by email (seeded, or the imported population).
    Lookup,
    /// Durable audited `Supporters.Upsert` of new supporters.
    Upsert,
    /// `Supporters.Import` of `--count` generated supporters (default 1,000,000), one stream
    /// per call in flight, `--batch` rows per call; reports supporters per second.
    Import,
    /// `Supporters.Search` of the 1 % segment (a tag x postcode) of the imported population
    /// under `newsletter`, every page of 10,000; reports the time to stream it whole.
    Search,
    /// `Rights.Erase` of `--count` fresh supporters (default 1,000) by a dpo client.
    Erase,
}

#[derive(Debug, Parser)]
#[command(
    name = "vault-load",
    about = "Load generator for the vault daemon (loopback only)"
)]
struct Args {
    /// Daemon addresses (comma-separated; calls are spread over them), e.g. 127.0.0.1:50051.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:50051")]
    addr: Vec<SocketAddr>,
    /// The bootstrap admin token file (to register the load clients).
    #[arg(long, default_value = "./vault-data/admin.token")]
    admin_token_file: PathBuf,
    /// What to call.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Calls in flight; a comma-separated list runs the scenario once per value, e.g.
    /// 1,16,64 (for import: concurrent streams).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    concurrency: Vec<usize>,
    /// Seconds each run of a time-bounded scenario (health, get, lookup, upsert, search)
    /// lasts, after its preparation.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Supporters to seed (upsert) for get and lookup, or, with --population, ids of the
    /// population to resolve for get.
    #[arg(long, default_value_t = 1000)]
    seed: usize,
    /// Supporters to import (import, default 1,000,000) or to erase (erase, default 1,000).
    #[arg(long)]
    count: Option<u64>,
    /// Use the population of this size written earlier by `--scenario import` (same
    /// --rng-seed) for get, lookup and search.
    #[arg(long)]
    population: Option<u64>,
    /// Seed of the generated population.
    #[arg(long, default_value_t = 1)]
    rng_seed: u64,
    /// Rows per Import call.
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// The daemon's process id: report its peak resident memory (VmHWM).
    #[arg(long)]
    pid: Option<u32>,
    /// The daemon's data directory: report its size on disk.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

const MEMBERSHIP: &str = "membership";
const NEWSLETTER: &str = "newsletter";
/// The segment of the search scenario: exactly 1 % of the population carries this tag and
/// this postcode together.
const SEGMENT_TAG: &str = "load-segment";
const SEGMENT_POSTCODE: &str = "75011";
/// Share of the population that consents to the newsletter, in percent.
const NEWSLETTER_PERCENT: u64 = 60;
const SEARCH_PAGE_SIZE: u32 = 10_000;

/// A request that cannot be built (a token with bytes metadata cannot carry), as one line.
fn unsendable(e: vault_server::client::Error) -> String {
    e.to_string()
}

/// A failed call as one line: code and message.
fn status(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// SplitMix64: a small, fast, deterministic mixer (good enough to draw test data).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generated population: supporter `i` is a pure function of `(seed, i)`.
#[derive(Debug, Clone, Copy)]
struct Population {
    seed: u64,
}

const GIVEN: &[&str] = &[
    "Marianne", "Louis", "Camille", "Hugo", "Léa", "Jules", "Chloé", "Lucas", "Manon", "Nathan",
    "Inès", "Gabriel", "Sarah", "Arthur", "Zoé", "Raphaël",
];
const FAMILY: &[&str] = &[
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Da Silva",
];
const TAGS: &[&str] = &[
    "militant",
    "sympathisant",
    "donateur",
    "porte-a-porte",
    "jeunes",
    "seniors",
    "quartier-nord",
    "quartier-sud",
    "tractage",
    "reunion-publique",
    "elu-local",
    "syndicaliste",
    "associatif",
    "etudiant",
    "parent-eleve",
    "commercant",
];
const CITIES: &[&str] = &[
    "Paris",
    "Lyon",
    "Marseille",
    "Lille",
    "Toulouse",
    "Nantes",
    "Rennes",
    "Bordeaux",
];

impl Population {
    fn rng(self, i: u64) -> u64 {
        mix(self.seed ^ mix(i))
    }

    /// 0..100, exactly uniform over every block of 100 consecutive indices (37 is prime to
    /// 100), so the segment is exactly 1 % of any population that is a multiple of 100.
    fn class(self, i: u64) -> u64 {
        (i % 100 * 37 + self.seed) % 100
    }

    fn in_segment(self, i: u64) -> bool {
        self.class(i) == 0
    }

    fn newsletter(self, i: u64) -> bool {
        (self.rng(i) >> 7) % 100 < NEWSLETTER_PERCENT
    }

    fn email(self, i: u64) -> String {
        format!("p{i}.s{}@load.test", self.seed)
    }

    fn supporter(self, i: u64) -> pb::Supporter {
        let r = self.rng(i);
        let class = self.class(i);
        // The segment tag and postcode meet only in class 0; each also appears apart.
        let postcode = if class < 5 {
            SEGMENT_POSTCODE.to_owned()
        } else {
            let p = format!("{:02}{:03}", 1 + (r >> 20) % 95, (r >> 30) % 100 * 10);
            if p == SEGMENT_POSTCODE {
                "75012".to_owned()
            } else {
                p
            }
        };
        let mut tags: Vec<String> = (0..1 + (r >> 40) % 3)
            .map(|k| TAGS[((r >> (44 + 4 * k)) % TAGS.len() as u64) as usize].to_owned())
            .collect();
        if class == 0 || (5..14).contains(&class) {
            tags.push(SEGMENT_TAG.to_owned());
        }
        tags.sort();
        tags.dedup();
        let consents = if self.newsletter(i) {
            vec![pb::ConsentRequest {
                subject_id: String::new(),
                purpose: NEWSLETTER.into(),
                channel: "email".into(),
                source: "import".into(),
                notice_version: "load-1".into(),
                ..Default::default()
            }]
        } else {
            Vec::new()
        };
        pb::Supporter {
            given_name: GIVEN[(r % GIVEN.len() as u64) as usize].into(),
            family_name: FAMILY[((r >> 4) % FAMILY.len() as u64) as usize].into(),
            email: self.email(i),
            address: Some(pb::Address {
                line1: format!("{} rue de la République", 1 + (r >> 8) % 200),
                line2: String::new(),
                postcode,
                city: CITIES[((r >> 16) % CITIES.len() as u64) as usize].into(),
                country: "FR".into(),
            }),
            tags,
            source: format!("vault-load:{}", self.seed),
            consents,
            ..Default::default()
        }
    }

    /// Supporters of the first `n` in the segment, and those of them with newsletter consent.
    fn segment_size(self, n: u64) -> (u64, u64) {
        (0..n)
            .filter(|&i| self.in_segment(i))
            .fold((0, 0), |(all, consenting), i| {
                (all + 1, consenting + u64::from(self.newsletter(i)))
            })
    }
}

/// How a run stops.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// Start no call after this instant.
    Until(Instant),
    /// Make this many calls in all.
    Count(u64),
}

/// What a run measured.
#[derive(Debug, Default)]
struct Measured {
    /// Latency of each successful call, in microseconds, sorted.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    /// Items the calls returned or carried (supporters streamed or imported).
    items: u64,
    seconds: f64,
}

/// Runs `call(worker, index)` from `concurrency` tasks until `limit`; each call returns the
/// items it carried.
async fn drive<F, Fut>(concurrency: usize, limit: Limit, call: F) -> Result<Measured, String>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<u64, String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let (next, first_error, call) = (Arc::clone(&next), Arc::clone(&first_error), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut errors, mut items) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                match limit {
                    Limit::Until(deadline) if Instant::now() >= deadline => break,
                    Limit::Count(n) if i >= n => break,
                    _ => {}
                }
                let t = Instant::now();
                match call(w, i).await {
                    Ok(n) => {
                        lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                        items += n;
                    }
                    Err(e) => {
                        errors += 1;
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            }
            (lat, errors, items)
        }));
    }
    let mut m = Measured::default();
    for t in tasks {
        let (lat, errors, items) = t.await.map_err(|e| e.to_string())?;
        m.latencies.extend(lat);
        m.errors += errors;
        m.items += items;
    }
    m.seconds = started.elapsed().as_secs_f64();
    m.latencies.sort_unstable();
    m.first_error = first_error.lock().ok().and_then(|mut s| s.take());
    Ok(m)
}

/// The daemon's peak resident set size in KiB (`VmHWM` of /proc/PID/status).
fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status"))
}

/// Bytes under `dir`: (apparent size, allocated on disk).
fn dir_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total.0 += meta.len();
                total.1 += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn mib(bytes: u64) -> f64 {
    round1(bytes as f64 / (1024.0 * 1024.0))
}

/// Everything the runs share.
struct Setup {
    channels: Vec<Channel>,
    /// The campaign tool's calls under `membership`.
    member: CallMetadata,
    /// The campaign tool's calls under `newsletter`.
    newsletter: CallMetadata,
    /// The bootstrap admin's calls.
    admin: CallMetadata,
    /// The second admin that approves what takes two (created on first need).
    approver: tokio::sync::OnceCell<CallMetadata>,
    /// Where that admin's token is kept for the next runs on the same store.
    approver_file: PathBuf,
    run_tag: String,
    population: Population,
}

/// The second admin's token file, beside the admin token file (mode 0600).
const APPROVER_TOKEN_FILE: &str = "vault-load-approver.token";

/// Registers a load client: `CreateClient` where one admin may (an auditor), else, for what
/// takes two admins (a campaign tool, a dpo), a proposal by the bootstrap admin approved by a
/// second admin. vault-load creates that admin on first need (one admin may create the
/// second while alone, so this works on a fresh store) and keeps its token in
/// [`APPROVER_TOKEN_FILE`] beside the admin token, for the next runs on the same store.
/// Returns the client's credentials and its id.
async fn register_client(
    channel: &Channel,
    admin_calls: &CallMetadata,
    (approver, approver_file): (&tokio::sync::OnceCell<CallMetadata>, &Path),
    name: &str,
    role: &str,
    purposes: &[&str],
) -> Result<(CallMetadata, String), String> {
    let admin_session = Session::new(channel.clone(), admin_calls.clone());
    let request = pb::CreateClientRequest {
        name: name.into(),
        role: role.into(),
        purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
        cert_sha256: String::new(),
        expires_at: None,
    };
    let mut admin = admin_session.admin();
    let fail = |what: &str, e: tonic::Status| {
        format!(
            "cannot register the {role} load client ({what}): {}",
            e.message()
        )
    };
    match admin
        .create_client(admin_session.request(request.clone()).map_err(unsendable)?)
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            let calls = CallMetadata::new(Token::new(&r.token));
            return Ok((calls, r.client.map(|c| c.id).unwrap_or_default()));
        }
        Err(e) if e.code() == tonic::Code::PermissionDenied => {}
        Err(e) => return Err(fail("create", e)),
    }
    let approver = approver
        .get_or_try_init(|| async {
            if let Ok(token) = Token::read_file(approver_file) {
                return Ok(CallMetadata::new(token));
            }
            let mut admin = admin_session.admin();
            let token = admin
                .create_client(
                    admin_session
                        .request(pb::CreateClientRequest {
                            name: format!("vault-load-approver-{}", std::process::id()),
                            role: "admin".into(),
                            ..Default::default()
                        })
                        .map_err(unsendable)?,
                )
                .await
                .map(|r| r.into_inner().token)
                .map_err(|e| {
                    format!(
                        "cannot create the second admin that approves the load clients ({}): \
                         run vault-load against a fresh data directory, whose bootstrap admin \
                         is alone, or put a second admin's token in {}",
                        e.message(),
                        approver_file.display()
                    )
                })?;
            write_private(approver_file, &token).map_err(|e| {
                format!(
                    "cannot keep the approving admin's token in {}: {e}",
                    approver_file.display()
                )
            })?;
            Ok::<_, String>(CallMetadata::new(Token::new(&token)))
        })
        .await?;
    let proposed = admin
        .propose_change(
            admin_session
                .request(pb::ProposeChangeRequest {
                    change: Some(pb::propose_change_request::Change::CreateClient(request)),
                })
                .map_err(unsendable)?,
        )
        .await
        .map_err(|e| fail("propose", e))?
        .into_inner();
    let proposal = proposed
        .proposal
        .ok_or_else(|| format!("cannot register the {role} load client: no proposal returned"))?;
    let approved = admin
        .approve_proposal(
            approver
                .request(pb::ApproveProposalRequest {
                    id: proposal.id.clone(),
                    change_sha256: proposal.change_sha256.clone(),
                })
                .map_err(unsendable)?,
        )
        .await
        .map_err(|e| fail("approve", e))?
        .into_inner();
    let client_id = match approved.change {
        Some(pb::proposal::Change::CreateClient(c)) => c.id,
        _ => String::new(),
    };
    Ok((CallMetadata::new(Token::new(&proposed.token)), client_id))
}

/// Writes a new file only its owner may read, durably; never replaces one
/// ([`vault_core::fsutil::create_private`]).
fn write_private(path: &Path, contents: &str) -> Result<(), vault_core::fsutil::WriteError> {
    vault_core::fsutil::create_private(path, contents.as_bytes())
}

impl Setup {
    fn channel(&self, w: usize) -> Channel {
        self.channels[w % self.channels.len()].clone()
    }

    fn supporters(&self, w: usize) -> SupportersClient<Channel> {
        SupportersClient::new(self.channel(w))
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    async fn register(
        &self,
        name: &str,
        role: &str,
        purposes: &[&str],
    ) -> Result<CallMetadata, String> {
        register_client(
            &self.channels[0],
            &self.admin,
            (&self.approver, &self.approver_file),
            name,
            role,
            purposes,
        )
        .await
        .map(|(calls, _)| calls)
    }

    /// Upserts `n` new supporters (64 in flight) and returns their ids in order.
    async fn seed(&self, prefix: &str, n: usize) -> Result<Vec<String>, String> {
        let ids = Arc::new(Mutex::new(vec![String::new(); n]));
        let (member, run_tag, channels) = (
            self.member.clone(),
            self.run_tag.clone(),
            self.channels.clone(),
        );
        let prefix = prefix.to_owned();
        let slots = Arc::clone(&ids);
        let m = drive(64, Limit::Count(n as u64), move |w, i| {
            let (member, run_tag, prefix, slots) = (
                member.clone(),
                run_tag.clone(),
                prefix.clone(),
                Arc::clone(&slots),
            );
            let mut c = SupportersClient::new(channels[w % channels.len()].clone());
            async move {
                let s = pb::Supporter {
                    given_name: "Load".into(),
                    email: format!("{prefix}-{run_tag}-{i}@load.test"),
                    ..Default::default()
                };
                let id = c
                    .upsert(
                        member
                            .request(pb::UpsertRequest {
                                supporter: Some(s),
                                consents: vec![],
                            })
                            .map_err(unsendable)?,
                    )
                    .await
                    .map_err(status)?
                    .into_inner()
                    .id;
                if let (Ok(mut slots), Ok(i)) = (slots.lock(), usize::try_from(i)) {
                    slots[i] = id;
                }
                Ok(1)
            }
        })
        .await?;
        if let Some(e) = m.first_error {
            return Err(format!("seeding: {e}"));
        }
        let ids = ids.lock().map_err(|e| e.to_string())?.clone();
        Ok(ids)
    }

    /// Resolves the ids of `n` members of the imported population (spread over it).
    async fn resolve(&self, population: u64, n: usize) -> Result<Vec<String>, String> {
        let n = n.max(1);
        let step = (population / n as u64).max(1);
        let ids = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let (member, channels, pop) = (self.member.clone(), self.channels.clone(), self.population);
        let found = Arc::clone(&ids);
        let m = drive(64, Limit::Count(n as u64), move |w, i| {
            let (member, found) = (member.clone(), Arc::clone(&found));
            let mut c = SupportersClient::new(channels[w % channels.len()].clone());
            async move {
                let key = pb::lookup_request::Key::Email(pop.email((i * step) % population));
                let id = c
                    .lookup(
                        member
                            .request(pb::LookupRequest { key: Some(key) })
                            .map_err(unsendable)?,
                    )
                    .await
                    .map_err(status)?
                    .into_inner()
                    .id;
                if let Ok(mut f) = found.lock() {
                    f.push(id);
                }
                Ok(1)
            }
        })
        .await?;
        if let Some(e) = m.first_error {
            return Err(format!(
                "looking up the imported population (run --scenario import with the same \
                 --rng-seed first): {e}"
            ));
        }
        let ids = ids.lock().map_err(|e| e.to_string())?.clone();
        Ok(ids)
    }
}

/// Totals of the Import replies of a run.
#[derive(Default)]
struct ImportTotals {
    created: AtomicU64,
    updated: AtomicU64,
    unchanged: AtomicU64,
    rejected: AtomicU64,
    first_rejection: Mutex<Option<String>>,
    /// Rows finished, and when each call finished: (seconds since the start, rows done).
    done: Mutex<(u64, Vec<(f64, u64)>)>,
}

impl ImportTotals {
    /// Records a finished call of `rows` rows, `at` seconds after the start.
    fn finished(&self, rows: u64, at: f64) {
        if let Ok(mut done) = self.done.lock() {
            done.0 += rows;
            let total = done.0;
            done.1.push((at, total));
        }
    }

    /// Supporters per second over the first and over the last tenth of the `count` rows
    /// (a store whose cost per row grows with its size shows a falling rate).
    fn tenth_rates(&self, count: u64) -> Option<(f64, f64)> {
        let done = self.done.lock().ok()?;
        let marks = &done.1;
        let first = marks.iter().find(|(_, rows)| *rows >= count / 10)?;
        let before_last = marks
            .iter()
            .rev()
            .find(|(_, rows)| *rows <= count - count / 10)?;
        let end = marks.last()?;
        let rate = |rows: u64, secs: f64| rows as f64 / secs.max(1e-9);
        Some((
            rate(first.1, first.0),
            rate(end.1 - before_last.1, end.0 - before_last.0),
        ))
    }
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(a) = args.addr.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing to load {a}: vault-load targets loopback addresses only"
        ));
    }
    if args.concurrency.contains(&0) {
        return Err("--concurrency takes numbers of calls in flight, at least 1".into());
    }
    if let Some(pid) = args.pid {
        peak_rss_kib(pid)?;
    }
    if args.scenario == Scenario::Search && args.population.is_none() {
        return Err(
            "search needs --population N: the size of the population written by \
             --scenario import (with the same --rng-seed)"
                .into(),
        );
    }
    let mut channels = Vec::new();
    for a in &args.addr {
        let ch = vault_server::client::connect(&a.to_string(), &TlsFiles::default())
            .await
            .map_err(|e| e.to_string())?;
        channels.push(ch);
    }
    let admin_token = Token::read_file(&args.admin_token_file)
        .map_err(|e| format!("{}: {e}", args.admin_token_file.display()))?;
    let mut setup = Setup {
        channels,
        member: CallMetadata::default(),
        newsletter: CallMetadata::default(),
        admin: CallMetadata::new(admin_token),
        run_tag: String::new(),
        approver: tokio::sync::OnceCell::new(),
        approver_file: args.admin_token_file.with_file_name(APPROVER_TOKEN_FILE),
        population: Population {
            seed: args.rng_seed,
        },
    };
    let (calls, client_id) = register_client(
        &setup.channels[0],
        &setup.admin,
        (&setup.approver, &setup.approver_file),
        "vault-load",
        "campaign-tool",
        &[MEMBERSHIP, NEWSLETTER],
    )
    .await?;
    setup.member = calls.with_purpose(Some(MEMBERSHIP));
    setup.newsletter = calls.with_purpose(Some(NEWSLETTER));
    setup.run_tag = client_id.chars().take(8).collect();
    let setup = Arc::new(setup);

    // Preparation shared by every run.
    let ids: Arc<Vec<String>> = Arc::new(match (args.scenario, args.population) {
        (Scenario::Get, Some(n)) => setup.resolve(n, args.seed).await?,
        (Scenario::Get | Scenario::Lookup, None) => setup.seed("seed", args.seed).await?,
        _ => Vec::new(),
    });
    let dpo = if args.scenario == Scenario::Erase {
        setup
            .register("vault-load-dpo", "dpo", &[DPO_PURPOSE])
            .await?
            .with_purpose(Some(DPO_PURPOSE))
    } else {
        CallMetadata::default()
    };

    for (k, &concurrency) in args.concurrency.iter().enumerate() {
        let mut extra = serde_json::Map::new();
        let deadline = || Limit::Until(Instant::now() + Duration::from_secs(args.seconds));
        let s = Arc::clone(&setup);
        let m = match args.scenario {
            Scenario::Health => {
                drive(concurrency, deadline(), move |w, _| {
                    let mut h = HealthClient::new(s.channel(w));
                    async move {
                        h.check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .map(|_| 0)
                        .map_err(status)
                    }
                })
                .await?
            }
            Scenario::Get => {
                let ids = Arc::clone(&ids);
                drive(concurrency, deadline(), move |w, i| {
                    let (mut c, member) = (s.supporters(w), s.member.clone());
                    let id = ids[(i as usize).wrapping_mul(7919) % ids.len().max(1)].clone();
                    async move {
                        c.get(
                            member
                                .request(pb::GetRequest { id, fields: None })
                                .map_err(unsendable)?,
                        )
                        .await
                        .map(|_| 0)
                        .map_err(status)
                    }
                })
                .await?
            }
            Scenario::Lookup => {
                let (population, seeded) = (args.population, args.seed.max(1) as u64);
                drive(concurrency, deadline(), move |w, i| {
                    let (mut c, member) = (s.supporters(w), s.member.clone());
                    let email = match population {
                        Some(n) => s.population.email(i.wrapping_mul(104_729) % n.max(1)),
                        None => format!("seed-{}-{}@load.test", s.run_tag, i % seeded),
                    };
                    async move {
                        let key = pb::lookup_request::Key::Email(email);
                        c.lookup(
                            member
                                .request(pb::LookupRequest { key: Some(key) })
                                .map_err(unsendable)?,
                        )
                        .await
                        .map(|_| 0)
                        .map_err(status)
                    }
                })
                .await?
            }
            Scenario::Upsert => {
                let run = k;
                drive(concurrency, deadline(), move |w, i| {
                    let (mut c, member) = (s.supporters(w), s.member.clone());
                    let sup = pb::Supporter {
                        given_name: "Load".into(),
                        email: format!("up-{}-{run}-{i}@load.test", s.run_tag),
                        ..Default::default()
                    };
                    async move {
                        c.upsert(
                            member
                                .request(pb::UpsertRequest {
                                    supporter: Some(sup),
                                    consents: vec![],
                                })
                                .map_err(unsendable)?,
                        )
                        .await
                        .map(|_| 1)
                        .map_err(status)
                    }
                })
                .await?
            }
            Scenario::Import => {
                let count = args.count.unwrap_or(1_000_000);
                let batch = args.batch.max(1);
                let calls = count.div_ceil(batch);
                let totals = Arc::new(ImportTotals::default());
                let t = Arc::clone(&totals);
                let started = std::time::Instant::now();
                let m = drive(concurrency, Limit::Count(calls), move |w, call| {
                    let (mut c, member, pop, t) = (
                        s.supporters(w),
                        s.member.clone(),
                        s.population,
                        Arc::clone(&t),
                    );
                    let (from, to) = (call * batch, ((call + 1) * batch).min(count));
                    async move {
                        let rows = tokio_stream::iter((from..to).map(move |i| pop.supporter(i)));
                        let r = c
                            .import(member.request(rows).map_err(unsendable)?)
                            .await
                            .map_err(status)?
                            .into_inner();
                        t.created.fetch_add(r.created, Ordering::Relaxed);
                        t.updated.fetch_add(r.updated, Ordering::Relaxed);
                        t.unchanged.fetch_add(r.unchanged, Ordering::Relaxed);
                        t.rejected
                            .fetch_add(r.rejected.len() as u64, Ordering::Relaxed);
                        if let (Some(first), Ok(mut slot)) =
                            (r.rejected.first(), t.first_rejection.lock())
                        {
                            slot.get_or_insert_with(|| {
                                format!("row {}: {}", from + first.row, first.reason)
                            });
                        }
                        t.finished(to - from, started.elapsed().as_secs_f64());
                        Ok(to - from)
                    }
                })
                .await?;
                if let Some((first, last)) = totals.tenth_rates(count) {
                    extra.insert("first_tenth_per_s".into(), first.round().into());
                    extra.insert("last_tenth_per_s".into(), last.round().into());
                }
                let (segment, consenting) = setup.population.segment_size(count);
                extra.insert("supporters".into(), m.items.into());
                extra.insert(
                    "supporters_per_s".into(),
                    (m.items as f64 / m.seconds.max(1e-9)).round().into(),
                );
                extra.insert("rows_per_call".into(), batch.into());
                for (name, v) in [
                    ("created", &totals.created),
                    ("updated", &totals.updated),
                    ("unchanged", &totals.unchanged),
                    ("rejected", &totals.rejected),
                ] {
                    extra.insert(name.into(), v.load(Ordering::Relaxed).into());
                }
                if let Some(r) = totals.first_rejection.lock().ok().and_then(|s| s.clone()) {
                    extra.insert("first_rejection".into(), r.into());
                }
                extra.insert("segment".into(), segment.into());
                extra.insert("segment_with_newsletter_consent".into(), consenting.into());
                extra.insert("rng_seed".into(), args.rng_seed.into());
                m
            }
            Scenario::Search => {
                let population = args.population.unwrap_or(0);
                let sizes = Arc::new(Mutex::new(Vec::new()));
                let seen = Arc::clone(&sizes);
                let m = drive(concurrency, deadline(), move |w, _| {
                    let (mut c, newsletter, seen) =
                        (s.supporters(w), s.newsletter.clone(), Arc::clone(&seen));
                    async move {
                        let mut request = pb::SearchRequest {
                            tags_all: vec![SEGMENT_TAG.into()],
                            postcodes: vec![SEGMENT_POSTCODE.into()],
                            consent_purpose: NEWSLETTER.into(),
                            page_size: SEARCH_PAGE_SIZE,
                            ..Default::default()
                        };
                        let mut n = 0u64;
                        loop {
                            let reply = c
                                .search(newsletter.request(request.clone()).map_err(unsendable)?)
                                .await
                                .map_err(status)?;
                            let next = reply
                                .metadata()
                                .get(vault_proto::metadata::NEXT_PAGE_TOKEN)
                                .and_then(|v| v.to_str().ok())
                                .filter(|v| !v.is_empty())
                                .map(str::to_owned);
                            let mut stream = reply.into_inner();
                            while stream.message().await.map_err(status)?.is_some() {
                                n += 1;
                            }
                            match next {
                                Some(t) => request.page_token = t,
                                None => break,
                            }
                        }
                        if let Ok(mut s) = seen.lock() {
                            s.push(n);
                        }
                        Ok(n)
                    }
                })
                .await?;
                let (segment, consenting) = setup.population.segment_size(population);
                let sizes = sizes.lock().map_err(|e| e.to_string())?.clone();
                extra.insert("population".into(), population.into());
                extra.insert(
                    "segment_streamed".into(),
                    sizes.first().copied().unwrap_or(0).into(),
                );
                extra.insert(
                    "segment_sizes_agree".into(),
                    sizes.windows(2).all(|w| w[0] == w[1]).into(),
                );
                extra.insert("segment_expected".into(), consenting.into());
                extra.insert("segment_without_consent_filter".into(), segment.into());
                extra.insert("page_size".into(), SEARCH_PAGE_SIZE.into());
                extra.insert(
                    "supporters_per_s".into(),
                    (m.items as f64 / m.seconds.max(1e-9)).round().into(),
                );
                m
            }
            Scenario::Erase => {
                let count = args.count.unwrap_or(1_000);
                let n = usize::try_from(count).map_err(|e| e.to_string())?;
                let victims = Arc::new(setup.seed(&format!("erase{k}"), n).await?);
                let dpo = dpo.clone();
                drive(concurrency, Limit::Count(count), move |w, i| {
                    let mut c = RightsClient::new(s.channel(w));
                    let dpo = dpo.clone();
                    let id = victims.get(i as usize).cloned().unwrap_or_default();
                    async move {
                        c.erase(
                            dpo.request(pb::EraseRequest {
                                subject_id: id,
                                request_ref: "LOAD-1".into(),
                                suppress: false,
                            })
                            .map_err(unsendable)?,
                        )
                        .await
                        .map(|_| 1)
                        .map_err(status)
                    }
                })
                .await?
            }
        };
        let mut report = serde_json::json!({
            "scenario": format!("{:?}", args.scenario).to_lowercase(),
            "replicas": args.addr.len(),
            "concurrency": concurrency,
            "seconds": round1(m.seconds),
            "ops": m.latencies.len(),
            "errors": m.errors,
            "ops_per_s": (m.latencies.len() as f64 / m.seconds.max(1e-9)).round(),
            "p50_ms": f64::from(percentile(&m.latencies, 0.50)) / 1000.0,
            "p99_ms": f64::from(percentile(&m.latencies, 0.99)) / 1000.0,
        });
        if let Some(obj) = report.as_object_mut() {
            obj.extend(extra);
            if let Some(e) = m.first_error {
                obj.insert("first_error".into(), e.into());
            }
            if let Some(pid) = args.pid {
                match peak_rss_kib(pid) {
                    Ok(kib) => obj.insert("daemon_peak_rss_mib".into(), mib(kib * 1024).into()),
                    Err(e) => obj.insert("daemon_peak_rss_mib".into(), e.into()),
                };
            }
            if let Some(dir) = &args.data_dir {
                match dir_size(dir) {
                    Ok((apparent, allocated)) => {
                        obj.insert("data_dir_mib".into(), mib(apparent).into());
                        obj.insert("data_dir_on_disk_mib".into(), mib(allocated).into());
                    }
                    Err(e) => {
                        obj.insert(
                            "data_dir_mib".into(),
                            format!("{}: {e}", dir.display()).into(),
                        );
                    }
                }
            }
        }
        println!("{report}");
        if m.latencies.is_empty() && m.errors > 0 {
            return Err(format!(
                "every call failed ({})",
                report["first_error"].as_str().unwrap_or("no message")
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vault-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vault-load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_is_deterministic_with_an_exact_one_percent_segment() {
        let pop = Population { seed: 7 };
        assert_eq!(pop.supporter(123), pop.supporter(123));
        assert_ne!(pop.supporter(123), Population { seed: 8 }.supporter(123));
        let n = 100_000;
        let carries = |i: u64| {
            let s = pop.supporter(i);
            let tag = s.tags.iter().any(|t| t == SEGMENT_TAG);
            let postcode = s.address.is_some_and(|a| a.postcode == SEGMENT_POSTCODE);
            (tag, postcode)
        };
        let both = (0..n).filter(|&i| carries(i) == (true, true)).count() as u64;
        assert_eq!(both, n / 100);
        assert_eq!(pop.segment_size(n).0, both);
        let tag_only = (0..n).filter(|&i| carries(i) == (true, false)).count() as u64;
        let postcode_only = (0..n).filter(|&i| carries(i) == (false, true)).count() as u64;
        assert_eq!((tag_only, postcode_only), (9 * n / 100, 4 * n / 100));
        let consenting = (0..n).filter(|&i| pop.newsletter(i)).count() as f64 / n as f64;
        assert!((0.58..0.62).contains(&consenting), "{consenting}");
        let (segment, with_consent) = pop.segment_size(n);
        assert!(with_consent > segment / 2 && with_consent < segment * 7 / 10);
        let emails: std::collections::BTreeSet<_> = (0..1000).map(|i| pop.email(i)).collect();
        assert_eq!(emails.len(), 1000);
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 0.5), 3);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 0.99), 5);
    }
}
