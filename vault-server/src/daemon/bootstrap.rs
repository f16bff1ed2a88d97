//! The first start's credential: on a store with no client yet, the vault creates the
//! bootstrap admin and the daemon writes its token to `admin.token` in the data directory
//! (mode 0600, written atomically) before the client is committed: the one way in for
//! `vaultctl` on a fresh vault, and no credential that nobody holds.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use vault_core::Vault;

/// Creates the bootstrap admin if the store has none, its token written to `token_path`.
pub(super) async fn admin_token(vault: &Vault, token_path: &Path) -> vault_core::Result<()> {
    let wrote_token = AtomicBool::new(false);
    if vault
        .create_bootstrap_admin(|token| {
            wrote_token.store(true, Ordering::Relaxed);
            write_secret_file(token_path, token)
        })
        .await?
    {
        tracing::info!(path = %token_path.display(), "wrote bootstrap admin token");
    } else if wrote_token.load(Ordering::Relaxed) {
        // Another replica sharing the database created the bootstrap admin first: the
        // token just written was never registered. Don't leave a dead credential behind.
        let _ = std::fs::remove_file(token_path);
        tracing::info!(
            "another replica created the bootstrap admin first; no token written here (use its admin.token)"
        );
    }
    Ok(())
}

/// Writes a secret to `path` with mode 0600, atomically and durably
/// ([`vault_core::fsutil::replace_private`]).
fn write_secret_file(path: &Path, secret: &str) -> vault_core::Result<()> {
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(secret.len() + 1));
    line.extend_from_slice(secret.as_bytes());
    line.push(b'\n');
    vault_core::fsutil::replace_private(path, &line).map_err(|e| vault_core::Error::RootKeyFile {
        path: path.display().to_string(),
        reason: format!("admin token file cannot be written: {e}"),
    })
}
