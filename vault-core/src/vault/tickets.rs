//! Rights request tickets: the DPO opens one when a data subject's request arrives, lists
//! the open and overdue ones, and closes each with what was done (GDPR art. 12(3): one
//! month to answer). See [`crate::rights_requests`] for the model and the due-date rule.
//!
//! Each call is decided (role `dpo`; no purpose, since a ticket holds no personal data) and
//! logged like every other call; opening and closing commit the ticket together with the
//! access-log entry. Every call that answers a ticket says whether it is overdue, judged by
//! the vault's one clock ([`crate::clock::Clock`]) at the time of the call.
//!
//! The DPO actions that take a `request_ref` (erase, restrict, unrestrict, object) answer a
//! ticket through [`Vault::ticket_answered`]: a reference in ticket-id form (a UUID) must
//! name a ticket that is open, of the action's kind and about the same person, and the
//! action closes it in its own transaction. Any other reference is the controller's own (a
//! request tracked outside the vault, or a ticket's `reference`, which need not be unique)
//! and is recorded as given.

use crate::access::{Caller, Rpc};
use crate::error::{Error, InvalidInput, Result};
use crate::rights_requests::{
    RequestKind, RequestStatus, RightsRequest, due_date, validate_action, validate_reference,
};
use crate::storage::{Batch, Table};

use super::{Vault, parse_id};
use crate::txn;

/// How far in the future a receipt time may lie (clock skew between the DPO's tools and the
/// vault), in microseconds.
const MAX_FUTURE_SKEW_US: i64 = 5 * 60 * 1_000_000;

/// Parses a ticket id into its canonical form.
fn parse_ticket_id(id: &str) -> Result<String> {
    uuid::Uuid::try_parse(id.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            InvalidInput::new(
                "id",
                "must be a ticket id as returned by OpenRequest (a UUID)",
            )
            .into()
        })
}

