//! Audit operations: query, checkpoints, verification, export, public key and proofs.
//! For the auditor and DPO roles; the log holds ids and field names, no personal data.

use crate::access::{Caller, Rpc};
use crate::audit::file::{Verified, VerifyError};
use crate::audit::merkle::Hash;
use crate::audit::{AuditEntry, SignedCheckpoint};
use crate::error::Result;

use super::Vault;

/// Filters of an audit query; every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries about this subject.
    pub subject_id: Option<String>,
    /// Entries by this client.
    pub actor: Option<String>,
    /// Entries of this call (`Service.Method`).
    pub action: Option<String>,
    /// Entries at or after this time (microseconds since the Unix epoch).
    pub since_us: Option<i64>,
    /// Entries before this time.
    pub until_us: Option<i64>,
}

impl AuditQuery {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.subject_id
            .as_ref()
            .is_none_or(|s| e.subjects.iter().any(|x| x == s))
            && self.actor.as_ref().is_none_or(|a| &e.client == a)
            && self.action.as_ref().is_none_or(|a| &e.rpc == a)
            && self.since_us.is_none_or(|t| e.at_us >= t)
            && self.until_us.is_none_or(|t| e.at_us < t)
    }
}

impl Vault {
    pub(super) async fn audit_call<T>(
        &self,
        caller: &Caller,
        rpc: Rpc,
        run: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut log = self.record(caller, rpc);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, rpc, &registry, None, None)?;
            run.await
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Entries matching `query`, oldest first, with their stored bytes.
    pub async fn audit_query(
        &self,
        caller: &Caller,
        query: &AuditQuery,
    ) -> Result<Vec<(Vec<u8>, AuditEntry)>> {
        self.audit_call(caller, Rpc::AuditQuery, async {
            let size = self.audit.size().await;
            Ok(self
                .audit
                .entries(0, size)
                .await?
                .into_iter()
                .filter(|(_, e)| query.matches(e))
                .collect())
        })
        .await
    }

    /// Signed checkpoints with size at least `since_size`, the head's included: the head
    /// gets a checkpoint first (one signature), so an auditor can pin what was logged up to
    /// this call.
    pub async fn audit_checkpoints(
        &self,
        caller: &Caller,
        since_size: u64,
    ) -> Result<Vec<SignedCheckpoint>> {
        self.audit_call(caller, Rpc::AuditCheckpoints, async {
            self.audit.checkpoint().await?;
            self.audit.checkpoints(since_size).await
        })
        .await
    }

    /// Verifies the stored log (see [`crate::audit::AuditLog::verify`]).
    pub async fn audit_verify(
        &self,
        caller: &Caller,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Result<std::result::Result<Verified, VerifyError>> {
        self.audit_call(
            caller,
            Rpc::AuditVerify,
            self.audit.verify(from_seq, to_seq),
        )
        .await
    }

    /// The offline-verifiable file.
    pub async fn audit_export(
        &self,
        caller: &Caller,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Result<Vec<u8>> {
        self.audit_call(
            caller,
            Rpc::AuditExportLog,
            self.audit.export(from_seq, to_seq),
        )
        .await
    }

    /// The Ed25519 public key of the log.
    pub async fn audit_public_key(&self, caller: &Caller) -> Result<[u8; 32]> {
        self.audit_call(caller, Rpc::AuditPublicKey, async {
            Ok(self.audit.public_key())
        })
        .await
    }

    /// An inclusion proof.
    pub async fn audit_inclusion_proof(
        &self,
        caller: &Caller,
        seq: u64,
        size: u64,
    ) -> Result<Vec<Hash>> {
        self.audit_call(
            caller,
            Rpc::AuditInclusionProof,
            self.audit.inclusion_proof(seq, size),
        )
        .await
    }

    /// A consistency proof.
    pub async fn audit_consistency_proof(
        &self,
        caller: &Caller,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>> {
        self.audit_call(
            caller,
            Rpc::AuditConsistencyProof,
            self.audit.consistency_proof(from, to),
        )
        .await
    }

    /// The access log itself, for the daemon's checkpoint timer, retention and shutdown.
    pub fn access_log(&self) -> &crate::audit::AuditLog {
        &self.audit
    }
}
