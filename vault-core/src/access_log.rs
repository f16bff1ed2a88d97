//! The access-log seam: one [`AccessEntry`] per call that touches personal data or is
//! refused, handed to an [`AccessSink`].
//!
//! Entries name the actor, role, call, purpose, subject ids, field names and outcome, and
//! never a field value, email or name: the log must itself hold no personal data (CNIL).
//! This module defines the entry and the seam; [`TracingSink`] writes entries to the
//! daemon's log. The tamper-evident, durable log (Merkle tree, signed checkpoints) plugs in
//! here as another sink.

use std::sync::Mutex;

use crate::access::{Caller, Denied, Rpc};
use crate::error::Error;
use crate::supporter::FieldSet;

/// How a call ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call ran.
    Allowed,
    /// The call was refused; the code says why (`role`, `purpose-missing`,
    /// `purpose-unknown`, `purpose-not-allowed`, `no-consent`, `field-not-allowed`,
    /// `invalid-argument`, `not-found`, `already-exists`, `integrity`, `error`).
    Denied(&'static str),
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
}

/// Where entries go.
pub trait AccessSink: Send + Sync {
    /// Records one entry.
    fn record(&self, entry: AccessEntry);
}

/// Writes entries to the process log (`tracing`, target `vault::access`).
#[derive(Debug, Default)]
pub struct TracingSink;

impl AccessSink for TracingSink {
    fn record(&self, e: AccessEntry) {
        let outcome = match e.outcome {
            Outcome::Allowed => "allowed",
            Outcome::Denied(code) => code,
        };
        tracing::info!(
            target: "vault::access",
            request_id = %e.request_id,
            client = %e.client_id,
            role = e.role,
            rpc = %e.rpc,
            purpose = e.purpose.as_deref().unwrap_or("-"),
            subjects = ?e.subjects,
            fields = ?e.fields,
            outcome,
            "access"
        );
    }
}

/// Keeps entries in memory (tests, embedded users who ship entries elsewhere).
#[derive(Debug, Default)]
pub struct MemorySink(Mutex<Vec<AccessEntry>>);

impl MemorySink {
    /// Every entry recorded so far.
    pub fn entries(&self) -> Vec<AccessEntry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl AccessSink for MemorySink {
    fn record(&self, entry: AccessEntry) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }
}

/// Collects what one call did, and records exactly one entry when the call ends.
#[derive(Debug)]
pub struct AccessRecord {
    entry: AccessEntry,
    denied: Option<&'static str>,
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
                purpose: caller.purpose.clone(),
                subjects: Vec::new(),
                fields: Vec::new(),
                outcome: Outcome::Allowed,
            },
            denied: None,
        }
    }

    /// Notes a subject the call concerns.
    pub fn subject(&mut self, id: &str) {
        if !self.entry.subjects.iter().any(|s| s == id) {
            self.entry.subjects.push(id.to_owned());
        }
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

    /// Records the entry for `result` in `sink` and passes the result through.
    pub fn finish<T>(
        mut self,
        sink: &dyn AccessSink,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        self.entry.outcome = match (&result, self.denied) {
            (Ok(_), _) => Outcome::Allowed,
            (Err(_), Some(code)) => Outcome::Denied(code),
            (Err(e), None) => Outcome::Denied(match e {
                Error::InvalidInput(_) => "invalid-argument",
                Error::NotFound(_) => "not-found",
                Error::AlreadyExists(_) => "already-exists",
                Error::PermissionDenied(_) => "permission-denied",
                Error::FailedPrecondition(_) => "failed-precondition",
                Error::Integrity(_) => "integrity",
                _ => "error",
            }),
        };
        if result.is_err() {
            self.entry.fields.clear();
        }
        sink.record(self.entry);
        result
    }
}