impl Vault {
    /// Opens a rights request ticket of `kind` (access, portability, rectification,
    /// erasure, restriction, objection) received at `received_at_us` (now when `None`; not
    /// in the future), about `subject_id` when known, under the controller's `reference`.
    /// Its due date is one calendar month after receipt. Returns the ticket and whether it is
    /// already overdue (a request received more than a month ago).
    pub async fn open_request(
        &self,
        caller: &Caller,
        kind: &str,
        received_at_us: Option<i64>,
        subject_id: Option<&str>,
        reference: &str,
    ) -> Result<(RightsRequest, bool)> {
        let mut log = self.record(caller, Rpc::RightsOpenRequest);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::RightsOpenRequest,
                &registry,
                None,
                None,
            )?;
            let kind: RequestKind = kind.parse()?;
            let subject_id = subject_id
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| parse_id("subject_id", s))
                .transpose()?;
            if let Some(s) = &subject_id {
                log.subject(s);
            }
            let reference = validate_reference("reference", reference)?;
            log.request_ref(&reference);
            let now = self.clock.now_us();
            let received_at_us = received_at_us.unwrap_or(now);
            if received_at_us < 0 {
                return Err(InvalidInput::new("received_at", "must be after 1970").into());
            }
            if received_at_us > now.saturating_add(MAX_FUTURE_SKEW_US) {
                return Err(InvalidInput::new("received_at", "must not be in the future").into());
            }
            let ticket = RightsRequest {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                kind,
                received_at_us,
                due_at_us: due_date(received_at_us)?,
                subject_id,
                reference,
                status: RequestStatus::Open,
                closed_at_us: None,
                action: None,
                opened_by: caller.client_id.clone(),
                closed_by: None,
            };
            let mut b = Batch::new();
            b.check(Table::RightsRequests, ticket.id.as_bytes(), None)
                .put(
                    Table::RightsRequests,
                    ticket.id.as_bytes(),
                    ticket.to_json()?,
                );
            log.commit_write(&self.audit, b).await?;
            let overdue = ticket.is_overdue(now);
            Ok((ticket, overdue))
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// The tickets, each with whether it is overdue at `as_of_us` (now when `None`), the
    /// earliest due first. Closed tickets only with `include_closed`; only overdue ones with
    /// `overdue_only` (which a closed ticket never is).
    pub async fn list_requests(
        &self,
        caller: &Caller,
        overdue_only: bool,
        include_closed: bool,
        as_of_us: Option<i64>,
    ) -> Result<Vec<(RightsRequest, bool)>> {
        let mut log = self.record(caller, Rpc::RightsListRequests);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::RightsListRequests,
                &registry,
                None,
                None,
            )?;
            let as_of = as_of_us.unwrap_or_else(|| self.clock.now_us());
            let mut out = Vec::new();
            for (_, raw) in self.store.scan_prefix(Table::RightsRequests, b"").await? {
                let ticket = RightsRequest::from_json(&raw)?;
                let overdue = ticket.is_overdue(as_of);
                let wanted = (include_closed || ticket.status == RequestStatus::Open)
                    && (!overdue_only || overdue);
                if wanted {
                    out.push((ticket, overdue));
                }
            }
            out.sort_by(|(a, _), (b, _)| a.due_at_us.cmp(&b.due_at_us).then(a.id.cmp(&b.id)));
            Ok(out)
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Closes the open ticket `id`, recording what was done (`action`: codes of
    /// [`crate::rights_requests::ACTIONS`], e.g. "exported" or "erased, answered"). Returns
    /// the closed ticket and whether it is overdue (never, once closed).
    pub async fn close_request(
        &self,
        caller: &Caller,
        id: &str,
        action: &str,
    ) -> Result<(RightsRequest, bool)> {
        let mut log = self.record(caller, Rpc::RightsCloseRequest);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::RightsCloseRequest,
                &registry,
                None,
                None,
            )?;
            let id = parse_ticket_id(id)?;
            let action = validate_action(action)?;
            txn::retry!("rights request ticket", {
                let raw = self
                    .store
                    .get(Table::RightsRequests, id.as_bytes())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no rights request with id {id}")))?;
                let mut ticket = RightsRequest::from_json(&raw)?;
                if let Some(s) = &ticket.subject_id {
                    log.subject(s);
                }
                log.request_ref(&ticket.reference);
                if ticket.status == RequestStatus::Closed {
                    return Err(already_closed(&ticket));
                }
                let now = self.clock.now_us();
                let mut b = Batch::new();
                close(&mut b, &mut ticket, &raw, &action, caller, now)?;
                log.commit_write(&self.audit, b).await?;
                let overdue = ticket.is_overdue(now);
                Ok((ticket, overdue))
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }
    /// The ticket a DPO action's `reference` answers (see the module documentation), read
    /// for the transaction that acts: `None` for a reference no ticket carries. Adds to
    /// `b` the ticket's closing with `answer`'s action code, pinned to the row read, so a
    /// ticket closed meanwhile makes the action retry and then refuse.
    pub(super) async fn ticket_answered(
        &self,
        b: &mut Batch,
        caller: &Caller,
        reference: &str,
        answer: Answer,
        subject_id: &str,
    ) -> Result<Option<RightsRequest>> {
        let Some((mut ticket, raw)) = self.ticket_by_ref(reference).await? else {
            return Ok(None);
        };
        if ticket.status == RequestStatus::Closed {
            return Err(already_closed(&ticket));
        }
        if ticket.kind != answer.kind {
            return Err(Error::FailedPrecondition(format!(
                "rights request {} ({}) is of kind {}, not {}: {} answers a request of kind \
                 {} (open one with Rights.OpenRequest)",
                ticket.id, ticket.reference, ticket.kind, answer.kind, answer.call, answer.kind
            )));
        }
        match &ticket.subject_id {
            Some(s) if s != subject_id => {
                return Err(Error::FailedPrecondition(format!(
                    "rights request {} ({}) is about another supporter than {subject_id}",
                    ticket.id, ticket.reference
                )));
            }
            Some(_) => {}
            None => ticket.subject_id = Some(subject_id.to_owned()),
        }
        close(
            b,
            &mut ticket,
            &raw,
            answer.action,
            caller,
            self.clock.now_us(),
        )?;
        Ok(Some(ticket))
    }

    /// The ticket `reference` names, with its stored bytes: when it has a ticket id's form,
    /// the ticket of that id, which must exist. A reference of another form names no
    /// ticket, not even one opened with it as its `reference`: those are the controller's
    /// own numbers, not unique, and an action must not close a ticket it was not given.
    async fn ticket_by_ref(&self, reference: &str) -> Result<Option<(RightsRequest, Vec<u8>)>> {
        let Ok(id) = parse_ticket_id(reference) else {
            return Ok(None);
        };
        let raw = self
            .store
            .get(Table::RightsRequests, id.as_bytes())
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no rights request with id {id}: pass the id OpenRequest returned, or your \
                     own reference (REQ-2026-017)"
                ))
            })?;
        Ok(Some((RightsRequest::from_json(&raw)?, raw)))
    }
}

