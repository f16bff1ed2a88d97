//! `vaultctl audit ...`: the tamper-evident access log (auditor and dpo roles): export,
//! public key, checkpoints, pin and verify-since ask the daemon; `verify` checks an exported
//! file offline, with no daemon and no token.

use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use vault_core::audit::witness::Cosigner;
use vault_core::audit::{Checkpoint, SignedCheckpoint};
use vault_proto::v1 as pb;

use super::CtlError;
use crate::client::Session;
use crate::client::output::checkpoints_json;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Write the offline-verifiable log file (docs/audit-log-format.md).
    Export {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// First entry wanted (widened to the signed checkpoint before it).
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Last entry wanted (0: up to the head).
        #[arg(long, default_value_t = 0)]
        to_seq: u64,
        /// End the file at the newest checkpoint that at least this many witnesses
        /// cosigned, with their cosignatures (0: end at the head).
        #[arg(long, default_value_t = 0)]
        min_cosignatures: u32,
    },
    /// Print the log's Ed25519 public key (hex), or with --vkey its C2SP verifier key.
    PublicKey {
        /// Print the signed-note verifier key `<origin>+<key id>+<base64>` instead, to
        /// configure witnesses and auditors with.
        #[arg(long)]
        vkey: bool,
    },
    /// Verify an exported file offline: no daemon, no token.
    Verify(VerifyArgs),
    /// Save the newest signed checkpoint to a file, to check later that the log still
    /// extends it (`audit verify-since`).
    Pin {
        /// Where to write it (JSON; holds no personal data).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check that the daemon's current log extends a pinned checkpoint: both signatures
    /// with the public key you hold, and the RFC 9162 consistency proof between them (asks
    /// the daemon; `audit verify FILE --since CHECKPOINT` does the same offline, on an
    /// exported file).
    VerifySince {
        /// A checkpoint saved by `audit pin`.
        pinned: PathBuf,
        /// The public key file: 32 raw bytes, or hex, or base64.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// List signed checkpoints.
    Checkpoints {
        /// Only checkpoints of at least this size.
        #[arg(long, default_value_t = 0)]
        since_seq: u64,
    },
    /// List entries (JSON lines), filtered.
    Query {
        /// About this supporter.
        #[arg(long)]
        subject: Option<String>,
        /// By this client id.
        #[arg(long)]
        actor: Option<String>,
        /// Of this call, e.g. Supporters.Get.
        #[arg(long)]
        action: Option<String>,
    },
}

// No doc comment: the `Verify` variant's is the subcommand's help.
#[derive(Debug, ClapArgs)]
pub(crate) struct VerifyArgs {
    /// The exported file.
    file: PathBuf,
    /// The public key file: 32 raw bytes, or hex, or base64.
    #[arg(long)]
    public_key: PathBuf,
    /// Require the whole retained log: the file starts at entry 0 or exactly at the
    /// log's signed retention cut (a dropped prefix, or a range export, is refused).
    #[arg(long)]
    whole: bool,
    /// A witness's cosigning key (vkey `<name>+<key id>+<base64(0x04 ‖ key)>`, or a file
    /// holding one); repeat for several.
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// Fail unless the file's signed end carries valid cosignatures from at least this
    /// many of the --witness keys (0: cosignatures are not required).
    #[arg(long, default_value_t = 0)]
    require_witnesses: usize,
    /// A checkpoint you kept (saved by `audit pin`): fail unless the file's log extends
    /// it (its Merkle root at the checkpoint's size is the checkpoint's root), both
    /// signed by --public-key. Offline: the file must reach the checkpoint's size and
    /// start no later.
    #[arg(long, value_name = "CHECKPOINT")]
    since: Option<PathBuf>,
}

/// Reads a public key file: 32 raw bytes, 64 hexadecimal characters, or base64.
fn read_public_key(path: &Path) -> Result<Vec<u8>, CtlError> {
    use base64::Engine as _;
    let bytes = std::fs::read(path).map_err(CtlError::file("read", path))?;
    if bytes.len() == 32 {
        return Ok(bytes);
    }
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    let key = hex::decode(&text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(&text).ok())
        .ok_or_else(|| {
            CtlError::bad_file(path, "not a public key (32 raw bytes, hex or base64)")
        })?;
    if key.len() != 32 {
        return Err(CtlError::bad_file(
            path,
            format!("an Ed25519 public key has 32 bytes, this one {}", key.len()),
        ));
    }
    Ok(key)
}

/// A witness key given on the command line: the vkey itself, or a file holding it.
fn read_witness(arg: &str) -> Result<Cosigner, CtlError> {
    let path = Path::new(arg);
    let text = if !arg.contains('+') && path.exists() {
        std::fs::read_to_string(path).map_err(CtlError::file("read", path))?
    } else {
        arg.to_owned()
    };
    Cosigner::from_vkey(text.trim()).map_err(|e| CtlError::BadWitness {
        arg: arg.to_owned(),
        reason: e.to_string(),
    })
}

/// A checkpoint saved by `audit pin`, its signature verified with `key`.
fn read_pinned(path: &Path, key: &[u8]) -> Result<Checkpoint, CtlError> {
    let text = std::fs::read(path).map_err(CtlError::file("read", path))?;
    let signed: SignedCheckpoint = serde_json::from_slice(&text).map_err(|e| {
        CtlError::bad_file(path, format!("not a checkpoint saved by `audit pin`: {e}"))
    })?;
    signed.verify(key).ok_or_else(|| {
        CtlError::bad_file(
            path,
            "the pinned checkpoint's signature does not verify with this public key",
        )
    })
}

/// `audit verify FILE`: the file checked offline, with what `args` requires beyond
/// soundness (the whole log, witnesses, extending a pinned checkpoint).
pub(crate) fn verify_offline(args: &VerifyArgs) -> Result<String, CtlError> {
    let VerifyArgs {
        file,
        public_key,
        whole,
        witnesses,
        require_witnesses,
        since,
    } = args;
    let (whole, required) = (*whole, *require_witnesses);
    let key = read_public_key(public_key)?;
    let since = since.as_deref().map(|p| read_pinned(p, &key)).transpose()?;
    let witnesses = witnesses
        .iter()
        .map(|w| read_witness(w))
        .collect::<Result<Vec<_>, _>>()?;
    if required > witnesses.len() {
        return Err(CtlError::TooFewWitnesses {
            required,
            given: witnesses.len(),
        });
    }
    // Read and verified a piece at a time: an export of any length in bounded memory.
    let opened = std::fs::File::open(file).map_err(CtlError::file("read", file))?;
    let requirements = vault_core::audit::file::Requirements { whole, since };
    let verified =
        vault_core::audit::file::verify_reader(opened, &key, requirements, &witnesses, required)
            .map_err(CtlError::file("read", file))?;
    match verified {
        Ok(v) => Ok(serde_json::json!({
            "ok": true,
            "first_seq": v.first_seq,
            "entries": v.entries,
            "checkpoints": v.checkpoints,
            "tree_size": v.end.size,
            "root": hex::encode(v.end.root),
            "retention_cut": v.cut.map(|c| serde_json::json!({
                "size": c.size, "cut_at_us": c.cut_at_us, "retention_us": c.retention_us,
            })),
            "witnessed_by": v.witnessed_by,
            "extends": since.map(|c| serde_json::json!({
                "size": c.size, "root": hex::encode(c.root),
            })),
        })
        .to_string()),
        Err(e) => Err(CtlError::Verification(e.to_string())),
    }
}

/// Runs an `audit` command that asks the daemon.
pub(crate) async fn run(
    session: &Session,
    command: AuditCommand,
    json: bool,
) -> Result<String, CtlError> {
    let mut client = session.audit();
    match command {
        AuditCommand::Verify(args) => verify_offline(&args),
        AuditCommand::Pin { out } => {
            let newest = newest_checkpoint(session).await?;
            let json = serde_json::to_vec_pretty(&newest)?;
            std::fs::write(&out, &json).map_err(CtlError::file("write", &out))?;
            Ok(serde_json::json!({
                "out": out.display().to_string(), "size": newest.size, "root": newest.root,
            })
            .to_string())
        }
        AuditCommand::VerifySince { pinned, public_key } => {
            let key = read_public_key(&public_key)?;
            let old = read_pinned(&pinned, &key)?;
            let newest_signed = newest_checkpoint(session).await?;
            let new = newest_signed.verify(&key).ok_or_else(|| {
                CtlError::Verification(
                    "the daemon's newest checkpoint is not signed by this public key".into(),
                )
            })?;
            if new.size < old.size {
                return Err(CtlError::Verification(format!(
                    "the log is shorter ({}) than the pinned checkpoint ({}): it was cut or \
                     replaced",
                    new.size, old.size
                )));
            }
            let r = client
                .consistency_proof(session.request(pb::ConsistencyProofRequest {
                    from_size: old.size,
                    to_size: new.size,
                })?)
                .await?
                .into_inner();
            let proof: Vec<[u8; 32]> = r
                .hashes
                .iter()
                .map(|h| <[u8; 32]>::try_from(h.as_slice()))
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    CtlError::Verification("the proof holds a hash that is not 32 bytes".into())
                })?;
            vault_core::audit::merkle::verify_consistency(
                old.size, new.size, &old.root, &new.root, &proof,
            )
            .map_err(|e| {
                CtlError::Verification(format!(
                    "the current log (size {}) does not extend the pinned checkpoint (size \
                     {}): {e}",
                    new.size, old.size
                ))
            })?;
            Ok(serde_json::json!({
                "ok": true, "pinned_size": old.size, "size": new.size,
                "root": hex::encode(new.root),
            })
            .to_string())
        }
        AuditCommand::PublicKey { vkey } => {
            let r = client
                .public_key(session.request(pb::PublicKeyRequest {})?)
                .await?
                .into_inner();
            if vkey && r.vkey.is_empty() {
                return Err(CtlError::NoVkey);
            }
            Ok(match (json, vkey) {
                (true, _) => serde_json::json!({
                    "public_key": hex::encode(&r.public_key),
                    "vkey": (!r.vkey.is_empty()).then_some(&r.vkey),
                })
                .to_string(),
                (false, true) => r.vkey,
                (false, false) => hex::encode(r.public_key),
            })
        }
        AuditCommand::Export {
            out,
            from_seq,
            to_seq,
            min_cosignatures,
        } => {
            let mut stream = client
                .export_log(session.request(pb::ExportLogRequest {
                    from_seq,
                    to_seq,
                    min_cosignatures,
                })?)
                .await?
                .into_inner();
            // Written as it arrives, never held whole: an export of any length, into a 0600
            // temporary file renamed over `out` once the stream ended; a failed stream
            // leaves `out` as it was (no cut file).
            let mut file = vault_core::fsutil::Replacement::begin(&out)?;
            let (mut bytes, mut lines) = (0usize, 0usize);
            while let Some(chunk) = stream.message().await? {
                file.write_all(&chunk.data)?;
                bytes += chunk.data.len();
                lines += chunk.data.iter().filter(|b| **b == b'\n').count();
            }
            file.finish()?;
            Ok(serde_json::json!({ "out": out.display().to_string(), "bytes": bytes, "lines": lines }).to_string())
        }
        AuditCommand::Checkpoints { since_seq } => {
            let r = client
                .checkpoints(session.request(pb::CheckpointsRequest { since_seq })?)
                .await?
                .into_inner();
            Ok(checkpoints_json(&r.checkpoints).to_string())
        }
        AuditCommand::Query {
            subject,
            actor,
            action,
        } => {
            let mut stream = client
                .query(session.request(pb::QueryRequest {
                    subject_id: subject.unwrap_or_default(),
                    actor: actor.unwrap_or_default(),
                    action: action.unwrap_or_default(),
                    since: None,
                    until: None,
                })?)
                .await?
                .into_inner();
            let mut out = Vec::new();
            while let Some(e) = stream.message().await? {
                out.push(String::from_utf8_lossy(&e.raw).into_owned());
            }
            Ok(out.join("\n"))
        }
    }
}

/// The daemon's newest signed checkpoint, in the form auditors keep.
async fn newest_checkpoint(session: &Session) -> Result<SignedCheckpoint, CtlError> {
    let r = session
        .audit()
        .checkpoints(session.request(pb::CheckpointsRequest { since_seq: 0 })?)
        .await?
        .into_inner();
    let c = r.checkpoints.last().ok_or(CtlError::NoCheckpoint)?;
    Ok(SignedCheckpoint {
        size: c.size,
        root: hex::encode(&c.root),
        last_leaf: hex::encode(&c.last_leaf),
        at_us: c.at_us,
        signature: hex::encode(&c.signature),
    })
}
