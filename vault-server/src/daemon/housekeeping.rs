//! The daemon's background duties, two tasks that `serve.rs` spawns at start and aborts at
//! shutdown: [`log_and_retention`] (access-log checkpoints, access-log and change-feed
//! pruning, the scheduled retention sweep of supporters) and [`key_epochs`] (rotation and
//! destruction of key epochs), apart so a long re-wrap pass never delays a checkpoint.
//! Failures are logged and retried on the next round; the daemon keeps serving.

use std::sync::Arc;

use vault_core::Vault;

/// Background duties: a signed checkpoint of the access log when entries were added and
/// the last one is older than the configured interval; retention pruning every six hours;
/// the retention sweep of supporters on its schedule (first run one interval after start).
pub(super) async fn log_and_retention(vault: Arc<Vault>, sweep_every: Option<std::time::Duration>) {
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
pub(super) async fn key_epochs(vault: Arc<Vault>) {
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