/// What a DPO action answers: the kind of ticket it closes and the action code it records.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer {
    /// The kind of request the action answers.
    pub kind: RequestKind,
    /// The code recorded on the ticket ([`crate::rights_requests::ACTIONS`]).
    pub action: &'static str,
    /// The call, for messages.
    pub call: &'static str,
}

impl Answer {
    /// Rights.Erase.
    pub const ERASE: Answer = Answer {
        kind: RequestKind::Erasure,
        action: "erased",
        call: "Rights.Erase",
    };
    /// Rights.Restrict.
    pub const RESTRICT: Answer = Answer {
        kind: RequestKind::Restriction,
        action: "restricted",
        call: "Rights.Restrict",
    };
    /// Rights.Unrestrict.
    pub const UNRESTRICT: Answer = Answer {
        kind: RequestKind::Restriction,
        action: "unrestricted",
        call: "Rights.Unrestrict",
    };
    /// Rights.Object.
    pub const OBJECT: Answer = Answer {
        kind: RequestKind::Objection,
        action: "objection-recorded",
        call: "Rights.Object",
    };
}

fn already_closed(ticket: &RightsRequest) -> Error {
    Error::FailedPrecondition(format!(
        "rights request {} ({}) is already closed{}: open a new one for a new request",
        ticket.id,
        ticket.reference,
        ticket
            .action
            .as_deref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default()
    ))
}

