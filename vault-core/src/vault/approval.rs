//! Proposals and approvals: the two-admin path for changes that widen access to personal
//! data (see [`crate::proposal`] for what widens and why).
//!
//! `propose_*` validates the change as the one-admin call would, and stores it as a pending
//! [`Proposal`] (an authenticated row of [`Table::Proposals`]) in the batch of its access-log
//! entry. `approve_proposal` is refused to the proposer, to anyone after expiry, and when
//! the state the change was judged against moved; otherwise it applies the change and marks
//! the proposal approved in one batch, with its own entry. Both entries carry the reference
//! `proposal:<id>`, so an auditor finds the pair.

use zeroize::Zeroizing;

use crate::access::{Caller, Denied, Role, Rpc};
use crate::error::{Error, IntegrityObject, InvalidInput, Result};
use crate::proposal::{
    Change, PROPOSAL_LIFETIME_US, Proposal, ProposalState, ProposalStatus, ProposedClient,
    needs_second_admin,
};
use crate::purpose::Purpose;
use crate::storage::{Batch, Table};

use super::admin::{StoredClient, client_purposes, purpose_json};
use super::{Vault, now_us};
use crate::txn;

/// The access-log reference of proposal `id`.
fn reference(id: &str) -> String {
    format!("proposal:{id}")
}

fn proposal_json(p: &Proposal) -> Result<Vec<u8>> {
    serde_json::to_vec(p).map_err(|e| Error::Codec(e.to_string()))
}

fn parse_proposal(raw: &[u8]) -> Result<Proposal> {
    serde_json::from_slice(raw).map_err(|_| Error::Integrity(IntegrityObject::Metadata("proposal")))
}

