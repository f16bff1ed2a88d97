//! Connections: how many the daemon holds, per peer and in all, and how long one may stay
//! without doing anything useful.
//!
//! Call limits (`layers/limits.rs`) only start once a call arrives; before that, a connection costs
//! a descriptor, buffers and a task, and an idle one costs them forever. This module bounds
//! that cost before any credential is checked:
//!
//! - [`ConnectionGate`]: a cap on open connections for the daemon and per peer IP address.
//!   A connection over a cap is accepted and closed at once (so the kernel's backlog never
//!   fills and legitimate peers still get through), counted, and logged at most once per
//!   [`REFUSAL_LOG_EVERY`] (warn), with every refusal at debug level
//!   (`VAULT_LOG=vault_server::daemon::connections=debug`).
//! - [`TrackedConn`], the connection as hyper reads it: closed when it has not completed
//!   its TLS handshake and sent the HTTP/2 client preface within the handshake deadline,
//!   and when it has had no call in flight for the idle timeout. HTTP/2 keepalive pings
//!   (configured on the server) close connections whose peer vanished.
//!
//! The accept loop ([`incoming`]) sets `TCP_NODELAY` on every connection (a reply is
//! several small writes; Nagle's algorithm would hold each back for the peer's delayed ACK)
//! and does the TLS handshake itself (rustls, the same settings
//! tonic would use: ALPN `h2`, optional or required client certificates), one task per
//! connection under the handshake deadline, so the deadline covers the handshake and the
//! preface together and a slow handshake never delays other connections. The client
//! certificate travels to authentication in [`ConnInfo`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tonic::transport::server::Connected;

use crate::daemon::layers::limits::Limits;

/// The HTTP/2 client connection preface (RFC 9113 §3.4): a connection has finished its
/// handshake once it sent these many bytes (hyper checks what they are).
const PREFACE_LEN: u32 = 24;

/// At most one warning per this interval for refused connections (the count is in it).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an accept error that is not about one connection
/// (out of descriptors): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the connection limits are, from `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// Open connections in the whole daemon.
    pub max_connections: u32,
    /// Open connections from one peer IP address.
    pub connections_per_peer: u32,
    /// From accept to the end of the TLS handshake and the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// How long a connection may stay with no call in flight (`None`: forever).
    pub idle_timeout: Option<Duration>,
}

impl ConnectionLimits {
    /// The connection settings of `limits`.
    pub fn of(limits: &Limits) -> Self {
        Self {
            max_connections: limits.max_connections,
            connections_per_peer: limits.connections_per_peer,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefusal {
    /// The daemon holds `max_connections` already.
    Daemon,
    /// This peer address holds `connections_per_peer` already.
    Peer,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    by_peer: HashMap<IpAddr, u32>,
}

#[derive(Debug)]
struct GateInner {
    limits: ConnectionLimits,
    open: Mutex<Open>,
    refused_daemon: AtomicU64,
    refused_peer: AtomicU64,
    /// Refusals counted when the last warning was logged, and when.
    last_warning: Mutex<(u64, Option<Instant>)>,
}

/// The caps on open connections; see the module documentation.
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    inner: Arc<GateInner>,
}

/// An open connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionPermit {
    gate: Arc<GateInner>,
    peer: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_peer.remove(&self.peer);
            }
        }
    }
}

