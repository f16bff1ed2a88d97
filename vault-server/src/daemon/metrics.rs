//! Prometheus metrics: what the daemon counts, and the listener that serves them as
//! `GET /metrics` in the text exposition format (version 0.0.4).
//!
//! What is counted holds no personal data and no identifier: calls by method and gRPC
//! code, call latency by method, calls in flight, calls refused by the `[limits]`, the
//! access log's size and the age of its newest signed checkpoint, and the store's flush
//! latency. Methods are the ones compiled into the daemon ([`crate::daemon::descriptors`]), known
//! at start: a path no service serves is counted under `rpc="unknown"`, so no client can
//! add a series. No client names or ids either: per-client use is in the access log.
//!
//! The registry is a fixed table of atomics (one counter per method × code, one histogram
//! per method), so recording a call takes no lock. The text is written here rather than by
//! a metrics crate: the format is small, and the daemon then adds no dependency for it.
//!
//! The listener is plain HTTP with no authentication (Prometheus scrapes that way), so
//! like the gRPC port without TLS it binds loopback only unless `[metrics]
//! allow_non_loopback = true` says otherwise (checked in `config.rs`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::net::TcpListener;
use tonic::Code;
use vault_core::Vault;
use vault_core::latency::{BUCKET_BOUNDS_SECONDS, HistogramSnapshot, LatencyHistogram};

use crate::daemon::layers::auth::rpc_name;

/// The `rpc` label of a path no service serves.
pub const UNKNOWN_RPC: &str = "unknown";

/// The 17 gRPC status codes, by number, as the gRPC specification spells them.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A status code as the gRPC specification names it (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    usize::try_from(i32::from(code))
        .ok()
        .and_then(|i| CODE_NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Counts of one method's calls.
#[derive(Default)]
struct MethodCounts {
    by_code: [AtomicU64; CODE_NAMES.len()],
    latency: LatencyHistogram,
}

/// What the daemon counts about its calls (the vault's own figures are read at scrape
/// time).
pub struct Metrics {
    /// Path → index into `rpcs` and `counts`.
    index: HashMap<String, usize>,
    /// The `rpc` labels (`Service.Method`, as in the access log), the last one
    /// [`UNKNOWN_RPC`].
    rpcs: Vec<String>,
    counts: Vec<MethodCounts>,
    in_flight: AtomicI64,
    limit_refusals: AtomicU64,
}

/// The vault's figures at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultFigures {
    /// Entries appended to the access log (its sequence numbers so far).
    pub access_log_entries: u64,
    /// Seconds since the newest durable signed checkpoint; `None` before the first.
    pub checkpoint_age_seconds: Option<f64>,
    /// The store's flush latencies.
    pub flushes: HistogramSnapshot,
}

impl VaultFigures {
    /// Reads them from `vault`.
    pub async fn of(vault: &Vault) -> Self {
        let log = vault.access_log();
        Self {
            access_log_entries: log.size().await,
            checkpoint_age_seconds: log.checkpoint_age().map(|age| age.as_secs_f64()),
            flushes: log.flush_latency(),
        }
    }
}

