//! Transport limits: how much one caller, one connection and the whole daemon may ask of
//! the vault at once, and how big a message may be.
//!
//! Limits are a transport concern, so they live in the daemon, not in `vault-core`. Two
//! tower layers enforce them around the authentication layer:
//!
//! - [`GlobalLimitLayer`], outermost, sees every call, authenticated or not (health checks
//!   included): a cap on calls in flight for the whole daemon, the default deadline of unary
//!   calls, and the status of an oversized request. It also marks the call in flight on its
//!   connection, which stops that connection's idle timeout (`daemon/connections.rs`, where the
//!   caps on connections and their deadlines live).
//! - [`ClientLimitLayer`], just inside authentication, sees the authenticated
//!   [`vault_core::Caller`]: a token bucket of calls per second and a cap on calls in
//!   flight, both keyed by client id.
//!
//! A refused call gets `RESOURCE_EXHAUSTED` at once (it never queues), with a
//! `retry-after-ms` metadata entry and the same hint in the message. A call is "in flight"
//! from the moment it is admitted until its reply body is finished or dropped, so an open
//! `Watch` or `ExportLog` stream holds its slot for as long as it runs. Refusals are logged
//! at debug level only (never in the access log): they reach no data, and a durable entry
//! per refused call would let a flood grow the log.
//!
//! The decision logic ([`TokenBucket`], [`ClientLimiter`]) takes the time as an argument, so
//! its tests need no clock and no sleeps.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Frame, SizeHint};
use prost::bytes::Bytes;
use tokio::sync::Semaphore;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tower::{Layer, Service};
use vault_core::Caller;
use vault_proto::metadata::RETRY_AFTER_MS;

/// The retry hint when a cap on calls in flight refused a call: no exact time is known (it
/// depends on when a running call finishes), so a short, fixed pause.
const IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_millis(100);

/// Above this many tracked clients, idle ones (no call in flight, bucket full) are dropped.
/// Only authenticated client ids are tracked, so the table holds registered clients only.
const PRUNE_ABOVE: usize = 1024;

/// Unary calls that may legitimately run long on a large vault (they walk every
/// supporter, the whole store or the whole access log), so the default unary deadline does
/// not cut them. They are admin, auditor or DPO calls; a client's own `grpc-timeout` still
/// applies.
const LONG_RUNNING: &[&str] = &[
    "/vault.v1.Admin/RotateKeys",
    "/vault.v1.Admin/Backup",
    "/vault.v1.Admin/RetentionSweep",
    "/vault.v1.Audit/Verify",
    "/vault.v1.Rights/Export",
];

/// The limits in force (the `[limits]` section of the config file, defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request message accepted, in bytes (after decompression).
    pub max_request_bytes: usize,
    /// Largest reply message sent, in bytes.
    pub max_response_bytes: usize,
    /// Calls per second each client may make, on average (token bucket refill rate).
    pub requests_per_second: f64,
    /// Calls a client may make at once after being idle (token bucket size).
    pub request_burst: u32,
    /// Calls in flight per client.
    pub calls_in_flight_per_client: u32,
    /// Calls in flight in the whole daemon, authenticated or not.
    pub calls_in_flight: u32,
    /// HTTP/2 streams (calls) in flight per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub streams_per_connection: u32,
    /// Default deadline of unary calls (`None`: no default deadline).
    pub unary_timeout: Option<Duration>,
    /// Rows one `Supporters.Import` stream may carry.
    pub import_rows_per_call: u64,
    /// Open connections in the whole daemon (`daemon/connections.rs`).
    pub max_connections: u32,
    /// Open connections from one peer IP address.
    pub connections_per_peer: u32,
    /// From accept to the end of the TLS handshake and the HTTP/2 client preface.
    pub handshake_timeout: Duration,
    /// How long a connection may stay with no call in flight (`None`: forever).
    pub idle_timeout: Option<Duration>,
    /// Interval of HTTP/2 keepalive pings (`None`: no pings).
    pub keepalive_interval: Option<Duration>,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for Limits {
    /// Generous defaults: the load generator (`vault-load`, 64 calls in flight from one
    /// client, ~30k calls/s on two cores) and the test suite never meet them; they stop a
    /// runaway or hostile client from taking the whole daemon. README "Limits" says why
    /// each value.
    fn default() -> Self {
        Self {
            max_request_bytes: 4 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            requests_per_second: 50_000.0,
            request_burst: 50_000,
            calls_in_flight_per_client: 256,
            calls_in_flight: 1024,
            streams_per_connection: 256,
            unary_timeout: Some(Duration::from_secs(30)),
            import_rows_per_call: 100_000,
            max_connections: 4096,
            connections_per_peer: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(60)),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Why a call was refused, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The client's token bucket is empty.
    Rate {
        /// The bucket's refill rate.
        per_second: f64,
        /// The bucket's size.
        burst: u32,
        /// When the next token arrives.
        retry_after: Duration,
    },
    /// The client has this many calls in flight already.
    ClientInFlight {
        /// The cap.
        limit: u32,
    },
    /// The daemon has this many calls in flight already.
    DaemonInFlight {
        /// The cap.
        limit: u32,
    },
}

impl Refusal {
    /// How long the caller should wait.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Rate { retry_after, .. } => *retry_after,
            Self::ClientInFlight { .. } | Self::DaemonInFlight { .. } => IN_FLIGHT_RETRY_AFTER,
        }
    }

    /// `RESOURCE_EXHAUSTED`, with the retry hint in the message and in `retry-after-ms`.
    pub fn to_status(&self) -> Status {
        let ms = retry_after_ms(self.retry_after());
        let what = match self {
            Self::Rate {
                per_second, burst, ..
            } => format!(
                "rate limit exceeded: this client may make {per_second} calls per second \
                 (bursts of {burst})"
            ),
            Self::ClientInFlight { limit } => {
                format!("too many calls in flight: this client may have {limit} at once")
            }
            Self::DaemonInFlight { limit } => {
                format!("the vault is busy: {limit} calls in flight, its limit")
            }
        };
        let mut status =
            Status::resource_exhausted(format!("{what}; retry after {ms} ms ({RETRY_AFTER_MS})"));
        status
            .metadata_mut()
            .insert(RETRY_AFTER_MS, MetadataValue::from(ms));
        status
    }
}

