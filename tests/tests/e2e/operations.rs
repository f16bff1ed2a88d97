//! Operations: the Prometheus metrics listener and the per-call log line, on a real daemon.
//!
//! The metrics are scraped over plain HTTP before and after a known set of calls, and the
//! counters must have moved by exactly those calls; the scraped text and the daemon's log
//! both go through the log-hygiene scanner (no token, email, phone or name).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use vault_proto::v1 as pb;
use vault_tests::leaks::assert_clean;
use vault_tests::{Daemon, authed, supporter};

/// One HTTP/1.1 GET: the status and the body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Every sample of a text exposition, series (name and labels) → value, checking the
/// syntax: each family announced by `# HELP` and `# TYPE` before its samples, values
/// numbers, no personal data or secret anywhere.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert_clean("the scraped metrics", &text);
    let mut typed: Vec<String> = Vec::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.iter().any(|t| t == f))
            })
            .unwrap_or(name);
        assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            out.insert(series.to_owned(), value).is_none(),
            "twice: {line}"
        );
    }
    out
}

/// What changed between two scrapes in the series starting with `prefix`.
fn moved(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    prefix: &str,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn calls(list: &[(&str, &str, f64)]) -> BTreeMap<String, f64> {
    list.iter()
        .map(|(rpc, code, n)| {
            (
                format!("vault_calls_total{{rpc=\"{rpc}\",code=\"{code}\"}}"),
                *n,
            )
        })
        .collect()
}

/// Polls the metrics until `ready` holds (at most a minute: the daemon's background work
/// and the network need a moment).
fn scrape_until(
    addr: SocketAddr,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    for _ in 0..600 {
        let m = scrape(addr);
        if ready(&m) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the metrics never reached the expected state: {:?}",
        scrape(addr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_calls_made_and_hold_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vault.toml");
    // One call in flight per client, so a held Watch stream makes the next call a limit
    // refusal; checkpoints every second, so the checkpoint age appears soon.
    std::fs::write(
        &config,
        "audit_checkpoint_seconds = 1\n[limits]\ncalls_in_flight_per_client = 1\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start_with(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = daemon.metrics_addr();
    assert!(metrics.ip().is_loopback());
    assert_eq!(http_get(metrics, "/").0, 404);
    let tool = daemon.tool("membership").await;
    let channel = daemon.channel().await;

    let before = scrape(metrics);
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    let mut c = pb::supporters_client::SupportersClient::new(channel);
    let id = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter(
                    "Métrique",
                    "Compteur",
                    "metrique.compteur@exemple.fr",
                    "06 12 34 56 78",
                )),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let get = |creds: &vault_tests::Creds, id: &str| {
        authed(
            pb::GetRequest {
                id: id.to_owned(),
                fields: None,
            },
            creds,
        )
    };
    let denied = c
        .get(get(&tool.with_purpose(Some("newsletter")), &id))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let absent = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        c.get(get(&tool, &absent)).await.unwrap_err().code(),
        Code::NotFound
    );
    let forged = vault_tests::Creds {
        token: format!("vault_{}", "e".repeat(64)),
        ..tool.clone()
    };
    assert_eq!(
        c.get(get(&forged, &id)).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let mid = scrape(metrics);
    assert_eq!(
        moved(&before, &mid, "vault_calls_total"),
        calls(&[
            ("Health.Check", "OK", 1.0),
            ("Supporters.Upsert", "OK", 1.0),
            ("Supporters.Get", "PERMISSION_DENIED", 1.0),
            ("Supporters.Get", "NOT_FOUND", 1.0),
            ("Supporters.Get", "UNAUTHENTICATED", 1.0),
        ])
    );
    let histogram = moved(&before, &mid, "vault_call_duration_seconds_count");
    assert_eq!(
        histogram,
        [
            (
                "vault_call_duration_seconds_count{rpc=\"Health.Check\"}".to_owned(),
                1.0
            ),
            (
                "vault_call_duration_seconds_count{rpc=\"Supporters.Get\"}".to_owned(),
                3.0
            ),
            (
                "vault_call_duration_seconds_count{rpc=\"Supporters.Upsert\"}".to_owned(),
                1.0
            ),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        mid["vault_call_duration_seconds_bucket{rpc=\"Supporters.Get\",le=\"+Inf\"}"],
        mid["vault_call_duration_seconds_count{rpc=\"Supporters.Get\"}"]
    );
    // Four calls reached the vault (the health check does not): four access-log entries,
    // made durable by at least one flush.
    assert_eq!(
        mid["vault_access_log_entries"] - before["vault_access_log_entries"],
        4.0
    );
    assert!(
        mid["vault_store_flush_duration_seconds_count"]
            > before["vault_store_flush_duration_seconds_count"]
    );
    assert_eq!(mid["vault_calls_in_flight"], 0.0);
    assert_eq!(mid["vault_limit_refusals_total"], 0.0);

    // A Watch stream held open is a call in flight; the tool's next call is refused.
    let watch = c
        .watch(authed(pb::WatchRequest::default(), &tool))
        .await
        .unwrap();
    let refused = c.get(get(&tool, &id)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let after = scrape(metrics);
    assert_eq!(
        moved(&mid, &after, "vault_calls_total"),
        calls(&[("Supporters.Get", "RESOURCE_EXHAUSTED", 1.0)])
    );
    assert_eq!(after["vault_limit_refusals_total"], 1.0);
    assert_eq!(after["vault_calls_in_flight"], 1.0);
    drop(watch);
    let ended = scrape_until(metrics, |m| m["vault_calls_in_flight"] == 0.0);
    assert_eq!(
        moved(&after, &ended, "vault_calls_total"),
        calls(&[("Supporters.Watch", "CANCELLED", 1.0)])
    );
    let aged = scrape_until(metrics, |m| {
        m.contains_key("vault_access_log_checkpoint_age_seconds")
    });
    assert!(aged["vault_access_log_checkpoint_age_seconds"] >= 0.0);

    // No identifier in any series: neither the client's id nor the supporter's.
    let (_, text) = http_get(metrics, "/metrics");
    assert!(
        !text.contains(&tool.client_id) && !text.contains(&id),
        "{text}"
    );
    drop(c);

    // The per-call lines: one at info per call but the health check (debug), with the
    // method, code, latency, client id, request id and transport, and nothing else.
    assert!(daemon.terminate().success());
    let log = daemon.logs();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("vault_server::call: call"))
        .collect();
    let find = |rpc: &str, code: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("rpc={rpc} ")) && l.contains(&format!("code={code} ")))
            .unwrap_or_else(|| panic!("no line for {rpc} {code}:\n{log}"))
            .to_string()
    };
    let upsert = find("Supporters.Upsert", "OK");
    assert!(upsert.contains(" INFO "), "{upsert}");
    assert!(
        upsert.contains(&format!("client={} ", tool.client_id)),
        "{upsert}"
    );
    assert!(upsert.ends_with("transport=plaintext"), "{upsert}");
    let fields: Vec<&str> = upsert
        .split("call: call ")
        .nth(1)
        .unwrap()
        .split(' ')
        .map(|f| f.split('=').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "rpc",
            "code",
            "latency_us",
            "client",
            "request_id",
            "transport"
        ]
    );
    let latency: u64 = upsert
        .split("latency_us=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(latency > 0, "{upsert}");
    let unauthenticated = find("Supporters.Get", "UNAUTHENTICATED");
    assert!(
        unauthenticated.contains("client=- request_id=- "),
        "{unauthenticated}"
    );
    assert!(find("Supporters.Get", "RESOURCE_EXHAUSTED").contains(" INFO "));
    assert!(find("Supporters.Watch", "CANCELLED").contains(" INFO "));
    let health = find("Health.Check", "OK");
    assert!(
        health.contains(" DEBUG "),
        "health checks are not logged at info: {health}"
    );
    // A line per call, the setup's included: as many as the metrics counted.
    let counted: f64 = ended
        .iter()
        .filter(|(k, _)| k.starts_with("vault_calls_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(lines.len() as f64, counted, "{log}");
    assert_clean("the per-call lines", &lines.join("\n"));
}

#[test]
fn metrics_on_a_public_address_need_explicit_permission() {
    let dir = tempfile::tempdir().unwrap();
    let log = Daemon::start_refused_with(dir.path(), &["--metrics-listen", "0.0.0.0:0"]);
    assert!(
        log.contains("refusing to serve metrics on non-loopback address"),
        "{log}"
    );
}