/// Adds to `b` the closing of `ticket` (stored as `raw`) with `action`, by `caller`, at
/// `now`: the one way a ticket is closed, by CloseRequest or by the action that answers it.
fn close(
    b: &mut Batch,
    ticket: &mut RightsRequest,
    raw: &[u8],
    action: &str,
    caller: &Caller,
    now: i64,
) -> Result<()> {
    ticket.status = RequestStatus::Closed;
    ticket.closed_at_us = Some(now);
    ticket.action = Some(action.to_owned());
    ticket.closed_by = Some(caller.client_id.clone());
    let key = ticket.id.as_bytes();
    b.check(Table::RightsRequests, key, Some(raw)).put(
        Table::RightsRequests,
        key,
        ticket.to_json()?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::super::now_us;
    use super::*;
    use crate::access::Role;
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

    fn caller(role: Role) -> Caller {
        Caller {
            client_id: format!("{role}-client"),
            role,
            allowed_purposes: BTreeSet::new(),
            purpose: None,
            request_id: "r".into(),
        }
    }

    const DAY_US: i64 = 86_400_000_000;

    #[tokio::test]
    async fn open_list_close_with_due_dates_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path()).await;
        let dpo = caller(Role::Dpo);
        let subject = uuid::Uuid::new_v4().to_string();
        let now = now_us();

        let old = v
            .open_request(
                &dpo,
                "erasure",
                Some(now - 40 * DAY_US),
                Some(&subject),
                "REF-1",
            )
            .await
            .unwrap()
            .0;
        assert_eq!(old.kind, RequestKind::Erasure);
        assert_eq!(old.due_at_us, due_date(old.received_at_us).unwrap());
        assert_eq!(old.subject_id.as_deref(), Some(subject.as_str()));
        assert_eq!(old.opened_by, "dpo-client");
        let fresh = v
            .open_request(&dpo, "Access", None, None, "  REF-2 ")
            .await
            .unwrap()
            .0;
        assert_eq!(fresh.reference, "REF-2");
        assert!(fresh.received_at_us >= now);

        let open = v.list_requests(&dpo, false, false, None).await.unwrap();
        assert_eq!(open.len(), 2);
        assert_eq!((open[0].0.id.as_str(), open[0].1), (old.id.as_str(), true));
        assert_eq!(
            (open[1].0.id.as_str(), open[1].1),
            (fresh.id.as_str(), false)
        );
        let overdue = v.list_requests(&dpo, true, false, None).await.unwrap();
        assert_eq!(overdue.len(), 1);
        // As of two months from now, both are overdue.
        let later = v
            .list_requests(&dpo, true, false, Some(now + 62 * DAY_US))
            .await
            .unwrap();
        assert_eq!(later.len(), 2);

        let (closed, overdue) = v.close_request(&dpo, &old.id, "erased").await.unwrap();
        assert!(!overdue);
        assert_eq!(closed.status, RequestStatus::Closed);
        assert_eq!(closed.action.as_deref(), Some("erased"));
        assert_eq!(closed.closed_by.as_deref(), Some("dpo-client"));
        assert!(!closed.is_overdue(i64::MAX));
        let again = v.close_request(&dpo, &old.id, "erased").await.unwrap_err();
        assert!(matches!(again, Error::FailedPrecondition(_)), "{again}");
        assert_eq!(
            v.list_requests(&dpo, false, false, None)
                .await
                .unwrap()
                .len(),
            1
        );
        let all = v.list_requests(&dpo, false, true, None).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(
            v.list_requests(&dpo, true, true, None)
                .await
                .unwrap()
                .is_empty()
        );

        let missing = uuid::Uuid::new_v4().to_string();
        assert!(matches!(
            v.close_request(&dpo, &missing, "answered")
                .await
                .unwrap_err(),
            Error::NotFound(_)
        ));
    }

    #[tokio::test]
    async fn bad_input_and_wrong_roles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path()).await;
        let dpo = caller(Role::Dpo);
        let invalid = |e: Error, field: &str| match e {
            Error::InvalidInput(i) => assert_eq!(i.field, field, "{i}"),
            other => panic!("expected invalid {field}, got {other}"),
        };
        let e = v
            .open_request(&dpo, "forget-me", None, None, "R-1")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("access, portability"), "{e}");
        invalid(e, "kind");
        invalid(
            v.open_request(&dpo, "access", None, Some("not-a-uuid"), "R-1")
                .await
                .unwrap_err(),
            "subject_id",
        );
        invalid(
            v.open_request(&dpo, "access", None, None, "")
                .await
                .unwrap_err(),
            "reference",
        );
        invalid(
            v.open_request(&dpo, "access", None, None, &"x".repeat(201))
                .await
                .unwrap_err(),
            "reference",
        );
        invalid(
            v.open_request(&dpo, "access", Some(now_us() + DAY_US), None, "R-1")
                .await
                .unwrap_err(),
            "received_at",
        );
        invalid(
            v.close_request(&dpo, "nope", "done").await.unwrap_err(),
            "id",
        );
        let t = v
            .open_request(&dpo, "objection", None, None, "R-1")
            .await
            .unwrap()
            .0;
        invalid(
            v.close_request(&dpo, &t.id, " ").await.unwrap_err(),
            "action",
        );
        for role in [Role::Admin, Role::Auditor, Role::CampaignTool] {
            let e = v
                .open_request(&caller(role), "access", None, None, "R-1")
                .await
                .unwrap_err();
            assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
            let e = v
                .list_requests(&caller(role), false, true, None)
                .await
                .unwrap_err();
            assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
        }
        // Every call, refused or not, left its entry; the log verifies.
        let size = v.audit.size().await;
        assert_eq!(size, 14);
        assert!(v.audit.verify(None, None).await.unwrap().is_ok());
    }
}

