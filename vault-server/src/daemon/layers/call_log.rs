//! The per-call line: one `info` line when a call ends, and the call's metrics.
//!
//! [`CallLogLayer`] is the outermost tower layer, so it sees every call, refused or not:
//! it times the call from its arrival to the end of its reply (for a stream, the stream's
//! whole life), reads the gRPC code (from the headers of an immediate refusal, or from the
//! reply's trailers), counts it in [`Metrics`], and writes the line. The caller is
//! authenticated further in: [`CallerTagLayer`], just inside authentication, copies the
//! registered client's id into a slot the outer layer left in the request.
//!
//! The line holds the method (`rpc`, the access log's name for it, or `unknown` for a
//! path no service serves: a raw path is client input and is never logged), the code,
//! the latency in microseconds, the client id (a registered client's UUID or
//! `bootstrap-admin`; `-` before authentication), the request id (as in the access log, to
//! join the two) and the transport (`plaintext`, `tls` or `mtls`). Never a token, a
//! purpose, a peer address or any request field. Health checks are logged at `debug`
//! only: load balancers probe every few seconds and would drown the log; they are still
//! counted in the metrics.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Frame, SizeHint};
use prost::bytes::Bytes;
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::Level;
use vault_core::Caller;
use vault_proto::metadata::RETRY_AFTER_MS;

use crate::daemon::layers::auth::HEALTH_PREFIX;
use crate::daemon::metrics::{Metrics, code_name};

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// Who made a call, once authentication knows: the client id and the request id.
#[derive(Clone, Default)]
struct CallerSlot(Arc<OnceLock<(String, String)>>);

/// The outermost layer: times, counts and logs every call.
#[derive(Clone)]
pub struct CallLogLayer {
    metrics: Arc<Metrics>,
}

impl CallLogLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLogService {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service [`CallLogLayer`] wraps around the rest of the stack.
#[derive(Clone)]
pub struct CallLogService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<http::Request<B>> for CallLogService<S>
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

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call; leave a fresh one behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let slot = CallerSlot::default();
        req.extensions_mut().insert(slot.clone());
        let mut record = CallRecord::start(
            Arc::clone(&self.metrics),
            req.uri().path().to_owned(),
            transport(&req),
            slot,
        );
        Box::pin(async move {
            // Dropped here (the client went away before a reply): the record ends CANCELLED.
            let response = inner.call(req).await?;
            record.refused_by_limits = response.headers().contains_key(RETRY_AFTER_MS);
            if let Some(code) = grpc_status(response.headers()) {
                record.finish(code);
                return Ok(response);
            }
            Ok(response.map(|inner| {
                tonic::body::Body::new(LoggedBody {
                    inner,
                    record: Some(record),
                })
            }))
        })
    }
}

/// The layer just inside authentication: hands the caller to [`CallLogLayer`]'s record.
#[derive(Clone, Default)]
pub struct CallerTagLayer;

impl<S> Layer<S> for CallerTagLayer {
    type Service = CallerTagService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerTagService { inner }
    }
}

/// The service [`CallerTagLayer`] wraps.
#[derive(Clone)]
pub struct CallerTagService<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for CallerTagService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let (Some(caller), Some(slot)) = (
            req.extensions().get::<Caller>(),
            req.extensions().get::<CallerSlot>(),
        ) {
            let _ = slot
                .0
                .set((caller.client_id.clone(), caller.request_id.clone()));
        }
        self.inner.call(req)
    }
}

/// One call between its arrival and its end; ends exactly once (dropped unfinished: the
/// client cancelled).
struct CallRecord {
    metrics: Arc<Metrics>,
    path: String,
    transport: &'static str,
    slot: CallerSlot,
    started: Instant,
    refused_by_limits: bool,
    finished: bool,
}

