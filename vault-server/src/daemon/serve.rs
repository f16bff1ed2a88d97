//! The daemon's life: open the vault, write the bootstrap credential on first start,
//! serve gRPC until SIGTERM/SIGINT, then drain in-flight calls and flush. Background
//! housekeeping signs access-log checkpoints, prunes the log, and rotates and destroys key
//! epochs on schedule.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use vault_core::Vault;
use vault_proto::v1::admin_server::AdminServer;
use vault_proto::v1::audit_server::AuditServer;
use vault_proto::v1::consent_server::ConsentServer;
use vault_proto::v1::rights_server::RightsServer;
use vault_proto::v1::supporters_server::SupportersServer;

use super::config::Config;
use super::connections::{ConnectionGate, ConnectionLimits};
use super::grpc::admin::AdminService;
use super::grpc::audit::AuditService;
use super::grpc::consent::ConsentService;
use super::grpc::rights::RightsService;
use super::grpc::supporters::SupportersService;
use super::layers::auth::{AuthLayer, Authenticator};
use super::layers::call_log::{CallLogLayer, CallerTagLayer};
use super::layers::limits::{ClientLimitLayer, GlobalLimitLayer, unary_methods};

/// Why the daemon stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The vault could not be opened.
    #[error(transparent)]
    Vault(#[from] vault_core::Error),
    /// The listen address could not be bound, or serving failed.
    #[error("{0}")]
    Serve(String),
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let (vault, report) = Vault::open(&config.vault_options()).await?;
    tracing::info!(store = %report.store, "opened the store");
    if report.root_key_created {
        tracing::info!(path = %report.root_key_path.display(), "created root key file (back it up: without it the data cannot be read)");
    }
    let registry = vault
        .install_registry(
            config.purposes.as_deref().unwrap_or_default(),
            config.replace_default_purposes,
        )
        .await?;
    log_registry(&registry);
    let vault = Arc::new(vault);
    let origin = config.audit_origin.clone().unwrap_or_else(|| {
        vault_core::audit::witness::default_origin(&vault.access_log().public_key())
    });
    let token_path = config.admin_token_path();
    let wrote_token = AtomicBool::new(false);
    if vault
        .create_bootstrap_admin(|token| {
            wrote_token.store(true, Ordering::Relaxed);
            write_secret_file(&token_path, token)
        })
        .await?
    {
        tracing::info!(path = %token_path.display(), "wrote bootstrap admin token");
    } else if wrote_token.load(Ordering::Relaxed) {
        // Another replica sharing the database created the bootstrap admin first: the
        // token just written was never registered. Don't leave a dead credential behind.
        let _ = std::fs::remove_file(&token_path);
        tracing::info!(
            "another replica created the bootstrap admin first; no token written here (use its admin.token)"
        );
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| DaemonError::Serve(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DaemonError::Serve(e.to_string()))?;

    let auth = Authenticator::new(Arc::clone(&vault));
    let limits = config.limits.clone();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let store_health = super::health::follow_store(Arc::clone(&vault), health_reporter).await;
    // Reflection v1 and v1alpha: many clients (grpcurl's older releases, Python's
    // grpcio-reflection) still speak only v1alpha. Same descriptors, same authentication.
    let reflection_builder = || {
        // Each version lists both reflection services, not only itself.
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .register_encoded_file_descriptor_set(vault_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error = |e| DaemonError::Serve(format!("reflection: {e}"));
    let reflection = reflection_builder().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(reflection_error)?;
    let unary = unary_methods(&[
        vault_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ])
    .map_err(|e| DaemonError::Serve(format!("reading the service descriptors: {e}")))?;
    let (metrics, metrics_task) = super::metrics::start(config.metrics_listen, &vault).await?;

    // The shutdown signal starts the drain; calls still running after the grace period
    // (or clients that keep idle connections open) do not hold the daemon forever.
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = drain_tx.send(());
    };
    let grace = config.shutdown_grace;
    let deadline = async move {
        if drain_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };

    let builder = Server::builder()
        .max_concurrent_streams(limits.streams_per_connection)
        .http2_keepalive_interval(limits.keepalive_interval)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout));
    let tls = match &config.tls {
        Some(tls) => {
            let acceptor = server_tls(tls)?;
            let mutual = if tls.client_ca_file.is_some() {
                " (mutual TLS)"
            } else {
                ""
            };
            tracing::info!("TLS enabled{mutual}");
            Some(acceptor)
        }
        None => None,
    };
    let housekeeping = tokio::spawn(housekeeping(
        Arc::clone(&vault),
        config.retention_sweep_every,
    ));
    let key_housekeeping = tokio::spawn(key_housekeeping(Arc::clone(&vault)));
    let witnesses = super::witness::spawn(&vault, &origin, &config.audit_witnesses);
    if !witnesses.is_empty() {
        tracing::info!(%origin, witnesses = witnesses.len(), "submitting access-log checkpoints to witnesses");
    }
    tracing::info!("listening on {addr}");
    // Outermost first: the call log times and counts every call, daemon-wide limits see
    // every call, authentication then identifies the caller (tagged for the call log), and
    // the per-client limits key on it.
    let (max_in, max_out) = (limits.max_request_bytes, limits.max_response_bytes);
    let serve = builder
        .layer(CallLogLayer::new(metrics))
        .layer(GlobalLimitLayer::new(&limits, unary))
        .layer(AuthLayer::new(auth))
        .layer(CallerTagLayer)
        .layer(ClientLimitLayer::new(&limits))
        .add_service(
            health_service
                .max_decoding_message_size(max_in)
                .max_encoding_message_size(max_out),
        )
        .add_service(
            reflection
                .max_decoding_message_size(max_in)
                .max_encoding_message_size(max_out),
        )
        .add_service(
            reflection_v1alpha
                .max_decoding_message_size(max_in)
                .max_encoding_message_size(max_out),
        )
        .add_service(
            SupportersServer::new(
                SupportersService::new(Arc::clone(&vault))
                    .with_import_rows(limits.import_rows_per_call),
            )
            .max_decoding_message_size(max_in)
            .max_encoding_message_size(max_out),
        )
        .add_service(
            ConsentServer::new(ConsentService::new(Arc::clone(&vault)))
                .max_decoding_message_size(max_in)
                .max_encoding_message_size(max_out),
        )
        .add_service(
            RightsServer::new(RightsService::new(Arc::clone(&vault)))
                .max_decoding_message_size(max_in)
                .max_encoding_message_size(max_out),
        )
        .add_service(
            AdminServer::new(AdminService::new(
                Arc::clone(&vault),
                config.controller.clone().unwrap_or_default(),
                report.store.clone(),
            ))
            .max_decoding_message_size(max_in)
            .max_encoding_message_size(max_out),
        )
        .add_service(
            AuditServer::new(AuditService::new(Arc::clone(&vault)).with_origin(origin))
                .max_decoding_message_size(max_in)
                .max_encoding_message_size(max_out),
        )
        .serve_with_incoming_shutdown(
            ReceiverStream::new(super::connections::incoming(
                listener,
                ConnectionGate::new(ConnectionLimits::of(&limits)),
                tls,
            )),
            signal,
        );
    tokio::select! {
        served = serve => served.map_err(|e| DaemonError::Serve(e.to_string()))?,
        () = deadline => tracing::warn!(
            grace_seconds = grace.as_secs(),
            "connections still open after the shutdown grace period; closing them"
        ),
    }

    housekeeping.abort();
    key_housekeeping.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    store_health.abort();
    for w in &witnesses {
        w.abort();
    }
    vault.sync().await?;
    vault.access_log().close().await?;
    tracing::info!(
        "stopped: in-flight calls finished, the access log checkpointed and the store flushed"
    );
    Ok(())
}

