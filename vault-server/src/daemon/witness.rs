//! The witness client: submits every durable access-log checkpoint to the configured
//! witnesses (c2sp.org/tlog-witness) and keeps their cosignatures in the store.
//!
//! One task per witness. It waits for the log's newest durable checkpoint
//! ([`vault_core::journal::Core::durable_checkpoints`]: never one that was only applied, which a
//! crash could still undo after a witness cosigned it), then POSTs `<url>/add-checkpoint`:
//! `old <size>`, the consistency proof from the size the witness last cosigned for this
//! origin, a blank line, the checkpoint note. The size the witness holds is learnt from the
//! witness itself: the first request after start says `old 0`, and a `409 Conflict` answers
//! with the witness's size, to retry with. Any other refusal is logged and retried later,
//! backing off; the vault keeps serving whatever witnesses say. Checkpoints that arrive
//! while one is being submitted are not queued: the next submission takes the newest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use vault_core::Vault;
use vault_core::audit::SignedCheckpoint;
use vault_core::audit::witness::{add_checkpoint_request, cosignatures_in_reply};

use crate::daemon::config::WitnessConfig;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply read: a few signature lines.
const MAX_REPLY: usize = 64 * 1024;
/// Retry delays after a failure: from the first to the longest.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);
/// `409 Conflict` answers followed in one submission before giving up until the next.
const MAX_CONFLICTS: usize = 3;

/// Why a submission did not get a cosignature.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The witness could not be reached, or its reply not read.
    #[error("cannot reach the witness: {0}")]
    Http(String),
    /// The witness answered with a refusal.
    #[error("the witness refused the checkpoint at size {size} (HTTP {status}): {reason}")]
    Refused {
        /// The checkpoint's size.
        size: u64,
        /// HTTP status.
        status: u16,
        /// What it means.
        reason: String,
    },
    /// The vault could not build the submission or keep the cosignature.
    #[error(transparent)]
    Vault(#[from] vault_core::Error),
}

/// Starts one task per witness; they end when the daemon stops (their handles abort them).
pub fn spawn(
    vault: &Arc<Vault>,
    origin: &str,
    witnesses: &[WitnessConfig],
) -> Vec<tokio::task::JoinHandle<()>> {
    witnesses
        .iter()
        .map(|w| tokio::spawn(run(Arc::clone(vault), origin.to_owned(), w.clone())))
        .collect()
}

async fn run(vault: Arc<Vault>, origin: String, witness: WitnessConfig) {
    let mut durable = vault.access_log().durable_checkpoints();
    // The size the witness holds for this origin, as far as it told us.
    let mut known: Option<u64> = None;
    let mut retry = FIRST_RETRY;
    let name = witness.cosigner.name().to_owned();
    loop {
        let newest = durable.borrow_and_update().clone();
        if let Some(cp) = newest.filter(|cp| known.is_none_or(|k| k < cp.size)) {
            match submit(&vault, &origin, &witness, &cp, &mut known).await {
                Ok(Some(size)) => {
                    tracing::info!(target: "vault::witness", witness = %name, size, "checkpoint cosigned");
                    retry = FIRST_RETRY;
                }
                Ok(None) => retry = FIRST_RETRY,
                Err(e) => {
                    tracing::warn!(
                        target: "vault::witness",
                        witness = %name,
                        error = %e,
                        retry_in_seconds = retry.as_secs(),
                        "checkpoint not cosigned; will retry"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LONGEST_RETRY);
                    continue;
                }
            }
        }
        if durable.changed().await.is_err() {
            return;
        }
    }
}

/// Submits `cp`; `Ok(Some(size))` once cosigned, `Ok(None)` when the witness already holds
/// a larger size (another replica's checkpoint: nothing to do until a newer one).
async fn submit(
    vault: &Vault,
    origin: &str,
    witness: &WitnessConfig,
    cp: &SignedCheckpoint,
    known: &mut Option<u64>,
) -> Result<Option<u64>, WitnessError> {
    let log = vault.access_log();
    let note = log.checkpoint_note(origin, cp)?;
    let refused = |status: u16, reason: String| WitnessError::Refused {
        size: cp.size,
        status,
        reason,
    };
    for _ in 0..=MAX_CONFLICTS {
        let old = known.unwrap_or(0);
        if old > cp.size {
            return Ok(None);
        }
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            log.consistency_proof(old, cp.size).await?
        };
        let body = add_checkpoint_request(old, &proof, &note);
        let (status, reply) = post(&witness.url, body.into_bytes()).await?;
        match status {
            200 => {
                let cosigned =
                    cosignatures_in_reply(&witness.cosigner, &note, &log.public_key(), &reply)
                        .map_err(|e| refused(200, format!("its reply does not verify: {e}")))?;
                if cosigned.is_empty() {
                    return Err(refused(
                        200,
                        "its reply holds no cosignature by the configured key (check the \
                         witness's vkey)"
                            .into(),
                    ));
                }
                vault
                    .add_cosignatures(origin, cp, &witness.cosigner, &cosigned)
                    .await?;
                *known = Some(cp.size);
                return Ok(Some(cp.size));
            }
            409 => {
                let theirs = std::str::from_utf8(&reply)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| refused(409, "its reply is not a tree size".into()))?;
                if theirs == old {
                    // Same size, and still a conflict: it holds another root there.
                    return Err(refused(
                        409,
                        format!(
                            "it holds a different root at size {theirs}: the log it saw and \
                             this one have forked; investigate (compare with the checkpoints \
                             auditors hold)"
                        ),
                    ));
                }
                tracing::debug!(target: "vault::witness", witness = %witness.cosigner.name(), size = theirs, "the witness holds another size; submitting again from it");
                *known = Some(theirs);
            }
            404 => {
                return Err(refused(
                    404,
                    format!(
                        "it does not know the origin {origin}: configure it with this log's key \
                         (vaultctl audit public-key --vkey)"
                    ),
                ));
            }
            403 => {
                return Err(refused(
                    403,
                    "the log's signature does not verify with the key it holds for this origin"
                        .into(),
                ));
            }
            422 => {
                return Err(refused(
                    422,
                    format!(
                        "the consistency proof from size {old} does not verify: the log it saw \
                         and this one have forked; investigate"
                    ),
                ));
            }
            other => {
                let text = String::from_utf8_lossy(&reply);
                let text: String = text.chars().take(200).collect();
                return Err(refused(other, text.trim().to_owned()));
            }
        }
    }
    Err(refused(
        409,
        "its size kept changing; trying again later".into(),
    ))
}

/// POSTs `body` to `url` over one HTTP/1.1 connection; returns the status and the body.
async fn post(url: &http::Uri, body: Vec<u8>) -> Result<(u16, Vec<u8>), WitnessError> {
    let http = |e: &dyn std::fmt::Display| WitnessError::Http(format!("{url}: {e}"));
    let host = url.host().ok_or_else(|| http(&"no host"))?;
    let port = url.port_u16().unwrap_or(80);
    let authority = url
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.to_owned());
    let path = url
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/add-checkpoint".to_owned());
    let exchange = async {
        // A bracketed IPv6 literal connects without its brackets.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| http(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(&e))?;
        // The connection is driven beside the request; it ends with the exchange.
        let driver = tokio::spawn(connection);
        let request = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(&e))?;
        let response = sender.send_request(request).await.map_err(|e| http(&e))?;
        let status = response.status().as_u16();
        let reply = Limited::new(response.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| http(&e))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok((status, reply))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| http(&"no answer in time"))?
}