impl Metrics {
    /// A registry for these methods' paths (`/package.Service/Method`).
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut index = HashMap::new();
        let mut rpcs: Vec<String> = Vec::new();
        for path in paths {
            let name = rpc_name(path);
            // v1 and v1alpha reflection share a name, as they share an access-log action.
            let at = match rpcs.iter().position(|r| *r == name) {
                Some(at) => at,
                None => {
                    rpcs.push(name);
                    rpcs.len() - 1
                }
            };
            index.insert(path.to_owned(), at);
        }
        rpcs.push(UNKNOWN_RPC.to_owned());
        let counts = rpcs.iter().map(|_| MethodCounts::default()).collect();
        Self {
            index,
            rpcs,
            counts,
            in_flight: AtomicI64::new(0),
            limit_refusals: AtomicU64::new(0),
        }
    }

    /// The `rpc` label of `path`.
    pub fn rpc_label(&self, path: &str) -> &str {
        &self.rpcs[self.slot(path)]
    }

    fn slot(&self, path: &str) -> usize {
        self.index.get(path).copied().unwrap_or(self.rpcs.len() - 1)
    }

    /// A call started.
    pub fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A call to `path` ended with `code` after `elapsed`; `refused_by_limits` when a
    /// `[limits]` layer refused it.
    pub fn call_ended(&self, path: &str, code: Code, elapsed: Duration, refused_by_limits: bool) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let counts = &self.counts[self.slot(path)];
        let code = usize::try_from(i32::from(code)).unwrap_or(2).min(16);
        counts.by_code[code].fetch_add(1, Ordering::Relaxed);
        counts.latency.record(elapsed);
        if refused_by_limits {
            self.limit_refusals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition of every metric. Series of calls appear once a call was counted
    /// in them.
    pub fn render(&self, vault: &VaultFigures) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(
            &mut out,
            "vault_calls_total",
            "counter",
            "gRPC calls finished, by method and status code.",
        );
        for (rpc, counts) in self.rpcs.iter().zip(&self.counts) {
            for (code, n) in CODE_NAMES.iter().zip(&counts.by_code) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "vault_calls_total{{rpc=\"{}\",code=\"{code}\"}} {n}",
                        escape(rpc)
                    );
                }
            }
        }
        header(
            &mut out,
            "vault_call_duration_seconds",
            "histogram",
            "Time from a call's arrival to the end of its reply (a stream's whole life), by \
             method.",
        );
        for (rpc, counts) in self.rpcs.iter().zip(&self.counts) {
            let snapshot = counts.latency.snapshot();
            if snapshot.count > 0 {
                let labels = format!("rpc=\"{}\"", escape(rpc));
                histogram(&mut out, "vault_call_duration_seconds", &labels, &snapshot);
            }
        }
        header(
            &mut out,
            "vault_calls_in_flight",
            "gauge",
            "gRPC calls started and not yet finished.",
        );
        let _ = writeln!(
            out,
            "vault_calls_in_flight {}",
            self.in_flight.load(Ordering::Relaxed).max(0)
        );
        header(
            &mut out,
            "vault_limit_refusals_total",
            "counter",
            "Calls refused by the [limits] (rate, calls in flight), answered RESOURCE_EXHAUSTED.",
        );
        let _ = writeln!(
            out,
            "vault_limit_refusals_total {}",
            self.limit_refusals.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "vault_access_log_entries",
            "gauge",
            "Entries appended to the access log (its next sequence number).",
        );
        let _ = writeln!(out, "vault_access_log_entries {}", vault.access_log_entries);
        header(
            &mut out,
            "vault_access_log_checkpoint_age_seconds",
            "gauge",
            "Seconds since the newest durable signed checkpoint of the access log (absent \
             before the first).",
        );
        if let Some(age) = vault.checkpoint_age_seconds {
            let _ = writeln!(out, "vault_access_log_checkpoint_age_seconds {age}");
        }
        header(
            &mut out,
            "vault_store_flush_duration_seconds",
            "histogram",
            "Time the access-log writer's store flushes take (each makes a group of calls \
             durable).",
        );
        histogram(
            &mut out,
            "vault_store_flush_duration_seconds",
            "",
            &vault.flushes,
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram; `labels` without braces.
fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in BUCKET_BOUNDS_SECONDS.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{{{s}}}")
        }
    };
    let _ = writeln!(out, "{name}_sum{} {}", braces(labels), h.sum_seconds);
    let _ = writeln!(out, "{name}_count{} {}", braces(labels), h.count);
}

/// A label value escaped as the text format requires (backslash, quote, newline). Method
/// names never need it; it keeps the output well formed whatever a descriptor holds.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until the task is dropped: one small response per
/// scrape, every other path 404, every other method 405.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, vault: Arc<Vault>) {
    // A scraper that connects and sends nothing must not hold a connection forever.
    const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        let vault = Arc::clone(&vault);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = Arc::clone(&metrics);
                let vault = Arc::clone(&vault);
                async move { Ok::<_, std::convert::Infallible>(respond(req, &metrics, &vault).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

/// The answer to one HTTP request on the metrics listener.
async fn respond<B>(
    req: http::Request<B>,
    metrics: &Metrics,
    vault: &Vault,
) -> http::Response<Full<Bytes>> {
    let plain = |status: http::StatusCode, body: &'static str| {
        let mut r = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(
            http::StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET /metrics\n",
        );
    }
    let text = metrics.render(&VaultFigures::of(vault).await);
    let mut r = http::Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The registry of every method the daemon serves, and, when `listen` is set, the
/// listener serving it (bound before this returns, its address logged: `serving metrics on
/// http://ADDR/metrics`).
pub async fn start(
    listen: Option<SocketAddr>,
    vault: &Arc<Vault>,
) -> Result<(Arc<Metrics>, Option<tokio::task::JoinHandle<()>>), crate::daemon::DaemonError> {
    use crate::daemon::DaemonError;
    let methods = crate::daemon::descriptors::methods(crate::daemon::descriptors::SERVED)
        .map_err(|e| DaemonError::Serve(format!("reading the service descriptors: {e}")))?;
    let metrics = Arc::new(Metrics::new(methods.iter().map(|m| m.path.as_str())));
    let Some(addr) = listen else {
        return Ok((metrics, None));
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::Serve(format!("cannot serve metrics on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| DaemonError::Serve(e.to_string()))?;
    tracing::info!("serving metrics on http://{bound}/metrics");
    let task = tokio::spawn(serve(listener, Arc::clone(&metrics), Arc::clone(vault)));
    Ok((metrics, Some(task)))
}

#[cfg(test)]
mod tests;
