//! The change feed (Supporters.Watch) and bulk import (Supporters.Import), the two
//! streaming calls of campaign tools.
//!
//! # What a Watch stream shows
//!
//! A stream follows the feed through the purpose its call declared, and shows a change only
//! when `Supporters.Get` of the person under that purpose would be allowed
//! ([`crate::access::decide`]): the tool has a basis for the person (not restricted; a
//! consent-based purpose needs the person's active consent on some channel), and of consent
//! events it sees its own purpose's only. The change that ends a basis is judged by the
//! purposes the write recorded on it ([`crate::changes`]), so the tools that had the basis
//! learn of the withdrawal, objection, restriction or erasure, and nothing about the person
//! follows for them. Other changes are judged by the person's state now, loaded once per
//! batch (and remembered by the stream until a change that may alter the basis arrives).
//! The state is read after the batch, so it is never older than a change in it: a change
//! is never shown on a basis that had already ended when it was read.
//!
//! # The client must hold for the whole stream
//!
//! A stream authenticates once, when it opens, but may run for days. Before it delivers a
//! batch it asks again whether its client holds ([`Vault::client_in_force`]) and whether
//! it may still use its purpose; a caught-up stream asks every poll. The question is asked
//! after the batch was read, so a client revoked before it gets none of the batch, and one
//! revoked after it gets only changes written before the revocation.
//!
//! # Retention
//!
//! A change lives as long as the access-log entry of the write that made it: when the log
//! is pruned by its retention, the changes of the pruned entries go with them
//! ([`Vault::prune_access_log`]). A reader resuming from a cursor older than that resumes
//! at the oldest change kept.
//!
//! # Errors
//!
//! The stream's errors never name a person the caller may not see: a person whose rows
//! fail to load ends the stream with an error about the feed, not about the person (the
//! daemon's log says which).

use std::collections::{BTreeSet, HashMap};

use crate::access::{self, Caller, Rpc};
use crate::changes::{self, Change, ChangeEvent, Cursor, Visibility};
use crate::consent::ledger::ConsentChange;
use crate::error::{Error, IntegrityObject, Result};
use crate::purpose::{Purpose, Registry};
use crate::storage::{StoreError, Table};
use crate::supporter::{Supporter, UpsertOutcome};

use super::{Loaded, Vault};

/// People whose judgement a stream remembers, at most (then it forgets them all).
const REMEMBERED: usize = 10_000;

/// A running `Supporters.Watch`: who follows the feed, where it stands, and who of the
/// people it met it had a basis for.
#[derive(Debug, Clone)]
pub struct WatchSession {
    caller: Caller,
    cursor: Option<Cursor>,
    /// The purpose as the remembered judgements were made under it.
    purpose: Option<Purpose>,
    /// Subject id → whether the caller had a basis for them when last loaded.
    basis: HashMap<String, bool>,
}

impl WatchSession {
    /// A session for `caller` (as authenticated when the stream opened, and allowed by
    /// [`Vault::watch`]) from `cursor` (the oldest change when `None`).
    pub fn new(caller: Caller, cursor: Option<Cursor>) -> Self {
        Self {
            caller,
            cursor,
            purpose: None,
            basis: HashMap::new(),
        }
    }

    /// The position after the last change read (shown or not).
    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor
    }
}

/// One step of a Watch stream ([`Vault::watch_next`]).
#[derive(Debug, Clone, Default)]
pub struct WatchBatch {
    /// The changes the caller may see, oldest first.
    pub events: Vec<ChangeEvent>,
    /// Whether the feed had no more changes (the stream should wait before asking again).
    pub caught_up: bool,
}

/// What one pruning of the access log and its change feed removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPruneReport {
    /// Access-log entries removed.
    pub entries: u64,
    /// Change-feed rows removed (those of the removed entries).
    pub changes: u64,
    /// The sequence number the log now starts at.
    pub anchor_size: u64,
}

/// Change rows deleted per batch while pruning.
const PRUNE_CHUNK: usize = 4096;

