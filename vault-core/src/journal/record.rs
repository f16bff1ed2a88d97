//! What one call did, for the access log: [`AccessRecord`] collects it while the call runs
//! and records exactly one [`AccessEntry`] when it ends.
//!
//! Entries name the actor, role, call, purpose, subject ids, field names and outcome, and
//! never a field value, email or name: the log must itself hold no personal data (CNIL). A
//! write hands its entry to the log inside its own batch ([`AccessRecord::commit_write`]), so
//! both commit together; every other outcome is appended when the call ends, durably,
//! before the reply leaves the vault.

use crate::access::{Caller, Denied, Rpc};
use crate::denial::DenialReason;
use crate::error::Error;
use crate::journal::AuditLog;
use crate::storage::Batch;
use crate::supporter::FieldSet;

/// How a call ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call ran.
    Allowed,
    /// The call was refused, for this reason.
    Denied(DenialReason),
}

/// One access-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// When, microseconds since the Unix epoch.
    pub at_us: i64,
    /// Request id.
    pub request_id: String,
    /// Client id of the actor.
    pub client_id: String,
    /// The actor's role.
    pub role: &'static str,
    /// The call (`Service.Method`).
    pub rpc: String,
    /// The declared purpose.
    pub purpose: Option<String>,
    /// The subjects concerned (ids only).
    pub subjects: Vec<String>,
    /// The fields read or written (names only).
    pub fields: Vec<&'static str>,
    /// Outcome.
    pub outcome: Outcome,
    /// The rights request a DPO action answers (erasure, restriction, rectification...).
    pub request_ref: Option<String>,
    /// What an allowed write changed, for the change feed (not part of the log entry).
    pub changes: Vec<crate::changes::Change>,
}

/// Collects what one call did, and records exactly one entry when the call ends.
#[derive(Debug)]
pub struct AccessRecord {
    entry: AccessEntry,
    denied: Option<DenialReason>,
    committed: bool,
}

impl AccessRecord {
    /// Starts the record of `rpc` by `caller`.
    pub fn start(caller: &Caller, rpc: Rpc, now_us: i64) -> Self {
        Self {
            entry: AccessEntry {
                at_us: now_us,
                request_id: caller.request_id.clone(),
                client_id: caller.client_id.clone(),
                role: caller.role.as_str(),
                rpc: rpc.as_str().to_owned(),
                // Only a well-formed purpose id: the header is the caller's free text (up to
                // the metadata limit), and the log keeps no free text. The decision narrows
                // it further to the registry's ids ([`AccessRecord::keep_purpose_if`]).
                purpose: caller
                    .purpose
                    .as_deref()
                    .map(str::trim)
                    .filter(|p| crate::purpose::validate_id(p).is_ok())
                    .map(str::to_owned),
                subjects: Vec::new(),
                fields: Vec::new(),
                outcome: Outcome::Allowed,
                request_ref: None,
                changes: Vec::new(),
            },
            denied: None,
            committed: false,
        }
    }

    /// Commits a write together with its (allowed) entry. Once it succeeded, [`finish`]
    /// records nothing more for a successful call.
    ///
    /// [`finish`]: AccessRecord::finish
    pub async fn commit_write(&mut self, log: &AuditLog, batch: Batch) -> Result<(), Error> {
        let mut entry = self.entry.clone();
        entry.outcome = Outcome::Allowed;
        log.append(batch, &entry).await?;
        self.committed = true;
        Ok(())
    }

    /// Keeps the declared purpose in the entry only if `known` (a purpose of the registry):
    /// an unknown purpose is logged as absent, with the refusal's `purpose-unknown`.
    pub fn keep_purpose_if(&mut self, known: impl Fn(&str) -> bool) {
        if self.entry.purpose.as_deref().is_some_and(|p| !known(p)) {
            self.entry.purpose = None;
        }
    }

    /// Notes a subject the call concerns.
    pub fn subject(&mut self, id: &str) {
        if !self.entry.subjects.iter().any(|s| s == id) {
            self.entry.subjects.push(id.to_owned());
        }
    }

    /// Notes the rights request the call answers.
    pub fn request_ref(&mut self, request_ref: &str) {
        let r = request_ref.trim();
        self.entry.request_ref = (!r.is_empty()).then(|| r.to_owned());
    }

    /// Sets what the write about to commit changes (replacing an earlier attempt's).
    pub fn changes(&mut self, changes: Vec<crate::changes::Change>) {
        self.entry.changes = changes;
    }

    /// Notes the fields read or written.
    pub fn fields(&mut self, fields: FieldSet) {
        self.entry.fields = fields.iter().map(|f| f.path()).collect();
    }

    /// Turns a policy denial into the caller's error, remembering its code.
    pub fn denied(&mut self, d: Denied) -> Error {
        self.denied = Some(d.code);
        d.error
    }

    /// Records the entry for `result` (unless a write already committed it) and passes the
    /// result through. If the log cannot record the entry, the call fails: no access goes
    /// unlogged.
    pub async fn finish<T>(mut self, log: &AuditLog, result: Result<T, Error>) -> Result<T, Error> {
        if self.committed && result.is_ok() {
            return result;
        }
        self.entry.outcome = match (&result, self.denied) {
            (Ok(_), _) => Outcome::Allowed,
            (Err(_), Some(code)) => Outcome::Denied(code),
            (Err(e), None) => Outcome::Denied(DenialReason::of_error(e)),
        };
        if result.is_err() {
            self.entry.fields.clear();
        }
        self.entry.changes.clear();
        log.append(Batch::new(), &self.entry).await?;
        result
    }
}