/// Logs the purpose registry in force, one line per purpose (names, bases, channels and
/// retention: what the record of processing activities says; nothing personal), so an
/// operator sees at start what the config file and the store made of it.
fn log_registry(registry: &[vault_core::Purpose]) {
    tracing::info!(purposes = registry.len(), "purpose registry in force");
    for p in registry {
        let channels: Vec<&str> = p.channels.iter().map(|c| c.as_str()).collect();
        tracing::info!(
            purpose = %p.id,
            lawful_basis = %p.lawful_basis,
            special_category_basis = %p.special_category_basis,
            channels = %channels.join(","),
            retention_days = p.retention_days,
            "purpose"
        );
    }
}

/// Background duties: a signed checkpoint of the access log when entries were added and
/// the last one is older than the configured interval; retention pruning every six hours;
/// the retention sweep of supporters on its schedule (first run one interval after start).
async fn housekeeping(vault: Arc<Vault>, sweep_every: Option<std::time::Duration>) {
    const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if sweep_every.is_some_and(|every| last_sweep.elapsed() >= every) {
            last_sweep = tokio::time::Instant::now();
            match vault.retention_sweep_scheduled().await {
                Ok(r) => tracing::info!(
                    examined = r.examined,
                    erased = r.subjects.len(),
                    "retention sweep done"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed; next at its schedule")
                }
            }
        }
        if let Err(e) = vault.access_log().checkpoint_if_due().await {
            tracing::warn!(error = %e, "access-log checkpoint failed; retrying in a second");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            match vault.prune_access_log().await {
                Ok(r) if r.entries > 0 || r.changes > 0 => tracing::info!(
                    removed = r.entries,
                    changes = r.changes,
                    anchor = r.anchor_size,
                    "pruned access-log entries past retention, and their change-feed rows"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "access-log retention pruning failed"),
            }
        }
    }
}