impl CallRecord {
    fn start(
        metrics: Arc<Metrics>,
        path: String,
        transport: &'static str,
        slot: CallerSlot,
    ) -> Self {
        metrics.call_started();
        Self {
            metrics,
            path,
            transport,
            slot,
            started: Instant::now(),
            refused_by_limits: false,
            finished: false,
        }
    }

    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        self.metrics
            .call_ended(&self.path, code, elapsed, self.refused_by_limits);
        let (client, request_id) = self
            .slot
            .0
            .get()
            .map_or(("-", "-"), |(c, r)| (c.as_str(), r.as_str()));
        let rpc = self.metrics.rpc_label(&self.path);
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let transport = self.transport;
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    target: "vault_server::call",
                    $level,
                    rpc = %rpc,
                    code = %code_name(code),
                    latency_us,
                    client = %client,
                    request_id = %request_id,
                    transport = %transport,
                    "call"
                )
            };
        }
        if self.path.starts_with(HEALTH_PREFIX) {
            line!(Level::DEBUG);
        } else {
            line!(Level::INFO);
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A reply body that ends its call's record when the trailers (the gRPC status) pass, the
/// body fails, or it is dropped.
struct LoggedBody {
    inner: tonic::body::Body,
    record: Option<CallRecord>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|t| grpc_status(t).unwrap_or(Code::Unknown)),
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            // The body ended without trailers: not a gRPC reply.
            Poll::Ready(None) => Some(Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(code) = ended
            && let Some(mut record) = this.record.take()
        {
            record.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in these headers or trailers, if any.
fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

/// How the call's connection was made: `plaintext`, `tls`, or `mtls` (a client
/// certificate was presented).
fn transport<B>(req: &http::Request<B>) -> &'static str {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    match req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>() {
        None => "plaintext",
        Some(info) if info.peer_certs().is_some_and(|c| !c.is_empty()) => "mtls",
        Some(_) => "tls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_read_from_headers_and_trailers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(grpc_status(&h), Some(Code::NotFound));
        h.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert_eq!(grpc_status(&h), Some(Code::Ok));
        h.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(grpc_status(&h), None);
    }

    fn render(metrics: &Metrics) -> String {
        metrics.render(&crate::daemon::metrics::VaultFigures {
            access_log_entries: 0,
            checkpoint_age_seconds: None,
            flushes: vault_core::latency::LatencyHistogram::new().snapshot(),
        })
    }

    #[tokio::test]
    async fn a_reply_body_ends_its_call_at_the_trailers_not_before() {
        use http_body_util::BodyExt as _;
        const PATH: &str = "/vault.v1.Supporters/Get";
        let metrics = Arc::new(Metrics::new([PATH]));
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames: Vec<Result<Frame<Bytes>, Status>> = vec![
            Ok(Frame::data(Bytes::from_static(b"reply"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = LoggedBody {
            inner: tonic::body::Body::new(http_body_util::StreamBody::new(tokio_stream::iter(
                frames,
            ))),
            record: Some(CallRecord::start(
                Arc::clone(&metrics),
                PATH.into(),
                "plaintext",
                CallerSlot::default(),
            )),
        };
        let collected = body.collect().await.ok().map(|c| c.to_bytes());
        assert_eq!(collected.as_deref(), Some(&b"reply"[..]));
        let text = render(&metrics);
        assert!(
            text.contains("vault_calls_total{rpc=\"Supporters.Get\",code=\"OK\"} 1"),
            "{text}"
        );
        assert!(!text.contains("CANCELLED"), "{text}");
    }

    #[test]
    fn a_record_ends_once_and_a_dropped_one_is_cancelled() {
        let metrics = Arc::new(Metrics::new(["/vault.v1.Supporters/Get"]));
        let mut record = CallRecord::start(
            Arc::clone(&metrics),
            "/vault.v1.Supporters/Get".into(),
            "plaintext",
            CallerSlot::default(),
        );
        record.finish(Code::NotFound);
        drop(record);
        drop(CallRecord::start(
            Arc::clone(&metrics),
            "/vault.v1.Supporters/Get".into(),
            "plaintext",
            CallerSlot::default(),
        ));
        let text = render(&metrics);
        assert!(
            text.contains("vault_calls_total{rpc=\"Supporters.Get\",code=\"NOT_FOUND\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vault_calls_total{rpc=\"Supporters.Get\",code=\"CANCELLED\"} 1"),
            "{text}"
        );
        assert!(text.contains("vault_calls_in_flight 0"), "{text}");
    }
}