impl Vault {
    /// Prunes the access log by its configured retention, and the change feed with it.
    pub async fn prune_access_log(&self) -> Result<LogPruneReport> {
        let report = self.audit.prune().await?;
        self.prune_feed_before(report.removed, report.anchor_size)
            .await
    }

    /// [`Vault::prune_access_log`] with an explicit cutoff (microseconds since the epoch):
    /// entries older than it go, in whole checkpointed segments.
    pub async fn prune_access_log_older_than(&self, cutoff_us: i64) -> Result<LogPruneReport> {
        let report = self.audit.prune_older_than(cutoff_us).await?;
        self.prune_feed_before(report.removed, report.anchor_size)
            .await
    }

    /// Deletes the changes of writes logged before `anchor` (the log's first kept entry).
    /// Runs whatever the log removed this time, so a pruning interrupted between the log
    /// and the feed is completed by the next one.
    async fn prune_feed_before(&self, entries: u64, anchor: u64) -> Result<LogPruneReport> {
        let end = Cursor {
            seq: anchor,
            index: 0,
        }
        .key();
        let mut changes = 0u64;
        loop {
            let rows = self
                .store
                .scan_range(Table::Changes, &[], Some(&end), PRUNE_CHUNK)
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut b = crate::storage::Batch::new();
            for (k, _) in &rows {
                b.delete(Table::Changes, k);
            }
            self.store.commit(b).await?;
            changes += rows.len() as u64;
        }
        Ok(LogPruneReport {
            entries,
            changes,
            anchor_size: anchor,
        })
    }

    /// Decides and logs a caller's subscription to the change feed (one entry per call,
    /// whatever it then reads); parses its cursor.
    pub async fn watch(&self, caller: &Caller, cursor: &str) -> Result<Option<Cursor>> {
        let mut log = self.record(caller, Rpc::SupportersWatch);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::SupportersWatch,
                &registry,
                None,
                None,
            )?;
            match cursor.trim() {
                "" => Ok(None),
                c => Cursor::parse(c).map(Some),
            }
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// The next step of a Watch stream: reads up to `limit` changes after the session's
    /// cursor, checks that the client still holds and may use its purpose (an
    /// `Unauthenticated` or `PermissionDenied` error ends the stream), and returns those the
    /// caller may see (see the module documentation). The cursor moves past every change
    /// read, shown or not.
    pub async fn watch_next(&self, session: &mut WatchSession, limit: usize) -> Result<WatchBatch> {
        let rows = self.changes_after(session.cursor, limit).await?;
        // After the read: every row was written before this check.
        // A client that no longer holds, or may no longer use its purpose, ends the stream;
        // the cut is a refusal like any other and gets its access-log entry.
        let client = match self.client_in_force(&session.caller.client_id).await {
            Ok(c) => c,
            Err(e) => return self.refused(&session.caller, Rpc::SupportersWatch, e).await,
        };
        session.caller.role = client.role;
        session.caller.allowed_purposes = client.purposes;
        let registry = self.registry().await?;
        let purpose =
            match access::decide(&session.caller, Rpc::SupportersWatch, &registry, None, None) {
                Ok(d) => d.purpose.ok_or_else(|| Error::Codec("no purpose".into()))?,
                Err(d) => {
                    let mut log = self.record(&session.caller, Rpc::SupportersWatch);
                    let e = log.denied(d);
                    return log.finish(&self.audit, Err(e)).await;
                }
            };
        if session.purpose.as_ref() != Some(&purpose) {
            session.basis.clear();
            session.purpose = Some(purpose.clone());
        }
        let caught_up = rows.len() < limit;
        let next_cursor = rows.last().map(|e| e.cursor).or(session.cursor);
        let events = self
            .visible_changes(session, &registry, &purpose, rows)
            .await?;
        session.cursor = next_cursor;
        Ok(WatchBatch { events, caught_up })
    }

