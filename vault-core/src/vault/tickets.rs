//! Rights request tickets: the DPO opens one when a data subject's request arrives, lists
//! the open and overdue ones, and closes each with what was done (GDPR art. 12(3): one
//! month to answer). See [`crate::rights_requests`] for the model and the due-date rule.
//!
//! Each call is decided (role `dpo`; no purpose, since a ticket holds no personal data) and
//! logged like every other call; opening and closing commit the ticket together with the
//! access-log entry.

use crate::access::{Caller, Rpc};
use crate::error::{Error, InvalidInput, Result};
use crate::rights_requests::{
    RequestKind, RequestStatus, RightsRequest, due_date, validate_action, validate_reference,
};
use crate::storage::{Batch, Table};

use super::{MAX_ATTEMPTS, Vault, is_conflict, now_us, parse_id, retry_pause};

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
    /// Its due date is one calendar month after receipt.
    pub async fn open_request(
        &self,
        caller: &Caller,
        kind: &str,
        received_at_us: Option<i64>,
        subject_id: Option<&str>,
        reference: &str,
    ) -> Result<RightsRequest> {
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
            let now = now_us();
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
            Ok(ticket)
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
            let as_of = as_of_us.unwrap_or_else(now_us);
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
    /// [`crate::rights_requests::ACTIONS`], e.g. "exported" or "erased, answered").
    pub async fn close_request(
        &self,
        caller: &Caller,
        id: &str,
        action: &str,
    ) -> Result<RightsRequest> {
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
            for attempt in 0..MAX_ATTEMPTS {
                retry_pause(attempt).await;
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
                    return Err(Error::FailedPrecondition(format!(
                        "rights request {id} is already closed"
                    )));
                }
                ticket.status = RequestStatus::Closed;
                ticket.closed_at_us = Some(now_us());
                ticket.action = Some(action.clone());
                ticket.closed_by = Some(caller.client_id.clone());
                let mut b = Batch::new();
                b.check(Table::RightsRequests, id.as_bytes(), Some(&raw))
                    .put(Table::RightsRequests, id.as_bytes(), ticket.to_json()?);
                let committed = log.commit_write(&self.audit, b).await;
                if !is_conflict(&committed) {
                    return committed.map(|()| ticket);
                }
            }
            Err(Error::Contention("rights request ticket".into()))
        }
        .await;
        log.finish(&self.audit, result).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::access::Role;
    use crate::audit::AuditOptions;
    use crate::crypto::Key256;
    use crate::crypto::root_key::RootKey;
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
            .unwrap();
        assert_eq!(old.kind, RequestKind::Erasure);
        assert_eq!(old.due_at_us, due_date(old.received_at_us).unwrap());
        assert_eq!(old.subject_id.as_deref(), Some(subject.as_str()));
        assert_eq!(old.opened_by, "dpo-client");
        let fresh = v
            .open_request(&dpo, "Access", None, None, "  REF-2 ")
            .await
            .unwrap();
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

        let closed = v.close_request(&dpo, &old.id, "erased").await.unwrap();
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
            .unwrap();
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