impl Vault {
    /// Proposes a client for a second admin to approve. Validated as
    /// [`Vault::create_client`] validates it; the client's id is fixed now and its token
    /// returned now, to the proposer, shown this once: it works once the client exists.
    pub async fn propose_client(
        &self,
        caller: &Caller,
        name: &str,
        role: Role,
        purposes: &[String],
        cert_sha256: Option<&str>,
        expires_at_us: Option<i64>,
    ) -> Result<(Proposal, Zeroizing<String>)> {
        let mut log = self.record(caller, Rpc::AdminProposeChange);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminProposeChange,
                &registry,
                None,
                None,
            )?;
            let new = self
                .new_client(&registry, name, role, purposes, cert_sha256, expires_at_us)
                .await?;
            let admins = self.active_admins().await?.len();
            let change = Change::CreateClient(ProposedClient {
                client: new.stored.client,
                token_sha256: new.stored.token_sha256,
            });
            let widens = needs_second_admin(&change, admins);
            let proposal = self
                .store_proposal(&mut log, caller, change, widens)
                .await?;
            Ok((proposal, new.token))
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Proposes a purpose (new or changed) for a second admin to approve. Validated as
    /// [`Vault::put_purpose`] validates it, and judged against the purpose as it is now.
    pub async fn propose_purpose(&self, caller: &Caller, purpose: &Purpose) -> Result<Proposal> {
        let mut log = self.record(caller, Rpc::AdminProposeChange);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminProposeChange,
                &registry,
                None,
                None,
            )?;
            self.check_purpose(purpose)?;
            let (previous, _) = self.stored_purpose(&purpose.id).await?;
            let change = Change::PutPurpose {
                purpose: purpose.clone(),
                previous,
            };
            let widens = needs_second_admin(&change, 0);
            self.store_proposal(&mut log, caller, change, widens).await
        }
        .await;
        log.finish(&self.audit, result).await
    }

    async fn store_proposal(
        &self,
        log: &mut crate::journal::AccessRecord,
        caller: &Caller,
        change: Change,
        widens: Vec<String>,
    ) -> Result<Proposal> {
        let now = now_us();
        let proposal = Proposal {
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            change_sha256: change.sha256()?,
            change,
            widens,
            proposed_by: caller.client_id.clone(),
            proposed_at_us: now,
            expires_at_us: now.saturating_add(PROPOSAL_LIFETIME_US),
            state: ProposalState::Pending,
        };
        log.request_ref(&reference(&proposal.id));
        let mut b = Batch::new();
        b.check(Table::Proposals, proposal.id.as_bytes(), None).put(
            Table::Proposals,
            proposal.id.as_bytes(),
            proposal_json(&proposal)?,
        );
        log.commit_write(&self.audit, b).await?;
        Ok(proposal)
    }

    /// The proposals, newest first, with their status now: the open ones (pending, not
    /// expired), or with `all` every one kept.
    pub async fn list_proposals(
        &self,
        caller: &Caller,
        all: bool,
    ) -> Result<Vec<(Proposal, ProposalStatus)>> {
        let mut log = self.record(caller, Rpc::AdminListProposals);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminListProposals,
                &registry,
                None,
                None,
            )?;
            let now = now_us();
            let mut out = Vec::new();
            for (_, raw) in self.store.scan_prefix(Table::Proposals, b"").await? {
                let p = parse_proposal(&raw)?;
                let status = p.status(now);
                if all || status == ProposalStatus::Pending {
                    out.push((p, status));
                }
            }
            out.sort_by(|a, b| {
                b.0.proposed_at_us
                    .cmp(&a.0.proposed_at_us)
                    .then(a.0.id.cmp(&b.0.id))
            });
            Ok(out)
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Approves proposal `id` and applies its change, atomically with the proposal's new
    /// state. Refused to the admin who proposed it, after it expired, once approved, when
    /// `expected_sha256` (the hash the approver reviewed, if given) is not the change's,
    /// and when what the change was judged against has moved since.
    pub async fn approve_proposal(
        &self,
        caller: &Caller,
        id: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Proposal> {
        self.approve_proposal_at(caller, id, expected_sha256, now_us())
            .await
    }

    /// [`Vault::approve_proposal`] at the time `now` (microseconds since the Unix epoch):
    /// the clock the expiry is judged by, injectable for tests.
    pub(crate) async fn approve_proposal_at(
        &self,
        caller: &Caller,
        id: &str,
        expected_sha256: Option<&str>,
        now: i64,
    ) -> Result<Proposal> {
        let mut log = self.record(caller, Rpc::AdminApproveProposal);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminApproveProposal,
                &registry,
                None,
                None,
            )?;
            let id = uuid::Uuid::try_parse(id.trim())
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| InvalidInput::new("id", "must be a proposal id (a UUID)"))?;
            log.request_ref(&reference(&id));
            txn::retry!("proposal approval", {
                let raw = self
                    .store
                    .get(Table::Proposals, id.as_bytes())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no proposal with id {id}")))?;
                let mut proposal = parse_proposal(&raw)?;
                if let ProposalState::Approved { by, .. } = &proposal.state {
                    return Err(Error::FailedPrecondition(format!(
                        "proposal {id} was approved already (by {by})"
                    )));
                }
                if now >= proposal.expires_at_us {
                    return Err(Error::FailedPrecondition(format!(
                        "proposal {id} expired (proposals may be approved for 24 hours); \
                         propose the change again"
                    )));
                }
                if proposal.proposed_by == caller.client_id {
                    return Err(log.denied(Denied {
                        code: crate::denial::DenialReason::OwnProposal,
                        error: Error::PermissionDenied(format!(
                            "client {} proposed {id} and may not approve it: another admin must",
                            caller.client_id
                        )),
                    }));
                }
                if proposal.change.sha256()? != proposal.change_sha256 {
                    return Err(Error::Integrity(IntegrityObject::Metadata("proposal hash")));
                }
                if let Some(expected) = expected_sha256.map(str::trim).filter(|e| !e.is_empty())
                    && !expected.eq_ignore_ascii_case(&proposal.change_sha256)
                {
                    return Err(Error::FailedPrecondition(format!(
                        "proposal {id}'s change has SHA-256 {}, not the {expected} you \
                         reviewed; list the proposals again",
                        proposal.change_sha256
                    )));
                }
                // The proposer's say counts only while it is an admin.
                let proposer_active = self
                    .active_admins()
                    .await?
                    .iter()
                    .any(|(c, _)| c.id == proposal.proposed_by);
                if !proposer_active {
                    return Err(Error::FailedPrecondition(format!(
                        "proposal {id} was made by {}, no longer an active admin; propose the \
                         change again",
                        proposal.proposed_by
                    )));
                }
                let mut b = Batch::new();
                self.apply_change(&mut b, &registry, &proposal.change, &id, now)
                    .await?;
                proposal.state = ProposalState::Approved {
                    by: caller.client_id.clone(),
                    at_us: now,
                };
                b.check(Table::Proposals, id.as_bytes(), Some(&raw)).put(
                    Table::Proposals,
                    id.as_bytes(),
                    proposal_json(&proposal)?,
                );
                let attempt = log.commit_write(&self.audit, b).await;
                attempt.map(|()| proposal)
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Adds the writes of `change` to `b`, with checks pinning what it was judged against.
    async fn apply_change(
        &self,
        b: &mut Batch,
        registry: &crate::purpose::Registry,
        change: &Change,
        id: &str,
        now: i64,
    ) -> Result<()> {
        let moved = |what: String| {
            Error::FailedPrecondition(format!(
                "proposal {id}: {what} since it was proposed; propose the change again"
            ))
        };
        match change {
            Change::CreateClient(p) => {
                let c = &p.client;
                let purposes: Vec<String> = c.purposes.iter().cloned().collect();
                let still = client_purposes(registry, c.role, &purposes).ok();
                if still.as_ref() != Some(&c.purposes) {
                    return Err(moved("a purpose of the client was removed".into()));
                }
                if c.expires_at_us.is_some_and(|at| at <= now) {
                    return Err(moved("the client's expiry passed".into()));
                }
                if let Some(fp) = &c.cert_sha256 {
                    self.check_cert_free(fp).await?;
                }
                let stored = StoredClient {
                    client: c.clone(),
                    token_sha256: p.token_sha256.clone(),
                };
                self.put_client(b, &stored, None)
            }
            Change::PutPurpose { purpose, previous } => {
                // The floor may have been raised since.
                self.check_purpose(purpose)?;
                let (current, raw) = self.stored_purpose(&purpose.id).await?;
                if &current != previous {
                    return Err(moved(format!("purpose {} changed", purpose.id)));
                }
                b.check(Table::Purposes, purpose.id.as_bytes(), raw.as_deref())
                    .put(
                        Table::Purposes,
                        purpose.id.as_bytes(),
                        purpose_json(purpose)?,
                    );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::crypto::Key256;
    use crate::crypto::root_key::RootKey;
    use crate::journal::AuditOptions;
    use crate::storage::Store;
    use crate::storage::sled_store::{SledOptions, SledStore};

    async fn vault(dir: &std::path::Path) -> Vault {
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir, &SledOptions::default()).unwrap());
        let root = RootKey::from_key(Key256::from_bytes(&[7; 32]));
        let v = Vault::with_store(store, &root, AuditOptions::default())
            .await
            .unwrap();
        v.install_purposes(None).await.unwrap();
        v
    }

    fn admin(id: &str) -> Caller {
        Caller {
            client_id: id.into(),
            role: Role::Admin,
            allowed_purposes: BTreeSet::new(),
            purpose: None,
            request_id: "r".into(),
        }
    }

    #[tokio::test]
    async fn proposals_expire_and_need_another_admin() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path()).await;
        v.create_bootstrap_admin(|_| Ok(())).await.unwrap();
        let a = admin(crate::access::BOOTSTRAP_ADMIN_ID);
        let (second, _) = v
            .create_client(&a, "second", Role::Admin, &[], None, None)
            .await
            .unwrap();
        let b = admin(&second.id);
        let (p, _token) = v
            .propose_client(&a, "dpo", Role::Dpo, &[], None, None)
            .await
            .unwrap();
        assert_eq!(p.state, ProposalState::Pending);
        assert!(!p.widens.is_empty());
        // Not by the proposer.
        let err = v.approve_proposal(&a, &p.id, None).await.unwrap_err();
        assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
        // Not after 24 hours.
        let late = p.expires_at_us;
        let err = v
            .approve_proposal_at(&b, &p.id, None, late)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let listed = v.list_proposals(&b, true).await.unwrap();
        assert_eq!(listed.len(), 1);
        // Not with another hash than the change's.
        let err = v
            .approve_proposal(&b, &p.id, Some(&"0".repeat(64)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        // In time, by the other admin, with the reviewed hash: applied once.
        let done = v
            .approve_proposal_at(&b, &p.id, Some(&p.change_sha256), late - 1)
            .await
            .unwrap();
        assert!(matches!(done.state, ProposalState::Approved { ref by, .. } if by == &second.id));
        let err = v.approve_proposal(&b, &p.id, None).await.unwrap_err();
        assert!(err.to_string().contains("approved already"), "{err}");
        assert!(v.list_proposals(&b, false).await.unwrap().is_empty());
        let Change::CreateClient(c) = &p.change else {
            panic!("a client proposal")
        };
        let (stored, _) = v.stored_client(&c.client.id).await.unwrap().unwrap();
        assert_eq!(stored.client.role, Role::Dpo);
    }

    #[tokio::test]
    async fn an_approval_is_refused_once_the_purpose_moved() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path()).await;
        v.create_bootstrap_admin(|_| Ok(())).await.unwrap();
        let a = admin(crate::access::BOOTSTRAP_ADMIN_ID);
        let (second, _) = v
            .create_client(&a, "second", Role::Admin, &[], None, None)
            .await
            .unwrap();
        let b = admin(&second.id);
        let mut wider = crate::purpose::default_registry()[0].clone();
        wider.fields = wider.fields.with(crate::supporter::Field::Phone);
        let p = v.propose_purpose(&a, &wider).await.unwrap();
        // A one-admin narrowing lands first.
        let mut narrower = crate::purpose::default_registry()[0].clone();
        narrower.retention_days += 10;
        v.put_purpose(&a, &narrower).await.unwrap();
        let err = v.approve_proposal(&b, &p.id, None).await.unwrap_err();
        assert!(err.to_string().contains("changed since"), "{err}");
        // Proposed again against the purpose as it is now, it is approved.
        let p = v.propose_purpose(&a, &wider).await.unwrap();
        v.approve_proposal(&b, &p.id, None).await.unwrap();
        let (now, _) = v.stored_purpose(&wider.id).await.unwrap();
        assert_eq!(now.as_ref(), Some(&wider));
    }
}