    /// The changes of `rows` the session's caller may see under `purpose`.
    async fn visible_changes(
        &self,
        session: &mut WatchSession,
        registry: &Registry,
        purpose: &Purpose,
        rows: Vec<ChangeEvent>,
    ) -> Result<Vec<ChangeEvent>> {
        let verdicts: Vec<Visibility> = rows.iter().map(|e| e.change.judge(purpose)).collect();
        // What may have changed a remembered judgement is forgotten; the people still to
        // judge are loaded now, after the batch was read, so their state is at least as
        // recent as every change of the batch.
        for e in rows.iter().filter(|e| e.change.kind.may_change_basis()) {
            session.basis.remove(&e.change.subject_id);
        }
        let to_load: BTreeSet<&str> = rows
            .iter()
            .zip(&verdicts)
            .filter(|(e, v)| {
                **v == Visibility::IfBasisNow && !session.basis.contains_key(&e.change.subject_id)
            })
            .map(|(e, _)| e.change.subject_id.as_str())
            .collect();
        if session.basis.len() + to_load.len() > REMEMBERED {
            session.basis.clear();
        }
        for id in to_load {
            let has = self.basis_now(&session.caller, registry, id).await?;
            session.basis.insert(id.to_owned(), has);
        }
        Ok(rows
            .into_iter()
            .zip(verdicts)
            .filter(|(e, v)| match v {
                Visibility::Shown => true,
                Visibility::Hidden => false,
                Visibility::IfBasisNow => session
                    .basis
                    .get(&e.change.subject_id)
                    .copied()
                    .unwrap_or(false),
            })
            .map(|(e, _)| e)
            .collect())
    }

    /// Whether `caller` may read the person `id` now (`Supporters.Get`'s decision); an
    /// erased or unknown person: no. A failure to load the person is reported without their
    /// id.
    async fn basis_now(&self, caller: &Caller, registry: &Registry, id: &str) -> Result<bool> {
        let loaded = match self.load(id).await {
            Ok(l) => l,
            Err(e) => return Err(nameless(e)),
        };
        Ok(loaded.is_some_and(|l| {
            let consent = l.consent_state();
            access::decide(
                caller,
                Rpc::SupportersGet,
                registry,
                Some(l.subject(&consent)),
                None,
            )
            .is_ok()
        }))
    }

    /// Records, on the `changes` of a write of `loaded` that may end a basis, the purposes
    /// the person had a basis for before the write ([`Change::basis_before`]).
    pub(super) async fn note_basis_before(
        &self,
        loaded: &Loaded,
        changes: &mut [Change],
    ) -> Result<()> {
        if !changes.iter().any(|c| c.kind.may_end_basis()) {
            return Ok(());
        }
        let registry = self.registry().await?;
        let consent = loaded.consent_state();
        let had = access::basis_purposes(&registry, loaded.subject(&consent));
        for c in changes.iter_mut().filter(|c| c.kind.may_end_basis()) {
            c.basis_before = Some(had.clone());
        }
        Ok(())
    }

    /// Up to `limit` changes after `after` (from the oldest without), oldest first, as
    /// stored: every change of every person, unfiltered (a Watch stream reads through
    /// [`Vault::watch_next`]).
    pub async fn changes_after(
        &self,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<ChangeEvent>> {
        let start = after.map_or_else(Vec::new, Cursor::after_key);
        let rows = self
            .store
            .scan_range(Table::Changes, &start, None, limit)
            .await?;
        rows.iter()
            .map(|(k, v)| {
                changes::decode(k, v).ok_or(crate::error::Error::Integrity(
                    crate::error::IntegrityObject::Metadata("change feed"),
                ))
            })
            .collect()
    }

    /// Decides an Import stream once, before its first row is read: the caller's role and
    /// purpose. A wrong role is refused for the call (`PermissionDenied`), a missing or
    /// unknown purpose too (`InvalidInput`), not row by row in an "accepted" reply; the
    /// refusal is the call's one access-log entry. An allowed stream logs nothing here:
    /// each of its rows is logged as it is upserted ([`Vault::import_row`]).
    pub async fn import_open(&self, caller: &Caller) -> Result<()> {
        let mut log = self.record(caller, Rpc::SupportersImport);
        let decided = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::SupportersImport,
                &registry,
                None,
                None,
            )
        }
        .await;
        match decided {
            Ok(_) => Ok(()),
            Err(e) => log.finish(&self.audit, Err(e)).await,
        }
    }

    /// One row of a bulk import: an upsert (deduplicated by email and phone), logged as
    /// `Supporters.Import`. Consents already active are not recorded again, so re-importing
    /// a file changes nothing.
    pub async fn import_row(
        &self,
        caller: &Caller,
        input: &Supporter,
        consents: &[ConsentChange],
    ) -> Result<UpsertOutcome> {
        let mut log = self.record(caller, Rpc::SupportersImport);
        let result = self
            .upsert_inner(&mut log, caller, Rpc::SupportersImport, input, consents)
            .await;
        log.finish(&self.audit, result).await
    }
}

