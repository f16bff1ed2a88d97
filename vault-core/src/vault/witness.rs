//! Witnesses' cosignatures of the access log's checkpoints: kept in the store (table
//! `audit_cosignatures`), handed to auditors in the exported log (`witnessed` lines, see
//! `docs/audit-log-format.md`). Talking to witnesses is the daemon's business: this library
//! has no network code.

use std::collections::BTreeMap;

use crate::access::{Caller, Rpc};
use crate::audit::SignedCheckpoint;
use crate::audit::file::{self, Witnessed};
use crate::audit::witness::{Cosigned, Cosigner, StoredCosignature, cosignatures_in_reply};
use crate::error::{Error, IntegrityObject, InvalidInput, Result};
use crate::journal::Export;
use crate::storage::{Batch, Table};

use super::Vault;

/// Checkpoints looked at, newest first, for one with enough cosignatures: witnesses lag by
/// a few checkpoints at most, and an export must not scan a year of them.
const COSIGNED_SEARCH: usize = 1000;

/// A checkpoint's note with the cosignatures kept for it, under one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedNote {
    /// The origin the note names.
    pub origin: String,
    /// The signed note, cosignature lines included.
    pub note: String,
    /// Witnesses whose cosignature is in it.
    pub witnesses: usize,
}

impl Vault {
    /// Keeps `cosigned`, the cosignatures by `witness` of checkpoint `signed` under
    /// `origin` (the daemon's witness client, after a witness answered). They are checked
    /// again whenever they are read, so a row altered in the store is never handed out.
    pub async fn add_cosignatures(
        &self,
        origin: &str,
        signed: &SignedCheckpoint,
        witness: &Cosigner,
        cosigned: &[Cosigned],
    ) -> Result<()> {
        let mut b = Batch::new();
        for c in cosigned {
            let row = StoredCosignature {
                origin: origin.to_owned(),
                witness: witness.vkey(),
                line: c.line.clone(),
            };
            let value = serde_json::to_vec(&row).map_err(|e| Error::Codec(e.to_string()))?;
            b.put(Table::AuditCosignatures, &row.key(signed.size), value);
        }
        self.store.commit(b).await?;
        Ok(())
    }

    /// The notes of `signed` with the cosignatures kept for it that verify, one per origin
    /// (an origin changed in the configuration leaves older cosignatures under the old one).
    pub async fn witnessed_notes(&self, signed: &SignedCheckpoint) -> Result<Vec<WitnessedNote>> {
        let log = self.access_log();
        let public_key = log.public_key();
        let mut by_origin: BTreeMap<String, Vec<StoredCosignature>> = BTreeMap::new();
        for (_, raw) in self
            .store
            .scan_prefix(Table::AuditCosignatures, &signed.size.to_be_bytes())
            .await?
        {
            let row: StoredCosignature = serde_json::from_slice(&raw)
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("audit cosignature")))?;
            by_origin.entry(row.origin.clone()).or_default().push(row);
        }
        let mut out = Vec::new();
        for (origin, rows) in by_origin {
            let mut note = log.checkpoint_note(&origin, signed)?;
            let mut witnesses = 0;
            for row in rows {
                let verified = Cosigner::from_vkey(&row.witness).ok().and_then(|c| {
                    cosignatures_in_reply(&c, &note, &public_key, row.line.as_bytes()).ok()
                });
                match verified {
                    Some(lines) if !lines.is_empty() => {
                        witnesses += 1;
                        for c in lines {
                            note.push_str(&c.line);
                        }
                    }
                    _ => tracing::warn!(
                        target: "vault::audit",
                        size = signed.size,
                        "a stored cosignature does not verify and was left out"
                    ),
                }
            }
            if witnesses > 0 {
                out.push(WitnessedNote {
                    origin,
                    note,
                    witnesses,
                });
            }
        }
        Ok(out)
    }

    /// The newest checkpoint with size at most `limit` whose note carries cosignatures from
    /// at least `min` witnesses under one origin.
    async fn newest_cosigned(&self, min: usize, limit: u64) -> Result<Option<SignedCheckpoint>> {
        let Some((key, _)) = self.store.last(Table::AuditCosignatures).await? else {
            return Ok(None);
        };
        let newest = key
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or(Error::Integrity(IntegrityObject::Metadata(
                "audit cosignature key",
            )))?;
        let limit = limit.min(newest);
        let checkpoints = self.access_log().checkpoints(0).await?;
        for signed in checkpoints
            .iter()
            .rev()
            .filter(|c| c.size <= limit)
            .take(COSIGNED_SEARCH)
        {
            let notes = self.witnessed_notes(signed).await?;
            if notes.iter().any(|n| n.witnesses >= min) {
                return Ok(Some(signed.clone()));
            }
        }
        Ok(None)
    }

    /// The offline-verifiable file, as [`Vault::audit_export`], with the witnesses'
    /// cosignatures of its signed end (`witnessed` lines) when there are any. With
    /// `min_cosignatures` above 0 the file ends at the newest checkpoint (within `to_seq`)
    /// that at least that many witnesses cosigned, so that every entry in it is vouched for
    /// by them; `NOT_FOUND` when there is none yet.
    ///
    /// The file comes as an [`Export`], produced a page at a time as it is sent: the call is
    /// decided and logged before the first page, the signed end and the witnessed lines
    /// are fixed then too.
    pub async fn audit_export_witnessed(
        &self,
        caller: &Caller,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
        min_cosignatures: u32,
    ) -> Result<Export> {
        self.audit_call(caller, Rpc::AuditExportLog, async {
            let min = usize::try_from(min_cosignatures).unwrap_or(usize::MAX);
            let mut to = to_seq;
            let mut wanted_end = None;
            if min > 0 {
                let limit = to_seq.map_or(u64::MAX, |t| t.saturating_add(1));
                let Some(cp) = self.newest_cosigned(min, limit).await? else {
                    return Err(Error::NotFound(format!(
                        "no checkpoint of the access log has cosignatures from \
                         {min_cosignatures} witnesses yet (are witnesses configured, and do \
                         they know this log's key? vaultctl audit public-key --vkey)"
                    )));
                };
                to = Some(cp.size.saturating_sub(1));
                wanted_end = Some(cp.size);
            }
            let mut export = self.access_log().export_stream(from_seq, to).await?;
            let end = export.signed_end().clone();
            if wanted_end.is_some_and(|w| w != end.size) {
                return Err(InvalidInput::new(
                    "from_seq",
                    "starts after the newest cosigned checkpoint: ask for entries from before it",
                )
                .into());
            }
            for n in self.witnessed_notes(&end).await? {
                export.push_trailer(&file::witnessed_line(&Witnessed {
                    size: end.size,
                    note: n.note,
                }));
            }
            Ok(export)
        })
        .await
    }
}