/// Key epochs: rotation when the active epoch is older than `[keys] rotate_every_hours`,
/// and destruction of epochs retired for longer than the backup window, at start and then
/// when the next of them is due (checked at least hourly). A separate task, so a long
/// re-wrap pass never delays access-log checkpoints. Every step is an atomic batch:
/// stopping in the middle (shutdown) leaves a state the next run completes. Destruction
/// also reloads the keyring, so a replica never keeps a stale one for more than an hour.
async fn key_housekeeping(vault: Arc<Vault>) {
    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
    // Keeps a failing step from spinning.
    const AT_LEAST: std::time::Duration = std::time::Duration::from_secs(5);
    loop {
        match vault.rotate_if_due().await {
            Ok(Some(epoch)) => tracing::info!(epoch, "rotated the key epochs on schedule"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled key rotation failed; will retry"),
        }
        match vault.destroy_expired_epochs().await {
            Ok(destroyed) if !destroyed.is_empty() => tracing::info!(
                epochs = ?destroyed,
                "destroyed key epochs retired for longer than the backup window"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "destroying expired key epochs failed; will retry")
            }
        }
        let wait = match vault.key_work_due_in().await {
            Ok(Some(due)) => due.min(HOUR),
            Ok(None) => HOUR,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the key epochs' schedule");
                HOUR
            }
        };
        tokio::time::sleep(wait.max(AT_LEAST)).await;
    }
}

/// The server's TLS settings from the `[tls]` section's files: what tonic's own TLS would
/// set up (ALPN `h2`; with a client CA, client certificates verified against it, optional
/// unless `require_client_cert`), on rustls with the ring provider.
fn server_tls(tls: &super::config::TlsConfig) -> Result<TlsAcceptor, DaemonError> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            DaemonError::Serve(format!("cannot read TLS {what} {}: {e}", path.display()))
        })
    };
    let bad = |path: &Path, what: &str, e: &dyn std::fmt::Display| {
        DaemonError::Serve(format!("TLS {what} {}: {e}", path.display()))
    };
    let certs = |path: &Path, what: &str| -> Result<Vec<CertificateDer<'static>>, DaemonError> {
        CertificateDer::pem_slice_iter(&read(path, what)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(path, what, &e))
    };
    let chain = certs(&tls.cert_file, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key_file, "key")?)
        .map_err(|e| bad(&tls.key_file, "key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| DaemonError::Serve(format!("TLS configuration: {e}")))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca, "client CA")? {
                roots.add(cert).map_err(|e| bad(ca, "client CA", &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if tls.require_client_cert.unwrap_or(false) {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder
                .with_client_cert_verifier(verifier.build().map_err(|e| bad(ca, "client CA", &e))?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad(&tls.cert_file, "certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Writes a secret to `path` with mode 0600, atomically (temporary file, fsync, rename).
fn write_secret_file(path: &Path, secret: &str) -> vault_core::Result<()> {
    let io = |e: std::io::Error| vault_core::Error::RootKeyFile {
        path: path.display().to_string(),
        reason: format!("admin token file cannot be written: {e}"),
    };
    let tmp = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received; draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; draining"),
    }
}