impl ConnectionGate {
    /// A gate enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            inner: Arc::new(GateInner {
                limits,
                open: Mutex::new(Open::default()),
                refused_daemon: AtomicU64::new(0),
                refused_peer: AtomicU64::new(0),
                last_warning: Mutex::new((0, None)),
            }),
        }
    }

    /// Admits a connection from `peer`, or says which cap it is over.
    pub fn admit(&self, peer: IpAddr) -> Result<ConnectionPermit, ConnRefusal> {
        let limits = &self.inner.limits;
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open.total >= limits.max_connections {
            self.inner.refused_daemon.fetch_add(1, Ordering::Relaxed);
            return Err(ConnRefusal::Daemon);
        }
        let from_peer = open.by_peer.entry(peer).or_insert(0);
        if *from_peer >= limits.connections_per_peer {
            self.inner.refused_peer.fetch_add(1, Ordering::Relaxed);
            return Err(ConnRefusal::Peer);
        }
        *from_peer += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            gate: Arc::clone(&self.inner),
            peer,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Connections closed at once so far: over the daemon's cap, over a peer's cap.
    pub fn refused(&self) -> (u64, u64) {
        (
            self.inner.refused_daemon.load(Ordering::Relaxed),
            self.inner.refused_peer.load(Ordering::Relaxed),
        )
    }

    /// Whether a warning about refusals is due at `now`: some since the last one, and the
    /// last one at least [`REFUSAL_LOG_EVERY`] ago. Returns the refusals since then.
    fn warning_due(&self, now: Instant) -> Option<u64> {
        let (daemon, peer) = self.refused();
        let total = daemon + peer;
        let mut last = self
            .inner
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (counted, at) = *last;
        if total == counted || at.is_some_and(|t| now < t + REFUSAL_LOG_EVERY) {
            return None;
        }
        *last = (total, Some(now));
        Some(total - counted)
    }

    fn log_refusal(&self, peer: SocketAddr, why: ConnRefusal) {
        let limits = &self.inner.limits;
        tracing::debug!(%peer, refusal = ?why, "connection closed at once: over a connection cap");
        if let Some(since) = self.warning_due(Instant::now()) {
            let (daemon, per_peer) = self.refused();
            tracing::warn!(
                refused_since_last_warning = since,
                refused_over_daemon_cap = daemon,
                refused_over_peer_cap = per_peer,
                max_connections = limits.max_connections,
                connections_per_peer = limits.connections_per_peer,
                "connections refused: over the [limits] max_connections or \
                 connections_per_peer cap"
            );
        }
    }
}

/// What one connection has been doing, shared between its reader ([`TrackedConn`]) and
/// the calls it carries ([`ConnInfo::call_started`]).
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    /// Bytes of the preface read so far (saturating at [`PREFACE_LEN`]).
    preface: AtomicU32,
    handshake_done: AtomicBool,
    calls: AtomicU32,
    /// When the last call ended (or the handshake did, before any call).
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new(limits: &ConnectionLimits, accepted: Instant) -> Self {
        Self {
            accepted,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            preface: AtomicU32::new(0),
            handshake_done: AtomicBool::new(false),
            calls: AtomicU32::new(0),
            idle_since: Mutex::new(accepted),
        }
    }

    fn set_idle_since(&self, at: Instant) {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Counts `n` bytes read in plaintext (after TLS): the first [`PREFACE_LEN`] are the
    /// preface, whose end ends the handshake.
    fn read_bytes(&self, n: usize, now: Instant) {
        if self.handshake_done.load(Ordering::Relaxed) || n == 0 {
            return;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let before = self
            .preface
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_add(n).min(PREFACE_LEN))
            })
            .unwrap_or(PREFACE_LEN);
        if before.saturating_add(n) >= PREFACE_LEN {
            self.finish_handshake(now);
        }
    }

    fn finish_handshake(&self, now: Instant) {
        if !self.handshake_done.swap(true, Ordering::Relaxed) {
            self.set_idle_since(now);
        }
    }

    /// When the connection must be closed if nothing changes: `None` while a call is in
    /// flight (or with no idle timeout, once the handshake is done).
    pub fn deadline(&self) -> Option<Instant> {
        if !self.handshake_done.load(Ordering::Relaxed) {
            return Some(self.accepted + self.handshake_timeout);
        }
        if self.calls.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let idle_since = *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.idle_timeout.map(|t| idle_since + t)
    }

    /// Why the connection is closed at `deadline`, for the debug log.
    fn expired_because(&self) -> &'static str {
        if self.handshake_done.load(Ordering::Relaxed) {
            "idle timeout: no call in flight for [limits] idle_timeout_seconds"
        } else {
            "handshake deadline: no TLS handshake and HTTP/2 preface within [limits] \
             handshake_timeout_seconds"
        }
    }
}

/// A call in flight on a connection; dropping it (when the reply is finished or dropped)
/// starts the connection's idle time again.
#[derive(Debug)]
pub struct CallOnConnection {
    activity: Arc<Activity>,
}

