//! Serving: open the vault, install the purpose registry, write the bootstrap credential on
//! first start (`bootstrap.rs`), assemble the layers and services and serve gRPC until
//! SIGTERM/SIGINT, then drain in-flight calls, stop the background tasks (`housekeeping.rs`,
//! the witnesses, the metrics listener, the health follower) and flush the store and the
//! access log.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
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
use super::{bootstrap, housekeeping, tls};

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
    bootstrap::admin_token(&vault, &config.admin_token_path()).await?;

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
            let acceptor = tls::server_tls(tls)?;
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
    let housekeeping = tokio::spawn(housekeeping::log_and_retention(
        Arc::clone(&vault),
        config.retention_sweep_every,
    ));
    let key_housekeeping = tokio::spawn(housekeeping::key_epochs(Arc::clone(&vault)));
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
