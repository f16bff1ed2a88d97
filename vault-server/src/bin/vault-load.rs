//! `vault-load`: a load generator for a running vault (or several replicas of one).
//!
//! It registers a campaign-tool client with the admin token, seeds supporters, then drives
//! one scenario at a fixed number of calls in flight for a fixed time, spread over the given
//! addresses, and prints operations per second, p50 and p99 latency as JSON. It talks to
//! loopback addresses only and stops by itself. See docs/benchmarks.md for the commands.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use vault_proto::v1 as pb;
use vault_proto::v1::admin_client::AdminClient;
use vault_proto::v1::supporters_client::SupportersClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `grpc.health.v1.Health/Check`: the ceiling of the gRPC path itself.
    Health,
    /// Audited `Supporters.Get` by id of seeded supporters.
    Get,
    /// Audited `Supporters.Lookup` by email of seeded supporters.
    Lookup,
    /// Durable audited `Supporters.Upsert` of new supporters.
    Upsert,
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
    /// The bootstrap admin token file (to register the load client).
    #[arg(long, default_value = "./vault-data/admin.token")]
    admin_token_file: PathBuf,
    /// What to call.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Calls in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run (after seeding).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Supporters to seed for get and lookup.
    #[arg(long, default_value_t = 1000)]
    seed: usize,
}

fn authed<T>(m: T, token: &str) -> Request<T> {
    let mut r = Request::new(m);
    if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
        r.metadata_mut().insert("authorization", v);
    }
    r.metadata_mut()
        .insert("x-vault-purpose", MetadataValue::from_static("membership"));
    r
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(args: Args) -> Result<String, String> {
    if let Some(a) = args.addr.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing to load {a}: vault-load targets loopback addresses only"
        ));
    }
    let mut channels = Vec::new();
    for a in &args.addr {
        let ch = Channel::from_shared(format!("http://{a}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {a}: {e}"))?;
        channels.push(ch);
    }
    let admin_token = std::fs::read_to_string(&args.admin_token_file)
        .map_err(|e| format!("{}: {e}", args.admin_token_file.display()))?
        .trim()
        .to_owned();
    let created = AdminClient::new(channels[0].clone())
        .create_client(authed(
            pb::CreateClientRequest {
                name: "vault-load".into(),
                role: "campaign-tool".into(),
                purposes: vec!["membership".into()],
                cert_sha256: String::new(),
            },
            &admin_token,
        ))
        .await
        .map_err(|e| format!("cannot register the load client: {}", e.message()))?
        .into_inner();
    let token = Arc::new(created.token);
    let run_id = created.client.map(|c| c.id).unwrap_or_default();
    let run_tag: String = run_id.chars().take(8).collect();

    // Seed.
    let mut ids = Vec::new();
    if matches!(args.scenario, Scenario::Get | Scenario::Lookup) {
        let mut c = SupportersClient::new(channels[0].clone());
        for i in 0..args.seed {
            let s = pb::Supporter {
                given_name: "Load".into(),
                email: format!("seed-{run_tag}-{i}@load.test"),
                ..Default::default()
            };
            let r = c
                .upsert(authed(
                    pb::UpsertRequest {
                        supporter: Some(s),
                        consents: vec![],
                    },
                    &token,
                ))
                .await
                .map_err(|e| format!("seeding: {}", e.message()))?;
            ids.push(r.into_inner().id);
        }
    }
    let ids = Arc::new(ids);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let channel = channels[w % channels.len()].clone();
        let (token, ids, counter, errors, run_tag) = (
            Arc::clone(&token),
            Arc::clone(&ids),
            Arc::clone(&counter),
            Arc::clone(&errors),
            run_tag.clone(),
        );
        let scenario = args.scenario;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut s = SupportersClient::new(channel.clone());
            let mut h = HealthClient::new(channel);
            let mut n = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match scenario {
                    Scenario::Health => h
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok(),
                    Scenario::Get => {
                        let id = ids[(w * 7919 + n) % ids.len()].clone();
                        s.get(authed(pb::GetRequest { id, fields: None }, &token))
                            .await
                            .is_ok()
                    }
                    Scenario::Lookup => {
                        let i = (w * 7919 + n) % ids.len();
                        let key =
                            pb::lookup_request::Key::Email(format!("seed-{run_tag}-{i}@load.test"));
                        s.lookup(authed(pb::LookupRequest { key: Some(key) }, &token))
                            .await
                            .is_ok()
                    }
                    Scenario::Upsert => {
                        let c = counter.load(Ordering::Relaxed);
                        let sup = pb::Supporter {
                            given_name: "Load".into(),
                            email: format!("up-{run_tag}-{w}-{n}-{c}@load.test"),
                            ..Default::default()
                        };
                        s.upsert(authed(
                            pb::UpsertRequest {
                                supporter: Some(sup),
                                consents: vec![],
                            },
                            &token,
                        ))
                        .await
                        .is_ok()
                    }
                };
                if ok {
                    lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    counter.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok(serde_json::json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "replicas": args.addr.len(),
        "concurrency": args.concurrency,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "ops": all.len(),
        "errors": errors.load(Ordering::Relaxed),
        "ops_per_s": (all.len() as f64 / elapsed).round(),
        "p50_ms": f64::from(percentile(&all, 0.50)) / 1000.0,
        "p99_ms": f64::from(percentile(&all, 0.99)) / 1000.0,
    })
    .to_string())
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
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vault-load: {e}");
            ExitCode::FAILURE
        }
    }
}