#[cfg(test)]
mod answering {
    //! The overdue flag under an injected clock, and the DPO actions that answer tickets.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::access::Role;
    use crate::clock::Clock;
    use crate::crypto::Key256;
    use crate::crypto::root_key::RootKey;
    use crate::journal::AuditOptions;
    use crate::purpose::DPO_PURPOSE;
    use crate::storage::Store;
    use crate::storage::sled_store::{SledOptions, SledStore};
    use crate::supporter::Supporter;

    const DAY_US: i64 = 86_400_000_000;
    /// 2026-03-02T00:00:00Z.
    const MARCH_2: i64 = 1_772_409_600_000_000;

    async fn vault(dir: &std::path::Path, now: &Arc<AtomicI64>) -> Vault {
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir, &SledOptions::default()).unwrap());
        let root = RootKey::from_key(Key256::from_bytes(&[7; 32]));
        let seen = Arc::clone(now);
        let v = Vault::with_store(store, &root, AuditOptions::default())
            .await
            .unwrap()
            .with_clock(Clock::from_fn(move || seen.load(Ordering::SeqCst)));
        v.install_purposes(None).await.unwrap();
        v
    }

    fn dpo() -> Caller {
        Caller {
            client_id: "dpo-client".into(),
            role: Role::Dpo,
            allowed_purposes: BTreeSet::new(),
            purpose: Some(DPO_PURPOSE.to_owned()),
            request_id: "r".into(),
        }
    }

    async fn person(v: &Vault, email: &str) -> String {
        let tool = Caller {
            client_id: "tool".into(),
            role: Role::CampaignTool,
            allowed_purposes: ["membership".to_owned()].into(),
            purpose: Some("membership".into()),
            request_id: "r".into(),
        };
        let s = Supporter {
            email: email.into(),
            ..Supporter::default()
        };
        v.upsert(&tool, &s, &[]).await.unwrap().id
    }

    #[tokio::test]
    async fn open_close_and_list_judge_overdue_by_the_same_clock() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(MARCH_2 + 40 * DAY_US));
        let v = vault(dir.path(), &now).await;
        // Received 40 days before the clock's now: due 2026-04-02, so overdue at once.
        let (late, overdue) = v
            .open_request(&dpo(), "access", Some(MARCH_2), None, "REQ-1")
            .await
            .unwrap();
        assert!(overdue, "open must say overdue as list does");
        let listed = v.list_requests(&dpo(), true, false, None).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].0.id.as_str(), listed[0].1),
            (late.id.as_str(), true)
        );
        // Received "now": not overdue until the clock passes its due date.
        let (fresh, overdue) = v
            .open_request(&dpo(), "access", None, None, "REQ-2")
            .await
            .unwrap();
        assert!(!overdue);
        assert_eq!(fresh.received_at_us, MARCH_2 + 40 * DAY_US);
        now.store(fresh.due_at_us + 1, Ordering::SeqCst);
        let listed = v.list_requests(&dpo(), true, false, None).await.unwrap();
        assert_eq!(listed.len(), 2, "both overdue by the moved clock");
        // Closing records the clock's time.
        let (closed, overdue) = v.close_request(&dpo(), &late.id, "answered").await.unwrap();
        assert!(!overdue);
        assert_eq!(closed.closed_at_us, Some(fresh.due_at_us + 1));
        // The future is judged by the same clock: a receipt a day after it is refused.
        let e = v
            .open_request(&dpo(), "access", Some(fresh.due_at_us + DAY_US), None, "R")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    }

    #[tokio::test]
    async fn erasure_closes_the_ticket_it_names_and_refuses_a_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(MARCH_2));
        let v = vault(dir.path(), &now).await;
        let marie = person(&v, "marie@example.fr").await;
        let other = person(&v, "other@example.fr").await;
        let (erasure, _) = v
            .open_request(&dpo(), "erasure", None, Some(&marie), "REQ-17")
            .await
            .unwrap();
        let (access, _) = v
            .open_request(&dpo(), "access", None, Some(&marie), "REQ-18")
            .await
            .unwrap();

        // An unknown ticket id: NOT_FOUND, nothing erased.
        let missing = uuid::Uuid::new_v4().to_string();
        let e = v.erase(&dpo(), &marie, &missing, false).await.unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(e.to_string().contains("no rights request with id"), "{e}");
        // A ticket of another kind.
        let e = v
            .erase(&dpo(), &marie, &access.id, false)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        assert!(e.to_string().contains("of kind access, not erasure"), "{e}");
        // The erasure ticket of someone else.
        let e = v
            .erase(&dpo(), &other, &erasure.id, false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("about another supporter"), "{e}");
        assert!(
            v.load(&marie).await.unwrap().is_some(),
            "nothing erased yet"
        );

        // The right ticket: erased, and the ticket closed in the same write.
        now.store(MARCH_2 + DAY_US, Ordering::SeqCst);
        let receipt = v.erase(&dpo(), &marie, &erasure.id, false).await.unwrap();
        assert_eq!(receipt.request_ref, erasure.id);
        let all = v.list_requests(&dpo(), false, true, None).await.unwrap();
        let t = &all.iter().find(|(t, _)| t.id == erasure.id).unwrap().0;
        assert_eq!(t.status, RequestStatus::Closed);
        assert_eq!(t.action.as_deref(), Some("erased"));
        assert_eq!(t.closed_at_us, Some(MARCH_2 + DAY_US));
        assert_eq!(t.closed_by.as_deref(), Some("dpo-client"));

        // A closed ticket answers nothing more.
        let e = v
            .erase(&dpo(), &other, &erasure.id, false)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        assert!(e.to_string().contains("already closed (erased)"), "{e}");
        // A reference that is not a ticket id is the controller's own, even one a ticket
        // was opened with: recorded as given, and that ticket stays open.
        v.erase(&dpo(), &other, "REQ-18", false).await.unwrap();
        let open = v.list_requests(&dpo(), false, false, None).await.unwrap();
        assert_eq!(open.len(), 1, "the access ticket REQ-18 is still open");
        assert_eq!(open[0].0.id, access.id);
    }

    #[tokio::test]
    async fn restriction_and_objection_close_their_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(MARCH_2));
        let v = vault(dir.path(), &now).await;
        let marie = person(&v, "marie@example.fr").await;
        // A ticket without a subject takes the one the action is about.
        let (restriction, _) = v
            .open_request(&dpo(), "restriction", None, None, "REQ-30")
            .await
            .unwrap();
        let (objection, _) = v
            .open_request(&dpo(), "objection", None, Some(&marie), "REQ-31")
            .await
            .unwrap();
        let e = v
            .object(&dpo(), &marie, &[], &restriction.id)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("of kind restriction, not objection"),
            "{e}"
        );
        v.restrict(&dpo(), &marie, &restriction.id, true)
            .await
            .unwrap();
        v.object(&dpo(), &marie, &[], &objection.id).await.unwrap();
        let e = v
            .restrict(&dpo(), &marie, &restriction.id, false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already closed (restricted)"), "{e}");
        let all = v.list_requests(&dpo(), false, true, None).await.unwrap();
        let by_id = |id: &str| all.iter().find(|(t, _)| t.id == id).unwrap().0.clone();
        let r = by_id(&restriction.id);
        assert_eq!(r.action.as_deref(), Some("restricted"));
        assert_eq!(r.subject_id.as_deref(), Some(marie.as_str()));
        assert_eq!(
            by_id(&objection.id).action.as_deref(),
            Some("objection-recorded")
        );
    }
}
