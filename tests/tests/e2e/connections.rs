//! Connection limits, end to end: connections over the daemon's or a peer's cap are closed
//! at once, connections that never finish their handshake or stay idle are closed after
//! their deadlines, a legitimate peer is still served while another fills its cap, and the
//! daemon's descriptors stay bounded by the cap, with TLS off and on.
//!
//! Attackers bind their sockets to other loopback addresses (127.0.0.2 and up: Linux
//! routes all of 127/8 to `lo`), so the legitimate client on 127.0.0.1 is another peer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vault_proto::v1 as pb;
use vault_proto::v1::admin_client::AdminClient;
use vault_tests::pki::{ca, leaf};
use vault_tests::{Daemon, authed, write};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long the test waits for something that must happen (generous: a loaded machine).
const BOUND: Duration = Duration::from_secs(60);

/// Descriptors the daemon may hold beyond one per admitted connection: accept-time spikes
/// of connections being closed, and the odd file the store opens meanwhile.
const SLACK: usize = 8;

/// A TCP connection from `127.0.0.<from>`, with the preface sent when `preface`.
async fn connect_from(from: u8, to: SocketAddr, preface: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, from), 0)))
        .unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    if preface {
        // The daemon may close an excess connection before the write lands.
        let _ = stream.write_all(PREFACE).await;
    }
    stream
}

/// Whether the daemon closed `stream` (EOF or reset), reading and dropping whatever it
/// sent (its SETTINGS frame) without waiting.
fn closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn count_closed(streams: &[TcpStream]) -> usize {
    streams.iter().filter(|s| closed(s)).count()
}

/// Polls until `done` holds, at most [`BOUND`]; panics with `what` otherwise.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < BOUND,
            "still waiting after {BOUND:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Open descriptors and resident memory (KiB) of `pid`.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    (fds, rss)
}

fn limits_config(dir: &Path, limits: &str, tls: &str) -> String {
    write(dir, "vault.toml", &format!("{tls}\n[limits]\n{limits}\n"))
}

async fn health_serving(channel: Channel) {
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check of a legitimate client")
        .into_inner();
    assert_eq!(r.status, ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_connections_are_closed_at_once_and_other_peers_served() {
    let dir = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    // Deadlines far beyond the test's waits: here only the caps close connections.
    let config = limits_config(
        conf.path(),
        "max_connections = 12\nconnections_per_peer = 4\nhandshake_timeout_seconds = 300\n\
         idle_timeout_seconds = 3600",
        "",
    );
    let daemon = Daemon::start_with(dir.path(), &["--config", &config]);
    let (fds_before, rss_before) = fds_and_rss(daemon.pid());

    // One peer opens 10: its cap is 4, the other 6 are closed at once.
    let mut from_2 = Vec::new();
    for _ in 0..10 {
        from_2.push(connect_from(2, daemon.addr, true).await);
    }
    wait_until("6 of 127.0.0.2's 10 connections closed", || {
        count_closed(&from_2) >= 6
    })
    .await;
    assert_eq!(
        count_closed(&from_2),
        6,
        "exactly the connections over the per-peer cap are closed"
    );

    // Its cap is full; a client on 127.0.0.1 is another peer, and is served.
    let channel = daemon.channel().await;
    health_serving(channel.clone()).await;
    AdminClient::new(channel.clone())
        .list_clients(authed(pb::ListClientsRequest {}, &daemon.admin_token()))
        .await
        .expect("an authenticated call of the legitimate client");

    // The daemon's cap: 4 + 1 open; 7 more fill it to 12, the 13th and everything after
    // is closed at once, whichever peer it comes from.
    let mut others = Vec::new();
    for from in [3, 4, 5, 6] {
        for _ in 0..4 {
            others.push(connect_from(from, daemon.addr, true).await);
        }
    }
    wait_until(
        "9 of the 16 connections over the daemon's cap closed",
        || count_closed(&others) >= 9,
    )
    .await;
    assert_eq!(count_closed(&others), 9);
    assert_eq!(count_closed(&from_2), 6, "held connections stay open");

    // A flood against the full daemon: all closed at once, nothing more held.
    let mut flood = Vec::new();
    for i in 0..2000u32 {
        flood.push(connect_from(10 + (i % 200) as u8, daemon.addr, i % 2 == 0).await);
    }
    wait_until("the flood closed", || count_closed(&flood) == flood.len()).await;
    let (fds_after, rss_after) = fds_and_rss(daemon.pid());
    eprintln!(
        "daemon: {fds_before} descriptors and {rss_before} KiB resident before, {fds_after} and \
         {rss_after} KiB after 2,026 connection attempts with max_connections = 12"
    );
    assert!(
        fds_after <= fds_before + 12 + SLACK,
        "{fds_after} descriptors open (before: {fds_before}; cap 12 connections)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_after_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let config = limits_config(
        conf.path(),
        "handshake_timeout_seconds = 1\nidle_timeout_seconds = 2",
        "",
    );
    let daemon = Daemon::start_with(dir.path(), &["--config", &config]);
    let mut silent = Vec::new();
    let mut partial = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..20 {
        silent.push(connect_from(2, daemon.addr, false).await);
        let mut p = connect_from(3, daemon.addr, false).await;
        p.write_all(&PREFACE[..10]).await.unwrap();
        partial.push(p);
        idle.push(connect_from(4, daemon.addr, true).await);
    }
    wait_until("connections without a preface closed", || {
        count_closed(&silent) == silent.len() && count_closed(&partial) == partial.len()
    })
    .await;
    wait_until("connections idle after the preface closed", || {
        count_closed(&idle) == idle.len()
    })
    .await;

    // A connection with a call in flight is not idle: a health Watch stream outlives
    // several idle timeouts and still gets the server's answer.
    let channel = daemon.channel().await;
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Closed, the stream would end at once (an error or its end); open, it waits.
    let next = tokio::time::timeout(Duration::from_secs(1), watch.message()).await;
    assert!(
        next.is_err(),
        "the stream ended while its call was in flight: {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let server_ca = ca("vault test server CA");
    let (cert, key, _) = leaf(
        &server_ca,
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let tls = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        write(pki.path(), "s.crt", &cert),
        write(pki.path(), "s.key", &key)
    );
    let config = limits_config(
        pki.path(),
        "connections_per_peer = 3\nhandshake_timeout_seconds = 1\nidle_timeout_seconds = 3600",
        &tls,
    );
    let daemon = Daemon::start_with(dir.path(), &["--config", &config]);

    // Over the per-peer cap: closed at once, before any TLS.
    let mut from_2 = Vec::new();
    for _ in 0..5 {
        from_2.push(connect_from(2, daemon.addr, false).await);
    }
    wait_until("2 of 5 connections over the per-peer cap closed", || {
        count_closed(&from_2) >= 2
    })
    .await;
    // The 3 admitted ones never start a TLS handshake, or stop in the middle of a
    // ClientHello: closed by the handshake deadline.
    let mut stalled = connect_from(3, daemon.addr, false).await;
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    wait_until("connections without a TLS handshake closed", || {
        count_closed(&from_2) == from_2.len() && closed(&stalled)
    })
    .await;

    // A TLS client on 127.0.0.1 is served, and identified as before.
    let channel = Channel::from_shared(format!("https://localhost:{}", daemon.addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(server_ca.cert.pem()))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    health_serving(channel.clone()).await;
    AdminClient::new(channel)
        .list_clients(authed(pb::ListClientsRequest {}, &daemon.admin_token()))
        .await
        .expect("an authenticated call over TLS");
}