/// Whole milliseconds, rounded up, at least 1 (a hint of 0 would invite a busy loop).
fn retry_after_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// A token bucket: holds up to `burst` tokens, refilled at `per_second`; a call takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. `per_second` must be positive and finite (the config
    /// checks it).
    pub fn new(per_second: f64, burst: u32, now: Instant) -> Self {
        Self {
            per_second,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that goes backwards (or an earlier `now` from a racing caller) adds nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes a token at `now`, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }

    /// Whether the bucket is full at `now` (the client has been idle long enough).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// What the limiter knows of one client.
#[derive(Debug)]
struct ClientState {
    bucket: TokenBucket,
    in_flight: u32,
}

/// Per-client rate and concurrency, keyed by authenticated client id.
#[derive(Debug, Clone)]
pub struct ClientLimiter {
    inner: Arc<ClientLimiterInner>,
}

#[derive(Debug)]
struct ClientLimiterInner {
    per_second: f64,
    burst: u32,
    in_flight: u32,
    clients: Mutex<HashMap<String, ClientState>>,
}

/// A call admitted by [`ClientLimiter::admit`]; dropping it ends the call's slot.
#[derive(Debug)]
pub struct ClientPermit {
    limiter: Arc<ClientLimiterInner>,
    client: String,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut clients = self
            .limiter
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = clients.get_mut(&self.client) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

impl ClientLimiter {
    /// A limiter enforcing `limits`' per-client settings.
    pub fn new(limits: &Limits) -> Self {
        Self {
            inner: Arc::new(ClientLimiterInner {
                per_second: limits.requests_per_second,
                burst: limits.request_burst,
                in_flight: limits.calls_in_flight_per_client,
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Admits a call of `client` at `now`, or says why not. The concurrency cap is checked
    /// first, so a call refused for it does not spend a token.
    pub fn admit(&self, client: &str, now: Instant) -> Result<ClientPermit, Refusal> {
        let inner = &self.inner;
        let mut clients = inner.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= PRUNE_ABOVE && !clients.contains_key(client) {
            clients.retain(|_, s| s.in_flight > 0 || !s.bucket.is_full(now));
        }
        let state = clients
            .entry(client.to_owned())
            .or_insert_with(|| ClientState {
                bucket: TokenBucket::new(inner.per_second, inner.burst, now),
                in_flight: 0,
            });
        if state.in_flight >= inner.in_flight {
            return Err(Refusal::ClientInFlight {
                limit: inner.in_flight,
            });
        }
        state
            .bucket
            .take(now)
            .map_err(|retry_after| Refusal::Rate {
                per_second: inner.per_second,
                burst: inner.burst,
                retry_after,
            })?;
        state.in_flight += 1;
        Ok(ClientPermit {
            limiter: Arc::clone(&self.inner),
            client: client.to_owned(),
        })
    }
}

/// The gRPC paths (`/package.Service/Method`) of the unary methods in these encoded
/// `FileDescriptorSet`s.
pub fn unary_methods(descriptor_sets: &[&[u8]]) -> Result<HashSet<String>, prost::DecodeError> {
    Ok(crate::daemon::descriptors::methods(descriptor_sets)?
        .into_iter()
        .filter(|m| m.unary)
        .map(|m| m.path)
        .collect())
}

/// A reply body that holds `held` (a permit) until the body is finished or dropped.
struct HeldBody<P> {
    inner: tonic::body::Body,
    _held: P,
}

impl<P: Unpin> http_body::Body for HeldBody<P> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn hold<P: Unpin + Send + 'static>(
    response: http::Response<tonic::body::Body>,
    held: P,
) -> http::Response<tonic::body::Body> {
    response.map(|inner| tonic::body::Body::new(HeldBody { inner, _held: held }))
}

/// tonic refuses an oversized request with `OUT_OF_RANGE` and a generic message; gRPC's
/// convention (and this API's) is `RESOURCE_EXHAUSTED`, naming the setting to change.
fn oversized_request_status(
    response: http::Response<tonic::body::Body>,
    max_request_bytes: usize,
) -> http::Response<tonic::body::Body> {
    let oversized = response.extensions().get::<Status>().is_some_and(|s| {
        s.code() == Code::OutOfRange
            && s.message()
                .starts_with("Error, decoded message length too large")
    });
    if !oversized {
        return response;
    }
    let found = response
        .extensions()
        .get::<Status>()
        .and_then(|s| s.message().split("found ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("more")
        .to_owned();
    Status::resource_exhausted(format!(
        "request message too large: {found} bytes, the limit is {max_request_bytes} bytes \
         (the daemon's [limits] max_request_bytes)"
    ))
    .into_http()
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// What [`GlobalLimitLayer`] enforces.
struct GlobalShared {
    in_flight: Arc<Semaphore>,
    in_flight_limit: u32,
    unary_timeout: Option<Duration>,
    unary: HashSet<String>,
    max_request_bytes: usize,
}

impl GlobalShared {
    /// The server-side deadline of a call to `path`: unary calls only (a stream may run as
    /// long as its client wants), except the long-running maintenance calls.
    fn deadline(&self, path: &str) -> Option<Duration> {
        let timeout = self.unary_timeout?;
        (self.unary.contains(path) && !LONG_RUNNING.contains(&path)).then_some(timeout)
    }
}

/// The outermost layer: daemon-wide calls in flight, default deadline of unary calls, and
/// the status of oversized requests.
#[derive(Clone)]
pub struct GlobalLimitLayer {
    shared: Arc<GlobalShared>,
}

impl GlobalLimitLayer {
    /// The layer for `limits`; `unary` lists the unary methods' paths (see
    /// [`unary_methods`]).
    pub fn new(limits: &Limits, unary: HashSet<String>) -> Self {
        let permits = usize::try_from(limits.calls_in_flight)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            shared: Arc::new(GlobalShared {
                in_flight: Arc::new(Semaphore::new(permits)),
                in_flight_limit: limits.calls_in_flight,
                unary_timeout: limits.unary_timeout,
                unary,
                max_request_bytes: limits.max_request_bytes,
            }),
        }
    }
}

impl<S> Layer<S> for GlobalLimitLayer {
    type Service = GlobalLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GlobalLimitService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`GlobalLimitLayer`] wraps around the stack.
#[derive(Clone)]
pub struct GlobalLimitService<S> {
    inner: S,
    shared: Arc<GlobalShared>,
}

impl<S, B> Service<http::Request<B>> for GlobalLimitService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call; leave a fresh one behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        // The connection has a call in flight (no idle timeout) until the reply is done.
        let on_connection = req
            .extensions()
            .get::<crate::daemon::connections::ConnInfo>()
            .map(crate::daemon::connections::ConnInfo::call_started);
        Box::pin(async move {
            let Ok(permit) = Arc::clone(&shared.in_flight).try_acquire_owned() else {
                let refusal = Refusal::DaemonInFlight {
                    limit: shared.in_flight_limit,
                };
                tracing::debug!(path = %req.uri().path(), "refused: daemon calls in flight");
                return Ok(refusal.to_status().into_http());
            };
            let response = match shared.deadline(req.uri().path()) {
                None => inner.call(req).await?,
                Some(deadline) => match tokio::time::timeout(deadline, inner.call(req)).await {
                    Ok(response) => response?,
                    Err(_) => {
                        return Ok(Status::deadline_exceeded(format!(
                            "the call did not finish within the daemon's deadline of {} s \
                             for unary calls ([limits] unary_timeout_seconds)",
                            deadline.as_secs()
                        ))
                        .into_http());
                    }
                },
            };
            let response = oversized_request_status(response, shared.max_request_bytes);
            Ok(hold(response, (permit, on_connection)))
        })
    }
}

/// The layer inside authentication: per-client rate and calls in flight.
#[derive(Clone)]
pub struct ClientLimitLayer {
    limiter: ClientLimiter,
}

impl ClientLimitLayer {
    /// The layer for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            limiter: ClientLimiter::new(limits),
        }
    }
}

impl<S> Layer<S> for ClientLimitLayer {
    type Service = ClientLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`ClientLimitLayer`] wraps around the router.
#[derive(Clone)]
pub struct ClientLimitService<S> {
    inner: S,
    limiter: ClientLimiter,
}

impl<S, B> Service<http::Request<B>> for ClientLimitService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Calls exempt from authentication (health checks) carry no caller; the daemon-wide
        // cap covers them.
        let admitted = req.extensions().get::<Caller>().map(|caller| {
            (
                self.limiter.admit(&caller.client_id, Instant::now()),
                caller,
            )
        });
        let permit = match admitted {
            None => None,
            Some((Ok(permit), _)) => Some(permit),
            Some((Err(refusal), caller)) => {
                tracing::debug!(
                    request_id = %caller.request_id,
                    client = %caller.client_id,
                    path = %req.uri().path(),
                    refusal = ?refusal,
                    "refused: client limit"
                );
                let status = refusal.to_status();
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        Box::pin(async move {
            let response = inner.call(req).await?;
            Ok(match permit {
                Some(permit) => hold(response, permit),
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn bucket_allows_a_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        // Empty: the next token comes in half a second at 2 per second.
        assert_eq!(b.take(t0), Err(secs(0.5)));
        assert_eq!(b.take(t0 + secs(0.25)), Err(secs(0.25)));
        assert_eq!(b.take(t0 + secs(0.5)), Ok(()));
        // A long idle period refills to the burst, never beyond.
        let later = t0 + secs(100.0);
        assert!(b.is_full(later));
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn bucket_ignores_a_clock_going_backwards() {
        let t0 = Instant::now() + secs(10.0);
        let mut b = TokenBucket::new(1.0, 1, t0);
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0 - secs(5.0)), Err(secs(1.0)));
        assert_eq!(b.take(t0 + secs(1.0)), Ok(()));
    }

    #[test]
    fn slow_rates_give_long_but_finite_hints() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.001, 1, t0);
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0), Err(secs(1000.0)));
    }

    fn limits(per_second: f64, burst: u32, in_flight: u32) -> Limits {
        Limits {
            requests_per_second: per_second,
            request_burst: burst,
            calls_in_flight_per_client: in_flight,
            ..Limits::default()
        }
    }

    #[test]
    fn clients_have_separate_buckets() {
        let t0 = Instant::now();
        let limiter = ClientLimiter::new(&limits(1.0, 2, 100));
        let _a1 = limiter.admit("a", t0).unwrap();
        let _a2 = limiter.admit("a", t0).unwrap();
        let refused = limiter.admit("a", t0).unwrap_err();
        assert_eq!(refused.retry_after(), secs(1.0));
        // Another client is not affected.
        let _b = limiter.admit("b", t0).unwrap();
        // One second later, one more call for a.
        let _a3 = limiter.admit("a", t0 + secs(1.0)).unwrap();
        assert!(limiter.admit("a", t0 + secs(1.0)).is_err());
    }

    #[test]
    fn calls_in_flight_are_capped_until_a_permit_drops() {
        let t0 = Instant::now();
        let limiter = ClientLimiter::new(&limits(1000.0, 1000, 2));
        let first = limiter.admit("a", t0).unwrap();
        let _second = limiter.admit("a", t0).unwrap();
        assert_eq!(
            limiter.admit("a", t0).unwrap_err(),
            Refusal::ClientInFlight { limit: 2 }
        );
        assert!(limiter.admit("b", t0).is_ok());
        drop(first);
        assert!(limiter.admit("a", t0).is_ok());
    }

    #[test]
    fn a_call_refused_for_concurrency_spends_no_token() {
        let t0 = Instant::now();
        let limiter = ClientLimiter::new(&limits(1.0, 2, 1));
        let held = limiter.admit("a", t0).unwrap();
        for _ in 0..5 {
            assert!(matches!(
                limiter.admit("a", t0),
                Err(Refusal::ClientInFlight { .. })
            ));
        }
        drop(held);
        assert!(limiter.admit("a", t0).is_ok());
    }

    #[test]
    fn idle_clients_are_forgotten_past_the_table_size() {
        let t0 = Instant::now();
        let limiter = ClientLimiter::new(&limits(1.0, 1, 10));
        let busy = limiter.admit("busy", t0).unwrap();
        for i in 0..PRUNE_ABOVE {
            drop(limiter.admit(&format!("c{i}"), t0).unwrap());
        }
        let later = t0 + secs(10.0);
        drop(limiter.admit("newcomer", later).unwrap());
        let table = limiter.inner.clients.lock().unwrap();
        // Everyone idle with a full bucket went; the busy client and the newcomer stayed.
        assert!(table.contains_key("busy") && table.contains_key("newcomer"));
        assert_eq!(table.len(), 2);
        drop(table);
        drop(busy);
    }

    #[test]
    fn refusals_are_resource_exhausted_with_a_retry_hint() {
        let s = Refusal::Rate {
            per_second: 10.0,
            burst: 20,
            retry_after: Duration::from_micros(1500),
        }
        .to_status();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get(RETRY_AFTER_MS).unwrap(), "2");
        assert!(s.message().contains("retry after 2 ms"), "{}", s.message());
        assert!(
            s.message().contains("10 calls per second"),
            "{}",
            s.message()
        );
        let s = Refusal::ClientInFlight { limit: 7 }.to_status();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get(RETRY_AFTER_MS).unwrap(), "100");
        assert!(s.message().contains("7 at once"), "{}", s.message());
        assert_eq!(retry_after_ms(Duration::ZERO), 1);
        assert_eq!(retry_after_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn unary_methods_come_from_the_descriptors() {
        let unary = unary_methods(&[
            vault_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
        .unwrap();
        assert!(unary.contains("/vault.v1.Supporters/Get"));
        assert!(unary.contains("/vault.v1.Admin/RotateKeys"));
        assert!(unary.contains("/grpc.health.v1.Health/Check"));
        for streaming in [
            "/vault.v1.Supporters/Search",
            "/vault.v1.Supporters/Import",
            "/vault.v1.Supporters/Watch",
            "/vault.v1.Audit/Query",
            "/vault.v1.Audit/ExportLog",
            "/grpc.health.v1.Health/Watch",
        ] {
            assert!(!unary.contains(streaming), "{streaming}");
        }
        // Every long-running exemption names a real unary method.
        for path in LONG_RUNNING {
            assert!(unary.contains(*path), "{path}");
        }
    }

    #[test]
    fn deadlines_apply_to_short_unary_calls_only() {
        let limits = Limits::default();
        let layer = GlobalLimitLayer::new(
            &limits,
            unary_methods(&[vault_proto::FILE_DESCRIPTOR_SET]).unwrap(),
        );
        let s = &layer.shared;
        assert_eq!(s.deadline("/vault.v1.Supporters/Get"), limits.unary_timeout);
        assert_eq!(s.deadline("/vault.v1.Supporters/Watch"), None);
        assert_eq!(s.deadline("/vault.v1.Supporters/Import"), None);
        assert_eq!(s.deadline("/vault.v1.Admin/Backup"), None);
        assert_eq!(s.deadline("/unknown.Service/Method"), None);
        let off = GlobalLimitLayer::new(
            &Limits {
                unary_timeout: None,
                ..limits
            },
            unary_methods(&[vault_proto::FILE_DESCRIPTOR_SET]).unwrap(),
        );
        assert_eq!(off.shared.deadline("/vault.v1.Supporters/Get"), None);
    }

    #[test]
    fn oversized_requests_become_resource_exhausted() {
        let tonic_status = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: \
             4194304 bytes",
        );
        let r = oversized_request_status(tonic_status.into_http(), 4194304);
        let s = r.extensions().get::<Status>().unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "request message too large: 5000000 bytes, the limit is 4194304 bytes (the \
             daemon's [limits] max_request_bytes)"
        );
        // Other statuses pass unchanged.
        let r = oversized_request_status(Status::out_of_range("other").into_http(), 1);
        let s = r.extensions().get::<Status>().unwrap();
        assert_eq!((s.code(), s.message()), (Code::OutOfRange, "other"));
    }
}
