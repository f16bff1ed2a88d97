//! Authentication: turns `authorization: Bearer <token>` into a [`Caller`].
//!
//! Runs as a tonic interceptor before any service code, so no call reaches the vault
//! unauthenticated. Token checks are constant-time comparisons of hashes (in `vault-core`).
//! Until client management exists, the bootstrap admin token is the only credential; new
//! credential kinds slot into [`Authenticator::authenticate`].

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};
use vault_core::{Caller, Vault};

/// Metadata key a client may set to correlate its calls with server logs.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Checks credentials against the vault.
#[derive(Clone)]
pub struct Authenticator {
    vault: Arc<Vault>,
}

impl Authenticator {
    /// An authenticator for `vault`.
    pub fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
    }

    /// The caller identified by the request's metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let request_id = request_id(metadata);
        let Some(value) = metadata.get("authorization") else {
            tracing::info!(%request_id, "refused: no credentials");
            return Err(Status::unauthenticated(
                "missing credentials: send metadata `authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                tracing::info!(%request_id, "refused: malformed authorization metadata");
                Status::unauthenticated(
                    "malformed credentials: use `authorization: Bearer <token>`",
                )
            })?;
        if self.vault.verify_bootstrap_admin(token) {
            return Ok(Caller::bootstrap_admin(request_id));
        }
        tracing::info!(%request_id, "refused: unknown or revoked token");
        Err(Status::unauthenticated(
            "invalid credentials: the token is unknown or revoked",
        ))
    }

    /// A tonic interceptor that stores the [`Caller`] in the request's extensions.
    pub fn interceptor(
        &self,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
        let auth = self.clone();
        move |mut req: Request<()>| {
            let caller = auth.authenticate(req.metadata())?;
            req.extensions_mut().insert(caller);
            Ok(req)
        }
    }
}

/// The caller a request was authenticated as.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing credentials"))
}

/// The client's request id when it is short and plain, otherwise a fresh one.
fn request_id(metadata: &MetadataMap) -> String {
    metadata
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(uuid_like)
}

fn uuid_like() -> String {
    let mut b = [0u8; 16];
    // A request id is a correlation handle, not a secret; a failed RNG read leaves zeros.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    hex::encode(b)
}
