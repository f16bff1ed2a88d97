//! The gRPC services, one per file: each maps its calls onto `vault-core` and back
//! (messages through `convert`, errors through `status`), behind the `layers`.

pub mod admin;
pub mod audit;
pub mod consent;
pub mod rights;
pub mod supporters;

use tonic::Status;
use vault_core::{Caller, Rpc, Vault};

use crate::daemon::status::to_status;

/// Maps a library result to a status. The access decision itself is logged by the library;
/// this line is the daemon's operational log of the call (ids and codes only).
pub(crate) fn finish<T>(
    caller: &Caller,
    rpc: &'static str,
    result: vault_core::Result<T>,
) -> Result<T, Status> {
    let result = result.map_err(to_status);
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    tracing::debug!(request_id = %caller.request_id, client = %caller.client_id, rpc, code = ?code, "call");
    result
}

/// Passes a converted request through, or records its refusal in the access log (one entry,
/// as for every refusal) and returns it: for what the server checks before the library sees
/// the call.
pub(crate) async fn accepted<T, E: Into<vault_core::Error>>(
    vault: &Vault,
    caller: &Caller,
    rpc: Rpc,
    converted: Result<T, E>,
) -> vault_core::Result<T> {
    match converted {
        Ok(v) => Ok(v),
        Err(e) => vault.refused(caller, rpc, e.into()).await,
    }
}
