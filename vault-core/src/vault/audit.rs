//! Audit operations: query, checkpoints, verification, export, public key and proofs.
//! For the auditor and DPO roles; the log holds ids and field names, no personal data.
//!
//! A query about one subject reads that subject's entries only, through the log's
//! per-subject index (`journal::subjects`), so its cost follows the person's history,
//! not the log's size; other queries read the log a page at a time and keep only what
//! matches. Verification cross-checks the index against the entries.

use crate::access::{Caller, Rpc};
use crate::audit::file::{Verified, VerifyError};
use crate::audit::merkle::Hash;
use crate::audit::{AuditEntry, SignedCheckpoint};
use crate::error::Result;

use super::Vault;

/// Entries read at a time by a query without a subject.
const QUERY_PAGE: u64 = 4096;

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
            if let Some(subject) = &query.subject_id {
                let mut found = self.audit.subject_entries(subject, 0, size).await?;
                found.retain(|(_, e)| query.matches(e));
                return Ok(found);
            }
            let mut found = Vec::new();
            let mut next = 0;
            while next < size {
                let upto = next.saturating_add(QUERY_PAGE).min(size);
                found.extend(
                    self.audit
                        .entries(next, upto)
                        .await?
                        .into_iter()
                        .filter(|(_, e)| query.matches(e)),
                );
                next = upto;
            }
            Ok(found)
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

    /// Verifies the stored log (see [`crate::journal::AuditLog::verify`]), then cross-checks
    /// the per-subject index over the verified entries: an index row deleted (an entry a
    /// query by subject would miss) or pointing elsewhere fails the call with an integrity
    /// error.
    pub async fn audit_verify(
        &self,
        caller: &Caller,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Result<std::result::Result<Verified, VerifyError>> {
        self.audit_call(caller, Rpc::AuditVerify, async {
            let verified = self.audit.verify(from_seq, to_seq).await?;
            if let Ok(v) = &verified {
                self.audit
                    .check_subject_index(v.first_seq, v.end.size)
                    .await?
                    .into_result()?;
            }
            Ok(verified)
        })
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
    pub fn access_log(&self) -> &crate::journal::AuditLog {
        &self.audit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use crate::purpose::DPO_PURPOSE;
    use crate::storage::{Batch, Table};
    use crate::supporter::{FieldSet, Supporter};
    use crate::vault::{ExportKey, VaultOptions};

    fn caller(role: Role, purpose: Option<&str>) -> Caller {
        Caller {
            client_id: format!("{role}-client"),
            role,
            allowed_purposes: purpose.map(str::to_owned).into_iter().collect(),
            purpose: purpose.map(str::to_owned),
            request_id: "test".into(),
        }
    }

    /// The seqs of the entries an export lists under `access_log`.
    fn exported_seqs(doc: &[u8]) -> Vec<u64> {
        let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
        v["access_log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }

    /// Query by subject and Export go through the index, and a store written before the
    /// index (no rows, no marker) is indexed when it is opened again.
    #[tokio::test]
    async fn queries_by_subject_and_exports_survive_a_store_without_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let member = caller(Role::CampaignTool, Some("membership"));
        let auditor = caller(Role::Auditor, None);
        let dpo = caller(Role::Dpo, Some(DPO_PURPOSE));
        let (want_query, want_export, id) = {
            let (vault, _) = Vault::open(&VaultOptions::new(dir.path())).await.unwrap();
            vault.install_purposes(None).await.unwrap();
            let mut ids = Vec::new();
            for n in 0..3 {
                let s = Supporter {
                    email: format!("p{n}@example.org"),
                    ..Supporter::default()
                };
                ids.push(vault.upsert(&member, &s, &[]).await.unwrap().id);
            }
            for _ in 0..3 {
                for id in &ids {
                    vault.get(&member, id, FieldSet::all()).await.unwrap();
                }
            }
            let id = ids[1].clone();
            let query = AuditQuery {
                subject_id: Some(id.clone()),
                ..AuditQuery::default()
            };
            let by_index = vault.audit_query(&auditor, &query).await.unwrap();
            // The same answer as filtering the whole log.
            let size = vault.audit.size().await;
            let scanned: Vec<u64> = vault
                .audit
                .entries(0, size)
                .await
                .unwrap()
                .into_iter()
                .filter(|(_, e)| query.matches(e))
                .map(|(_, e)| e.seq)
                .collect();
            let by_index: Vec<u64> = by_index.iter().map(|(_, e)| e.seq).collect();
            assert_eq!(by_index, scanned);
            assert_eq!(by_index.len(), 4, "an upsert and three reads");
            // Other filters apply on the subject's entries.
            let reads = AuditQuery {
                action: Some("Supporters.Get".into()),
                ..query.clone()
            };
            assert_eq!(vault.audit_query(&auditor, &reads).await.unwrap().len(), 3);
            let (_, doc) = vault
                .export(&dpo, &ExportKey::Id(id.clone()))
                .await
                .unwrap();
            let exported = exported_seqs(&doc);
            assert_eq!(&exported[..4], &by_index[..]);
            assert!(
                vault
                    .audit_verify(&auditor, None, None)
                    .await
                    .unwrap()
                    .is_ok()
            );
            // Everything about the person by now (the export's own entry included).
            let size = vault.audit.size().await;
            let about: Vec<u64> = vault
                .audit
                .entries(0, size)
                .await
                .unwrap()
                .into_iter()
                .filter(|(_, e)| query.matches(e))
                .map(|(_, e)| e.seq)
                .collect();
            assert_eq!(about.len(), 5);
            // Back to a store from before the index.
            let mut b = Batch::new();
            for (k, _) in vault
                .store
                .scan_prefix(Table::AuditSubjects, b"")
                .await
                .unwrap()
            {
                b.delete(Table::AuditSubjects, &k);
            }
            b.delete(
                Table::Meta,
                crate::storage::schema::meta::AUDIT_SUBJECTS_INDEXED,
            );
            vault.store.commit(b).await.unwrap();
            vault.audit.close().await.unwrap();
            (about, exported, id)
        };
        let (vault, _) = Vault::open(&VaultOptions::new(dir.path())).await.unwrap();
        let query = AuditQuery {
            subject_id: Some(id.clone()),
            ..AuditQuery::default()
        };
        let found: Vec<u64> = vault
            .audit_query(&auditor, &query)
            .await
            .unwrap()
            .iter()
            .map(|(_, e)| e.seq)
            .collect();
        assert_eq!(found, want_query);
        let (_, doc) = vault.export(&dpo, &ExportKey::Id(id)).await.unwrap();
        let exported = exported_seqs(&doc);
        assert_eq!(&exported[..want_export.len()], &want_export[..]);
        assert!(
            vault
                .audit_verify(&auditor, None, None)
                .await
                .unwrap()
                .is_ok()
        );
    }

    /// A row deleted behind the vault's back fails Audit.Verify.
    #[tokio::test]
    async fn verify_reports_a_deleted_index_row() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, _) = Vault::open(&VaultOptions::new(dir.path())).await.unwrap();
        vault.install_purposes(None).await.unwrap();
        let member = caller(Role::CampaignTool, Some("membership"));
        let s = Supporter {
            email: "p@example.org".into(),
            ..Supporter::default()
        };
        vault.upsert(&member, &s, &[]).await.unwrap();
        let auditor = caller(Role::Auditor, None);
        assert!(
            vault
                .audit_verify(&auditor, None, None)
                .await
                .unwrap()
                .is_ok()
        );
        let (k, _) = vault
            .raw
            .scan_range(Table::AuditSubjects, b"", None, 1)
            .await
            .unwrap()
            .remove(0);
        let mut b = Batch::new();
        b.delete(Table::AuditSubjects, &k);
        vault.raw.commit(b).await.unwrap();
        let e = vault.audit_verify(&auditor, None, None).await.unwrap_err();
        assert!(
            matches!(e, crate::Error::Integrity(_)) && e.to_string().contains("missing"),
            "{e}"
        );
    }
}
