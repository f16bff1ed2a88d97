//! Authentication: a tower layer in front of every service turns
//! `authorization: Bearer <token>` (or, with mutual TLS and no token, a registered client
//! certificate) and `x-vault-purpose` into a [`Caller`].
//!
//! It runs before any service code, so no call reaches the vault unauthenticated; only
//! `grpc.health.v1.Health` is exempt (it answers SERVING and nothing else, and probes
//! cannot send credentials). Token checks hash the token and compare hashes in constant
//! time (in `vault-core`); the client record is read on every call, so a revocation
//! applies to the very next call, on every daemon sharing the store.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderMap;
use tonic::Status;
use tower::{Layer, Service};
use vault_core::{Caller, Vault};
use vault_proto::metadata::{AUTHORIZATION, BEARER_PREFIX, PURPOSE, REQUEST_ID};

use crate::daemon::status::to_status;

pub(crate) const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// Server reflection, every version: served to authenticated clients, logged here.
const REFLECTION_PREFIX: &str = "/grpc.reflection.";

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

    /// The caller identified by the request's headers, or by its TLS client certificate
    /// (`peer_cert`, DER) when it sends no token.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        path: &str,
        peer_cert: Option<&[u8]>,
    ) -> Result<Caller, Status> {
        let request_id = request_id(headers);
        let refuse = |status: Status| async {
            // The refusal is logged durably like every other decision; if the log cannot
            // take it, the call fails all the same.
            if let Err(e) = self
                .vault
                .log_unauthenticated(rpc_name(path), &request_id)
                .await
            {
                return Err(to_status(e));
            }
            Err(status)
        };
        let Some(value) = headers.get(AUTHORIZATION) else {
            if let Some(der) = peer_cert {
                let fingerprint = hex::encode(ring::digest::digest(&ring::digest::SHA256, der));
                return match self.vault.authenticate_certificate(&fingerprint).await {
                    Ok(client) => Ok(caller_of(client, headers, request_id)),
                    Err(e) => refuse(to_status(e)).await,
                };
            }
            return refuse(Status::unauthenticated(
                "missing credentials: send metadata `authorization: Bearer <token>` \
                 (or connect with a registered client certificate)",
            ))
            .await;
        };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix(BEARER_PREFIX))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return refuse(Status::unauthenticated(
                "malformed credentials: use `authorization: Bearer <token>`",
            ))
            .await;
        };
        match self.vault.authenticate(token).await {
            Ok(client) => Ok(caller_of(client, headers, request_id)),
            Err(e) => refuse(to_status(e)).await,
        }
    }
}

fn caller_of(client: vault_core::Client, headers: &HeaderMap, request_id: String) -> Caller {
    let purpose = headers
        .get(PURPOSE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    Caller {
        client_id: client.id,
        role: client.role,
        allowed_purposes: client.purposes,
        purpose,
        request_id,
    }
}

/// The DER bytes of the TLS client certificate of the connection, if any.
fn peer_cert<B>(req: &http::Request<B>) -> Option<Vec<u8>> {
    let info = req
        .extensions()
        .get::<crate::daemon::connections::ConnInfo>()?;
    let certs = info.peer_certs.as_ref()?;
    certs.first().map(|c| c.as_ref().to_vec())
}

/// `Service.Method` from a gRPC path `/vault.v1.Service/Method`.
pub(crate) fn rpc_name(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    let service = service.rsplit('.').next().unwrap_or(service);
    let name: String = format!("{service}.{method}").chars().take(96).collect();
    name
}

/// The client's request id when it is short and plain, otherwise a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(fresh_request_id)
}

fn fresh_request_id() -> String {
    let mut b = [0u8; 16];
    // A request id is a correlation handle, not a secret; a failed RNG read leaves zeros.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    hex::encode(b)
}

/// The caller a request was authenticated as (set by [`AuthLayer`]).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing credentials"))
}

/// The tower layer that authenticates every call.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Authenticator,
}

impl AuthLayer {
    /// A layer checking credentials with `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for AuthService<S>
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
        if req.uri().path().starts_with(HEALTH_PREFIX) {
            return Box::pin(inner.call(req));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let cert = peer_cert(&req);
            match auth
                .authenticate(req.headers(), &path, cert.as_deref())
                .await
            {
                Ok(caller) => {
                    // Reflection has no vault operation to log it: log it here, before it
                    // answers (every authenticated call is one access-log entry).
                    if path.starts_with(REFLECTION_PREFIX)
                        && let Err(e) = auth
                            .vault
                            .log_protocol_call(&caller, &rpc_name(&path))
                            .await
                    {
                        return Ok(to_status(e).into_http());
                    }
                    req.extensions_mut().insert(caller);
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_from_paths() {
        assert_eq!(rpc_name("/vault.v1.Supporters/Get"), "Supporters.Get");
        assert_eq!(
            rpc_name("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            "ServerReflection.ServerReflectionInfo"
        );
        assert_eq!(rpc_name(""), ".");
    }

    #[test]
    fn wire_constants_match_the_policy() {
        // vault-proto carries its own copies (it does not link vault-core): they must be
        // the names the policy reports and decides on.
        assert_eq!(PURPOSE, vault_core::access::PURPOSE_METADATA_KEY);
        assert_eq!(
            vault_proto::metadata::DPO_PURPOSE,
            vault_core::purpose::DPO_PURPOSE
        );
    }

    #[test]
    fn request_ids_are_kept_when_plain() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, "has space".parse().unwrap());
        assert_eq!(request_id(&h).len(), 32);
    }
}
