//! The retention sweep (GDPR art. 5(1)(e)): data is kept no longer than a purpose needs it.
//!
//! A supporter is kept while at least one purpose still holds for them and its retention,
//! counted from the last positive contact, has not run out. A consent-based purpose holds
//! while the consent is active; any other purpose holds for the people whose data was
//! collected or written under it. The last positive contact is the latest of: creation,
//! an upsert or a consent grant. Everyone else is erased (crypto-shredding, with a receipt
//! whose request reference is `retention-sweep`). A restricted person (art. 18) is kept and
//! reported instead: restriction exists to keep the data while a request is examined. A dry
//! run lists them and changes nothing.

use crate::access::{Caller, Role, Rpc};
use crate::consent::ledger::ConsentKind;
use crate::error::Result;
use crate::purpose::{DPO_PURPOSE, Registry};
use crate::storage::{Batch, Table};

use super::rights::ErasureReceipt;
use super::{Loaded, Vault, now_us};
use crate::txn;

/// Request reference of the sweep's erasures.
pub const SWEEP_REF: &str = "retention-sweep";
const CHUNK: usize = 512;
const DAY_US: i64 = 86_400 * 1_000_000;

/// What a sweep did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Whether nothing was erased.
    pub dry_run: bool,
    /// Supporters examined.
    pub examined: u64,
    /// Supporters erased (or that would be).
    pub subjects: Vec<String>,
    /// Supporters past their retention but kept because their processing is restricted
    /// (art. 18: restriction exists to keep the data while a request is examined). The DPO
    /// decides on them when the restriction is lifted.
    pub kept_restricted: Vec<String>,
}

/// Whether any purpose may still keep `loaded` at `now_us`.
fn kept(registry: &Registry, loaded: &Loaded, now: i64) -> bool {
    let consent = loaded.consent_state();
    let last_grant = loaded
        .consent
        .iter()
        .filter(|e| e.kind == ConsentKind::Grant)
        .map(|e| e.at_us)
        .max()
        .unwrap_or(0);
    let last_contact = loaded
        .state
        .last_contact_us
        .max(loaded.supporter.created_at_us)
        .max(last_grant);
    registry.iter().filter(|p| p.id != DPO_PURPOSE).any(|p| {
        let holds = if p.needs_consent() {
            consent.is_active(&p.id, None)
        } else {
            loaded.state.collected_for.contains(&p.id)
        };
        holds && last_contact.saturating_add(i64::from(p.retention_days) * DAY_US) > now
    })
}

