//! `grpc.health.v1` follows the store: `SERVING` while it accepts writes, `NOT_SERVING`
//! (for the whole server, `""`, and for every vault service) once it refuses them.
//!
//! When the store refuses writes every call fails, reads included (a read's access-log
//! entry must be durable before its data leaves), so a daemon that still says `SERVING`
//! would keep a load balancer sending it traffic it can only refuse. The vault publishes its
//! store's health (`vault_core::storage::StoreHealth`); this task mirrors it on the health
//! service, and while the store is unavailable it probes with a small durable write every
//! few seconds, which clears the health once writes work again. On the embedded store a
//! failed flush is final until restart (the probe keeps failing); on PostgreSQL the daemon
//! serves again by itself once the database has space.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use vault_core::Vault;
use vault_proto::v1::admin_server::AdminServer;
use vault_proto::v1::audit_server::AuditServer;
use vault_proto::v1::consent_server::ConsentServer;
use vault_proto::v1::rights_server::RightsServer;
use vault_proto::v1::supporters_server::SupportersServer;

use crate::daemon::grpc::admin::AdminService;
use crate::daemon::grpc::audit::AuditService;
use crate::daemon::grpc::consent::ConsentService;
use crate::daemon::grpc::rights::RightsService;
use crate::daemon::grpc::supporters::SupportersService;

/// How often a store that refused writes is probed with a write.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The names the health service answers for: the whole server and each vault service.
pub const SERVICES: [&str; 6] = [
    "",
    <SupportersServer<SupportersService> as NamedService>::NAME,
    <ConsentServer<ConsentService> as NamedService>::NAME,
    <RightsServer<RightsService> as NamedService>::NAME,
    <AdminServer<AdminService> as NamedService>::NAME,
    <AuditServer<AuditService> as NamedService>::NAME,
];

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for name in SERVICES {
        reporter.set_service_status(name, status).await;
    }
}

/// Marks every service `SERVING` (before the daemon listens, so no health check finds a
/// vault service unknown), then mirrors the store's health in a task until it is aborted.
pub async fn follow_store(vault: Arc<Vault>, reporter: HealthReporter) -> JoinHandle<()> {
    set_all(&reporter, ServingStatus::Serving).await;
    tokio::spawn(mirror(vault, reporter))
}

async fn mirror(vault: Arc<Vault>, reporter: HealthReporter) {
    let mut health = vault.store_health().subscribe();
    let mut serving = Some(true);
    loop {
        let unavailable = *health.borrow_and_update();
        let now_serving = unavailable.is_none();
        if serving != Some(now_serving) {
            serving = Some(now_serving);
            match unavailable {
                None => set_all(&reporter, ServingStatus::Serving).await,
                Some(cause) => {
                    tracing::warn!(%cause, "health: NOT_SERVING until the store accepts writes");
                    set_all(&reporter, ServingStatus::NotServing).await;
                }
            }
        }
        if now_serving {
            if health.changed().await.is_err() {
                return;
            }
        } else {
            tokio::select! {
                changed = health.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(PROBE_EVERY) => {
                    // Success clears the health (and the next turn says SERVING); a failure
                    // was already logged by the store when the cause first appeared.
                    let _ = vault.probe_store().await;
                }
            }
        }
    }
}