impl Drop for CallOnConnection {
    fn drop(&mut self) {
        // The idle time starts now, before the count can reach zero: a reader that sees no
        // call in flight sees this time or a later one.
        self.activity.set_idle_since(Instant::now());
        self.activity.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a request knows of its connection (tonic puts it in the request's extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The client's TLS certificate chain, leaf first, when it presented one.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    activity: Arc<Activity>,
}

impl ConnInfo {
    /// Marks a call in flight on this connection until the returned guard drops.
    pub fn call_started(&self) -> CallOnConnection {
        self.activity.calls.fetch_add(1, Ordering::Relaxed);
        // A call proves the handshake is over, whatever the byte count says.
        self.activity.finish_handshake(Instant::now());
        CallOnConnection {
            activity: Arc::clone(&self.activity),
        }
    }
}

/// The bytes under a connection: TCP, or TLS over TCP.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection as the HTTP/2 server reads it: its place under the caps, and the deadlines
/// of the module documentation, enforced by failing its reads once they pass.
#[derive(Debug)]
pub struct TrackedConn {
    transport: Transport,
    info: ConnInfo,
    timer: Pin<Box<Sleep>>,
    _permit: ConnectionPermit,
}

impl TrackedConn {
    /// Whether a deadline passed; otherwise arms the timer to wake the reader at the next
    /// one (or, with a call in flight, one idle timeout from now, to look again).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let activity = &self.info.activity;
            let now = Instant::now();
            let wake_at = match activity.deadline() {
                Some(deadline) if deadline <= now => return true,
                Some(deadline) => deadline,
                None => match activity.idle_timeout {
                    Some(idle) => now + idle,
                    None => return false,
                },
            };
            if self.timer.deadline() != wake_at {
                self.timer.as_mut().reset(wake_at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl Connected for TrackedConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TrackedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_expired(cx) {
            tracing::debug!(
                peer = ?this.info.remote,
                reason = this.info.activity.expired_because(),
                "closing connection"
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                this.info.activity.expired_because(),
            )));
        }
        let before = buf.filled().len();
        let polled = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled {
            let read = buf.filled().len().saturating_sub(before);
            this.info.activity.read_bytes(read, Instant::now());
        }
        polled
    }
}

impl AsyncWrite for TrackedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepted, admitted connections for the HTTP/2 server, with TLS done when `tls` is set.
/// The accept loop runs in a task that ends when the receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    gate: ConnectionGate,
    tls: Option<TlsAcceptor>,
) -> mpsc::Receiver<io::Result<TrackedConn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, gate, tls, tx));
    rx
}