impl Vault {
    /// Runs the sweep for `caller` (roles admin and dpo).
    pub async fn retention_sweep(&self, caller: &Caller, dry_run: bool) -> Result<SweepReport> {
        let mut log = self.record(caller, Rpc::AdminRetentionSweep);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminRetentionSweep,
                &registry,
                None,
                None,
            )?;
            self.sweep(caller, &registry, dry_run, now_us).await
        }
        .await;
        if let Ok(report) = &result {
            report.subjects.iter().for_each(|s| log.subject(s));
        }
        log.finish(&self.audit, result).await
    }

    /// The daemon's scheduled sweep.
    pub async fn retention_sweep_scheduled(&self) -> Result<SweepReport> {
        let system = Caller {
            client_id: "system-retention".to_owned(),
            role: Role::Admin,
            allowed_purposes: std::collections::BTreeSet::new(),
            purpose: None,
            request_id: uuid::Uuid::new_v4().simple().to_string(),
        };
        self.retention_sweep(&system, false).await
    }

    /// The sweep, judging retention at `now()` (a test clock in the tests).
    async fn sweep(
        &self,
        caller: &Caller,
        registry: &Registry,
        dry_run: bool,
        now: impl Fn() -> i64,
    ) -> Result<SweepReport> {
        let mut report = SweepReport {
            dry_run,
            ..SweepReport::default()
        };
        let mut start = Vec::new();
        loop {
            let rows = self
                .store
                .scan_range(Table::SubjectKeys, &start, None, CHUNK)
                .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            start.clone_from(last);
            start.push(0);
            for (k, _) in rows {
                let Ok(id) = String::from_utf8(k) else {
                    continue;
                };
                let Some(loaded) = self.load(&id).await? else {
                    continue;
                };
                report.examined += 1;
                if kept(registry, &loaded, now()) {
                    continue;
                }
                if loaded.state.restricted {
                    report.kept_restricted.push(id);
                    continue;
                }
                if !dry_run && !self.sweep_one(caller, loaded).await? {
                    continue;
                }
                report.subjects.push(id);
            }
        }
        Ok(report)
    }

    /// Erases one expired supporter with its own log entry; false if it changed meanwhile
    /// (it is then judged again by the next sweep).
    async fn sweep_one(&self, caller: &Caller, loaded: Loaded) -> Result<bool> {
        let id = loaded.supporter.id.clone();
        let mut log = self.record(caller, Rpc::AdminRetentionSweep);
        log.subject(&id);
        log.request_ref(SWEEP_REF);
        let receipt = ErasureReceipt {
            receipt_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            subject_id: id,
            erased_at_us: now_us(),
            request_ref: SWEEP_REF.to_owned(),
            client_id: caller.client_id.clone(),
            suppressed: loaded.state.suppressed,
        };
        let result = self
            .erase_loaded(&mut log, &loaded, &receipt, Batch::new())
            .await;
        if txn::is_conflict(&result) {
            return Ok(false);
        }
        result.map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ledger::{ConsentEvent, ConsentSource};
    use crate::crypto::Key256;
    use crate::purpose::{Channel, default_registry};
    use crate::subject_state::SubjectState;
    use crate::supporter::Supporter;

    fn loaded(created: i64, collected: &[&str], grants: &[(&str, i64)]) -> Loaded {
        let supporter = Supporter {
            id: "s".into(),
            created_at_us: created,
            ..Supporter::default()
        };
        Loaded {
            supporter,
            dek: Key256::from_bytes(&[0; 32]),
            wrapped: Vec::new(),
            sealed: Vec::new(),
            consent: grants
                .iter()
                .enumerate()
                .map(|(i, (p, at))| ConsentEvent {
                    subject_id: "s".into(),
                    seq: i as u64,
                    purpose: (*p).into(),
                    channel: Channel::Email,
                    kind: ConsentKind::Grant,
                    at_us: *at,
                    source: ConsentSource::Form,
                    notice_version: "v1".into(),
                    client_id: "c".into(),
                })
                .collect(),
            state: SubjectState {
                collected_for: collected.iter().map(|p| (*p).to_owned()).collect(),
                ..SubjectState::default()
            },
            state_sealed: None,
        }
    }

    fn caller(role: Role, purpose: &str) -> Caller {
        Caller {
            client_id: format!("{role}-client"),
            role,
            allowed_purposes: [purpose.to_owned()].into_iter().collect(),
            purpose: Some(purpose.to_owned()),
            request_id: "test".into(),
        }
    }

    /// Four years on (a test clock), a restricted member is kept and reported;
    /// an unrestricted one is erased.
    #[tokio::test]
    async fn the_sweep_keeps_restricted_people_and_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, _) = Vault::open(&crate::vault::VaultOptions::new(dir.path()))
            .await
            .unwrap();
        vault.install_purposes(None).await.unwrap();
        let member = caller(Role::CampaignTool, "membership");
        let mut ids = Vec::new();
        for email in ["kept@example.org", "gone@example.org"] {
            let s = Supporter {
                email: email.into(),
                ..Supporter::default()
            };
            ids.push(vault.upsert(&member, &s, &[]).await.unwrap().id);
        }
        let dpo = caller(Role::Dpo, DPO_PURPOSE);
        vault.restrict(&dpo, &ids[0], "REQ-1", true).await.unwrap();
        let admin = Caller {
            allowed_purposes: Default::default(),
            purpose: None,
            ..caller(Role::Admin, "-")
        };
        let registry = vault.registry().await.unwrap();
        let later = now_us() + 4 * 365 * DAY_US;
        let report = vault
            .sweep(&admin, &registry, false, || later)
            .await
            .unwrap();
        assert_eq!(report.subjects, vec![ids[1].clone()]);
        assert_eq!(report.kept_restricted, vec![ids[0].clone()]);
        assert!(vault.load(&ids[0]).await.unwrap().is_some());
        assert!(vault.load(&ids[1]).await.unwrap().is_none());
        // Today nobody is past retention.
        let report = vault.sweep(&admin, &registry, true, now_us).await.unwrap();
        assert!(report.subjects.is_empty() && report.kept_restricted.is_empty());
    }

    #[test]
    fn retention_counts_from_the_last_positive_contact() {
        let reg = Registry::new(default_registry());
        let year = 365 * DAY_US;
        // Collected for the newsletter, consent given at creation: kept three years.
        let l = loaded(0, &["newsletter"], &[("newsletter", 0)]);
        assert!(kept(&reg, &l, 2 * year));
        assert!(!kept(&reg, &l, 3 * year + DAY_US));
        // A later grant renews it.
        let l = loaded(
            0,
            &["newsletter"],
            &[("newsletter", 0), ("newsletter", 2 * year)],
        );
        assert!(kept(&reg, &l, 4 * year));
        // No consent and no other basis: nothing keeps the person.
        let l = loaded(0, &["newsletter"], &[]);
        assert!(!kept(&reg, &l, DAY_US));
        // Donations accounting (legal obligation) keeps donors ten years.
        let l = loaded(0, &["donations-accounting"], &[]);
        assert!(kept(&reg, &l, 9 * year));
        assert!(!kept(&reg, &l, 11 * year));
    }
}
