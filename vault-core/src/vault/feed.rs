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

impl Vault {
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
    pub async fn watch_next(
        &self,
        session: &mut WatchSession,
        limit: usize,
    ) -> Result<WatchBatch> {
        let rows = self.changes_after(session.cursor, limit).await?;
        // After the read: every row was written before this check.
        let client = self.client_in_force(&session.caller.client_id).await?;
        session.caller.role = client.role;
        session.caller.allowed_purposes = client.purposes;
        let registry = self.registry().await?;
        let purpose = access::decide(
            &session.caller,
            Rpc::SupportersWatch,
            &registry,
            None,
            None,
        )
        .map_err(|d| d.error)?
        .purpose
        .ok_or_else(|| Error::Codec("no purpose".into()))?;
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