async fn accept_loop(
    listener: TcpListener,
    gate: ConnectionGate,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<io::Result<TrackedConn>>,
) {
    let limits = gate.inner.limits;
    let mut last_error_log: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) and the like: pause, never stop
                    // serving; a failed connection (ECONNABORTED) is simply gone.
                    let now = Instant::now();
                    if last_error_log.is_none_or(|t| now >= t + REFUSAL_LOG_EVERY) {
                        last_error_log = Some(now);
                        tracing::warn!(error = %e, "accepting a connection failed; pausing accepts briefly");
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        let permit = match gate.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(why) => {
                // Closed at once: dropping the stream sends FIN; the peer's slot was never
                // taken.
                drop(stream);
                gate.log_refusal(peer, why);
                continue;
            }
        };
        // A reply is several writes (headers, message, trailers; a TLS record each): with
        // Nagle's algorithm the later ones wait for the peer's ACK of the first, which the
        // peer delays (~40 ms on Linux). Every call would take 40 ms more whatever the vault
        // does, and 64 in flight would cap the daemon near 1,500 calls/s. A failure here only
        // costs latency: keep the connection.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let accepted = Instant::now();
        let activity = Arc::new(Activity::new(&limits, accepted));
        let deadline = accepted + limits.handshake_timeout;
        match &tls {
            None => {
                let conn = TrackedConn {
                    transport: Transport::Plain(stream),
                    info: ConnInfo {
                        remote: Some(peer),
                        peer_certs: None,
                        activity,
                    },
                    timer: Box::pin(tokio::time::sleep_until(deadline)),
                    _permit: permit,
                };
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout_at(deadline, acceptor.accept(stream)).await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "closing connection: TLS handshake deadline");
                            return;
                        }
                    };
                    let peer_certs = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|certs| Arc::new(certs.to_vec()));
                    let conn = TrackedConn {
                        transport: Transport::Tls(Box::new(stream)),
                        info: ConnInfo {
                            remote: Some(peer),
                            peer_certs,
                            activity,
                        },
                        timer: Box::pin(tokio::time::sleep_until(deadline)),
                        _permit: permit,
                    };
                    let _ = tx.send(Ok(conn)).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32, per_peer: u32) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            connections_per_peer: per_peer,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// Without TCP_NODELAY every reply waits ~40 ms for the client's delayed ACK (the
    /// daemon served 23 audited Gets a second at one in flight, 1,400 µs each inside).
    #[tokio::test]
    async fn accepted_connections_send_without_nagle_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut rx = incoming(listener, ConnectionGate::new(limits(4, 4)), None);
        let _client = TcpStream::connect(addr).await.unwrap();
        let conn = rx.recv().await.unwrap().unwrap();
        match &conn.transport {
            Transport::Plain(stream) => assert!(stream.nodelay().unwrap()),
            Transport::Tls(_) => panic!("a plaintext listener gave a TLS connection"),
        }
    }

    #[test]
    fn caps_hold_per_peer_and_in_all_and_free_on_drop() {
        let gate = ConnectionGate::new(limits(3, 2));
        let a1 = gate.admit(ip(2)).unwrap();
        let _a2 = gate.admit(ip(2)).unwrap();
        assert_eq!(gate.admit(ip(2)).unwrap_err(), ConnRefusal::Peer);
        // Another peer still gets in, up to the daemon's cap.
        let _b1 = gate.admit(ip(1)).unwrap();
        assert_eq!(gate.admit(ip(1)).unwrap_err(), ConnRefusal::Daemon);
        assert_eq!(gate.open(), 3);
        assert_eq!(gate.refused(), (1, 1));
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(ip(2)).unwrap();
        // A peer whose last connection closed is forgotten.
        let gate = ConnectionGate::new(limits(3, 2));
        drop(gate.admit(ip(9)).unwrap());
        assert!(gate.inner.open.lock().unwrap().by_peer.is_empty());
    }

    #[test]
    fn refusal_warnings_are_rate_limited() {
        let gate = ConnectionGate::new(limits(0, 0));
        let t0 = Instant::now();
        assert_eq!(gate.warning_due(t0), None, "nothing refused yet");
        for _ in 0..5 {
            assert!(gate.admit(ip(1)).is_err());
        }
        assert_eq!(gate.warning_due(t0), Some(5));
        assert!(gate.admit(ip(1)).is_err());
        assert_eq!(gate.warning_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(gate.warning_due(t0 + REFUSAL_LOG_EVERY), Some(1));
        assert_eq!(gate.warning_due(t0 + 3 * REFUSAL_LOG_EVERY), None);
    }

    #[test]
    fn deadlines_follow_handshake_calls_and_idle_time() {
        let t0 = Instant::now();
        let activity = Arc::new(Activity::new(&limits(1, 1), t0));
        let info = ConnInfo {
            remote: None,
            peer_certs: None,
            activity: Arc::clone(&activity),
        };
        assert_eq!(activity.deadline(), Some(t0 + Duration::from_secs(10)));
        // Part of the preface is not the handshake's end.
        activity.read_bytes(10, t0);
        assert_eq!(activity.deadline(), Some(t0 + Duration::from_secs(10)));
        activity.read_bytes(14, t0);
        assert_eq!(activity.deadline(), Some(t0 + Duration::from_secs(300)));
        // No deadline while a call is in flight; the idle time starts when it ends.
        let call = info.call_started();
        assert_eq!(activity.deadline(), None);
        drop(call);
        let after = activity.deadline().unwrap();
        assert!(after >= t0 + Duration::from_secs(300));
        // Without an idle timeout, a connection past its handshake has no deadline.
        let forever = Activity::new(
            &ConnectionLimits {
                idle_timeout: None,
                ..limits(1, 1)
            },
            t0,
        );
        forever.read_bytes(100, t0);
        assert_eq!(forever.deadline(), None);
    }
}