/// `e` without the person it may name, for a stream that may not name them: storage
/// failures stay what they are (they name no one), everything else becomes an integrity
/// failure of the feed. The daemon's log keeps the original.
fn nameless(e: Error) -> Error {
    match e {
        Error::Storage(s) if !matches!(s, StoreError::Tampered { .. }) => Error::Storage(s),
        other => {
            tracing::error!(
                target: "vault::feed",
                error = %other,
                "a supporter's rows could not be read while judging the change feed"
            );
            Error::Integrity(IntegrityObject::Metadata(
                "the rows of a supporter in the change feed",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use crate::access::Role;
    use crate::changes::ChangeKind;
    use crate::consent::ConsentSource;
    use crate::crypto::Key256;
    use crate::crypto::root_key::RootKey;
    use crate::journal::AuditOptions;
    use crate::purpose::Channel;
    use crate::storage::sled_store::{SledOptions, SledStore};
    use crate::storage::{Batch, Store};

    async fn vault(dir: &std::path::Path) -> (Vault, Arc<dyn Store>) {
        let raw: Arc<dyn Store> = Arc::new(SledStore::open(dir, &SledOptions::default()).unwrap());
        let root = RootKey::from_key(Key256::from_bytes(&[7; 32]));
        let v = Vault::with_store(Arc::clone(&raw), &root, AuditOptions::default())
            .await
            .unwrap();
        v.install_purposes(None).await.unwrap();
        (v, raw)
    }

    fn caller(id: &str, role: Role, purposes: &[&str], purpose: &str) -> Caller {
        Caller {
            client_id: id.to_owned(),
            role,
            allowed_purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
            purpose: Some(purpose.to_owned()),
            request_id: "r".into(),
        }
    }

    /// The vault's two admins (created once: while at most one admin is active, an admin
    /// may create another alone).
    async fn admins(v: &Vault) -> (Caller, Caller) {
        let admin = |id: &str| Caller {
            purpose: None,
            ..caller(id, Role::Admin, &[], "")
        };
        let root = admin("admin");
        let mut ids: Vec<String> = v
            .list_clients(&root)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.role == Role::Admin && c.name.starts_with("test-admin-"))
            .map(|c| c.id)
            .collect();
        while ids.len() < 2 {
            let by = ids.last().map_or_else(|| root.clone(), |id| admin(id));
            let name = format!("test-admin-{}", ids.len());
            let (c, _) = v
                .create_client(&by, &name, Role::Admin, &[], None, None)
                .await
                .unwrap();
            ids.push(c.id);
        }
        (admin(&ids[0]), admin(&ids[1]))
    }

    /// A campaign tool registered in the vault, declaring `purpose`: proposed by one
    /// admin, approved by a second (separation of duties).
    async fn tool(v: &Vault, purposes: &[&str], purpose: &str) -> Caller {
        let (first, second) = admins(v).await;
        let wanted: Vec<String> = purposes.iter().map(|p| (*p).to_owned()).collect();
        let (proposal, _token) = v
            .propose_client(&first, "tool", Role::CampaignTool, &wanted, None, None)
            .await
            .unwrap();
        let proposal = v
            .approve_proposal(&second, &proposal.id, None)
            .await
            .unwrap();
        let crate::proposal::Change::CreateClient(proposed) = proposal.change else {
            panic!("not a client proposal");
        };
        caller(&proposed.client.id, Role::CampaignTool, purposes, purpose)
    }

    fn grant(purpose: &str) -> ConsentChange {
        ConsentChange {
            purpose: purpose.into(),
            channel: None,
            source: ConsentSource::Form,
            notice_version: "v1".into(),
            through: None,
        }
    }

    async fn person(v: &Vault, by: &Caller, email: &str, consents: &[ConsentChange]) -> String {
        let s = Supporter {
            email: email.into(),
            ..Supporter::default()
        };
        v.upsert(by, &s, consents).await.unwrap().id
    }

    fn kinds(b: &WatchBatch) -> Vec<(ChangeKind, String)> {
        b.events
            .iter()
            .map(|e| (e.change.kind, e.change.subject_id.clone()))
            .collect()
    }

    #[tokio::test]
    async fn an_import_is_refused_for_the_call_before_any_row() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault(dir.path()).await;
        let member = tool(&v, &["membership"], "membership").await;
        let before = v.audit.size().await;
        // Allowed: nothing logged until a row arrives (each row is its own entry).
        v.import_open(&member).await.unwrap();
        assert_eq!(v.audit.size().await, before);
        let cases = [
            (caller("auditor", Role::Auditor, &[], "membership"), "role"),
            (
                caller("dpo", Role::Dpo, &[], crate::purpose::DPO_PURPOSE),
                "role",
            ),
            (
                Caller {
                    purpose: None,
                    ..member.clone()
                },
                "purpose-missing",
            ),
            (
                Caller {
                    purpose: Some("sms-mobilisation".into()),
                    ..member.clone()
                },
                "purpose-not-allowed",
            ),
        ];
        for (i, (who, reason)) in cases.iter().enumerate() {
            let e = v.import_open(who).await.unwrap_err();
            match *reason {
                "purpose-missing" => assert!(matches!(e, Error::InvalidInput(_)), "{e}"),
                _ => assert!(matches!(e, Error::PermissionDenied(_)), "{e}"),
            }
            // Exactly one entry per refused call, with the reason.
            let size = v.audit.size().await;
            assert_eq!(size, before + i as u64 + 1);
            let (_, entry) = v
                .audit
                .entries(size - 1, size)
                .await
                .unwrap()
                .pop()
                .unwrap();
            assert_eq!(entry.rpc, "Supporters.Import");
            assert_eq!(
                (entry.outcome.as_str(), entry.reason.as_deref()),
                ("denied", Some(*reason))
            );
        }
    }

    #[tokio::test]
    async fn a_session_sees_its_purpose_only_and_the_end_of_its_basis() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault(dir.path()).await;
        let news = tool(&v, &["newsletter"], "newsletter").await;
        let member = tool(&v, &["membership", "sms-mobilisation"], "membership").await;
        let dpo = caller("dpo", Role::Dpo, &[], crate::purpose::DPO_PURPOSE);
        let reader = person(&v, &news, "r@example.org", &[grant("newsletter")]).await;
        let other = person(&v, &member, "o@example.org", &[grant("sms-mobilisation")]).await;
        v.tag(&member, &other, &["x".into()]).await.unwrap();

        let mut s = WatchSession::new(news.clone(), None);
        let b = v.watch_next(&mut s, 100).await.unwrap();
        assert!(b.caught_up);
        assert_eq!(
            kinds(&b),
            [
                (ChangeKind::Created, reader.clone()),
                (ChangeKind::ConsentGranted, reader.clone())
            ]
        );
        // The cursor moved past the hidden changes too.
        let all = v.changes_after(None, 100).await.unwrap();
        assert_eq!(s.cursor(), all.last().map(|e| e.cursor));

        // The erasure records who had a basis, and is shown once; neither the membership
        // tool (never collected for it) nor the SMS purpose (no consent) had one.
        v.erase(&dpo, &reader, "E-1", false).await.unwrap();
        let b = v.watch_next(&mut s, 100).await.unwrap();
        assert_eq!(kinds(&b), [(ChangeKind::Erased, reader.clone())]);
        let had = b.events[0].change.basis_before.clone().unwrap();
        assert_eq!(had, ["newsletter".to_owned()]);
        assert!(!had.contains(&"sms-mobilisation".to_owned()));
        assert!(v.watch_next(&mut s, 100).await.unwrap().events.is_empty());
        // A fresh session from the start: the erased person's earlier changes are gone
        // with their basis; the erasure stays.
        let mut again = WatchSession::new(news.clone(), None);
        let b = v.watch_next(&mut again, 100).await.unwrap();
        assert_eq!(kinds(&b), [(ChangeKind::Erased, reader.clone())]);
        // Under the SMS purpose: the texter, without the membership tool's changes that
        // the SMS purpose has no basis for, and none of the newsletter's consent.
        let sms = Caller {
            purpose: Some("sms-mobilisation".into()),
            ..member.clone()
        };
        let b = v
            .watch_next(&mut WatchSession::new(sms, None), 100)
            .await
            .unwrap();
        assert!(b.events.iter().all(|e| e.change.subject_id == other));
        assert!(b.events.iter().all(|e| {
            e.change
                .purpose
                .as_deref()
                .is_none_or(|p| p == "sms-mobilisation")
        }));
        // Small batches reach the same result.
        let mut small = WatchSession::new(member.clone(), None);
        let mut seen = Vec::new();
        loop {
            let b = v.watch_next(&mut small, 1).await.unwrap();
            seen.extend(kinds(&b));
            if b.caught_up {
                break;
            }
        }
        let whole = v
            .watch_next(&mut WatchSession::new(member.clone(), None), 100)
            .await
            .unwrap();
        assert_eq!(seen, kinds(&whole));
    }

    #[tokio::test]
    async fn a_withdrawal_is_shown_then_nothing_and_a_revocation_ends_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault(dir.path()).await;
        let news = tool(&v, &["newsletter"], "newsletter").await;
        let member = tool(&v, &["membership"], "membership").await;
        let id = person(&v, &news, "w@example.org", &[grant("newsletter")]).await;
        // The membership tool meets the person too: its upsert collects for membership.
        assert_eq!(person(&v, &member, "w@example.org", &[]).await, id);
        let mut s = WatchSession::new(news.clone(), None);
        assert_eq!(v.watch_next(&mut s, 100).await.unwrap().events.len(), 2);
        // Remembered as having a basis; the withdrawal makes the session forget it.
        v.tag(&member, &id, &["a".into()]).await.unwrap();
        assert_eq!(
            kinds(&v.watch_next(&mut s, 100).await.unwrap()),
            [(ChangeKind::Tagged, id.clone())]
        );
        v.withdraw_consent(&news, &id, &grant("newsletter"))
            .await
            .unwrap();
        v.tag(&member, &id, &["b".into()]).await.unwrap();
        let b = v.watch_next(&mut s, 100).await.unwrap();
        assert_eq!(kinds(&b), [(ChangeKind::ConsentWithdrawn, id.clone())]);
        assert_eq!(b.events[0].change.channel, Some(Channel::Email));

        let admin = Caller {
            purpose: None,
            ..caller("admin", Role::Admin, &[], "")
        };
        v.revoke_client(&admin, &news.client_id).await.unwrap();
        let e = v.watch_next(&mut s, 100).await.unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
        // The cut is logged: the stream's client, the call, refused as unauthenticated.
        let size = v.audit.size().await;
        let (_, last) = v.audit.entries(size - 1, size).await.unwrap().remove(0);
        assert_eq!(
            (
                last.client.as_str(),
                last.rpc.as_str(),
                last.outcome.as_str()
            ),
            (news.client_id.as_str(), "Supporters.Watch", "denied")
        );
        assert_eq!(last.reason.as_deref(), Some("unauthenticated"));
        // An unknown client holds nothing either.
        let mut ghost = WatchSession::new(
            caller("ghost", Role::CampaignTool, &["newsletter"], "newsletter"),
            None,
        );
        assert!(matches!(
            v.watch_next(&mut ghost, 100).await.unwrap_err(),
            Error::Unauthenticated(_)
        ));
    }

    #[tokio::test]
    async fn the_feed_is_pruned_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault(dir.path()).await;
        let member = tool(&v, &["membership"], "membership").await;
        let old = person(&v, &member, "old@example.org", &[]).await;
        v.tag(&member, &old, &["a".into()]).await.unwrap();
        let before = v.changes_after(None, 100).await.unwrap();
        assert_eq!(before.len(), 2, "created and tagged");
        let cursor = before[0].cursor;
        // A checkpoint closes the segment; every entry in it is older than the cutoff.
        v.audit.checkpoint().await.unwrap();
        let report = v
            .prune_access_log_older_than(crate::vault::now_us() + 3_600_000_000)
            .await
            .unwrap();
        assert!(report.entries > 0, "{report:?}");
        assert_eq!(report.changes, 2, "{report:?}");
        assert!(v.changes_after(None, 100).await.unwrap().is_empty());
        // What is written afterwards is in the feed; a reader from a pruned cursor resumes
        // at the oldest change kept.
        let new = person(&v, &member, "new@example.org", &[]).await;
        let after = v.changes_after(Some(cursor), 100).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].change.subject_id, new);
        assert!(after[0].cursor.seq >= report.anchor_size);
        // A second pass removes nothing more.
        let again = v.prune_access_log_older_than(0).await.unwrap();
        assert_eq!(again.changes, 0);
    }

    #[tokio::test]
    async fn an_erased_persons_events_collapse_to_one_erased() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault(dir.path()).await;
        let member = tool(&v, &["membership", "newsletter"], "membership").await;
        let dpo = caller("dpo", Role::Dpo, &[], crate::purpose::DPO_PURPOSE);
        let gone = person(&v, &member, "gone@example.org", &[grant("newsletter")]).await;
        let kept = person(&v, &member, "kept@example.org", &[]).await;
        v.tag(&member, &gone, &["a".into()]).await.unwrap();
        v.tag(&member, &kept, &["b".into()]).await.unwrap();
        let of = |rows: &[ChangeEvent], id: &str| -> Vec<ChangeKind> {
            rows.iter()
                .filter(|e| e.change.subject_id == id)
                .map(|e| e.change.kind)
                .collect()
        };
        let before = v.changes_after(None, 100).await.unwrap();
        assert_eq!(
            of(&before, &gone),
            [
                ChangeKind::Created,
                ChangeKind::ConsentGranted,
                ChangeKind::Tagged
            ]
        );
        v.erase(&dpo, &gone, "REQ-1", false).await.unwrap();
        let after = v.changes_after(None, 100).await.unwrap();
        assert_eq!(of(&after, &gone), [ChangeKind::Erased]);
        assert_eq!(of(&after, &kept), of(&before, &kept), "others keep theirs");
    }

    #[tokio::test]
    async fn a_person_who_fails_to_load_is_not_named() {
        let dir = tempfile::tempdir().unwrap();
        let (v, raw) = vault(dir.path()).await;
        let member = tool(&v, &["membership"], "membership").await;
        let id = person(&v, &member, "t@example.org", &[]).await;
        let mut b = Batch::new();
        b.put(Table::Records, id.as_bytes(), b"not a ciphertext".to_vec());
        raw.commit(b).await.unwrap();
        let e = v
            .watch_next(&mut WatchSession::new(member, None), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Integrity(_)), "{e}");
        assert!(!e.to_string().contains(&id), "{e}");
    }
}
