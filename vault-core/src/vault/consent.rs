//! Consent operations: Grant, Withdraw, Status, History.
//!
//! Withdrawal is exactly as easy as granting (same call shape, same roles plus the DPO) and
//! takes effect on the next call: every decision folds the ledger afresh.
//!
//! A basis cannot be manufactured: a grant to a person already in the file must name the
//! email or phone it came through, and it must be that person's ([`ConsentChange::through`]).
//! Withdraw, Status and History answer only for people known to the purpose (a basis, or a
//! consent event of it on record); anyone else reads as absent.

use crate::access::{Caller, Denied, Role, Rpc};
use crate::consent::ConsentStatus;
use crate::consent::ledger::{ConsentChange, ConsentEvent, ConsentKind};
use crate::crypto::IndexKind;
use crate::error::{Error, InvalidInput, Result};
use crate::journal::AccessRecord;
use crate::storage::{Batch, Table};
use crate::supporter::{LookupKey, normalize};

use super::{Vault, not_found, now_us, parse_id};
use crate::txn;

impl Vault {
    /// Records a grant of consent.
    pub async fn grant_consent(
        &self,
        caller: &Caller,
        subject_id: &str,
        change: &ConsentChange,
    ) -> Result<ConsentEvent> {
        self.change_consent(
            caller,
            Rpc::ConsentGrant,
            subject_id,
            change,
            ConsentKind::Grant,
        )
        .await
    }

    /// Records a withdrawal of consent.
    pub async fn withdraw_consent(
        &self,
        caller: &Caller,
        subject_id: &str,
        change: &ConsentChange,
    ) -> Result<ConsentEvent> {
        self.change_consent(
            caller,
            Rpc::ConsentWithdraw,
            subject_id,
            change,
            ConsentKind::Withdraw,
        )
        .await
    }

    async fn change_consent(
        &self,
        caller: &Caller,
        rpc: Rpc,
        subject_id: &str,
        change: &ConsentChange,
        kind: ConsentKind,
    ) -> Result<ConsentEvent> {
        let mut log = self.record(caller, rpc);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, rpc, &registry, None, None)?;
            let id = parse_id("subject_id", subject_id)?;
            log.subject(&id);
            // The purpose consented to: the request's, or the one the call declared.
            let purpose_id = if change.purpose.trim().is_empty() {
                caller.purpose.clone().unwrap_or_default()
            } else {
                change.purpose.trim().to_owned()
            };
            let purpose = registry.get(&purpose_id).ok_or_else(|| {
                InvalidInput::new(
                    "purpose",
                    format!("unknown purpose; known purposes: {}", registry.ids()),
                )
            })?;
            let may = caller.role == Role::Dpo || caller.allowed_purposes.contains(&purpose.id);
            if !may {
                return Err(log.denied(Denied {
                    code: crate::denial::DenialReason::PurposeNotAllowed,
                    error: Error::PermissionDenied(format!(
                        "client {} may not record consent for purpose {}",
                        caller.client_id, purpose.id
                    )),
                }));
            }
            let channel = change.resolve(purpose, kind)?;
            if kind == ConsentKind::Grant {
                self.check_collected_through(&mut log, &id, change.through.as_ref())
                    .await?;
            }
            txn::retry!(&format!("consent of supporter {id}"), {
                let loaded = self.load(&id).await?.ok_or_else(|| not_found(&id))?;
                let state = loaded.consent_state();
                self.decide(
                    &mut log,
                    caller,
                    rpc,
                    &registry,
                    Some(loaded.subject(&state)),
                    None,
                )?;
                let event = ConsentEvent {
                    subject_id: id.clone(),
                    seq: loaded.consent.len() as u64,
                    purpose: purpose.id.clone(),
                    channel,
                    kind,
                    at_us: now_us(),
                    source: change.source,
                    notice_version: change.notice_version.trim().to_owned(),
                    client_id: caller.client_id.clone(),
                };
                if kind == ConsentKind::Grant && loaded.state.objected.contains(&channel) {
                    // The caller proved it knows the person (the contact point); the id
                    // is still left out of the message.
                    return Err(log.denied(Denied {
                        code: crate::denial::DenialReason::Objected,
                        error: Error::FailedPrecondition(format!(
                            "this supporter objected to contact by {channel} (GDPR art. 21); \
                             consent on that channel cannot be recorded"
                        )),
                    }));
                }
                let mut state = loaded.state.clone();
                if kind == ConsentKind::Grant {
                    state.last_contact_us = event.at_us;
                }
                self.save_subject(
                    &mut log,
                    &loaded,
                    loaded.supporter.clone(),
                    std::slice::from_ref(&event),
                    &state,
                    Batch::new(),
                )
                .await
                .map(|_| event)
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Refuses a grant to `id` unless `through` is that person's email or phone (matched
    /// by blind index): the proof that the caller collected the consent (see
    /// [`ConsentChange::through`]). A contact point of someone else, or of no one, is
    /// answered as an absent person is.
    async fn check_collected_through(
        &self,
        log: &mut AccessRecord,
        id: &str,
        through: Option<&LookupKey>,
    ) -> Result<()> {
        let (table, hash) = match through {
            None => {
                return Err(log.denied(Denied {
                    code: crate::denial::DenialReason::NoProof,
                    error: InvalidInput::new(
                        "contact_email",
                        "Consent.Grant must name the email (contact_email) or phone \
                         (contact_phone) the consent came through; it must be the supporter's. \
                         A sign-up form can instead send the consent with its Upsert",
                    )
                    .into(),
                }));
            }
            Some(LookupKey::Email(e)) => (
                Table::EmailIndex,
                self.blind.index(IndexKind::Email, &normalize::email(e)?),
            ),
            Some(LookupKey::Phone(p)) => (
                Table::PhoneIndex,
                self.blind.index(IndexKind::Phone, &normalize::phone(p)?),
            ),
        };
        let owner = self.index_owner(table, Some(&hash)).await?;
        if owner.as_deref() == Some(id) {
            return Ok(());
        }
        Err(log.denied(Denied {
            code: crate::denial::DenialReason::NoProof,
            error: not_found(id),
        }))
    }

    /// Current consent per purpose and channel (for a campaign tool, its purposes only).
    pub async fn consent_status(
        &self,
        caller: &Caller,
        subject_id: &str,
    ) -> Result<Vec<ConsentStatus>> {
        let events = self
            .consent_events(caller, Rpc::ConsentStatus, subject_id)
            .await?;
        let state = crate::consent::ConsentState::from_events(&events);
        Ok(state.statuses().cloned().collect())
    }

    /// Every consent event, oldest first (for a campaign tool, its purposes only).
    pub async fn consent_history(
        &self,
        caller: &Caller,
        subject_id: &str,
    ) -> Result<Vec<ConsentEvent>> {
        self.consent_events(caller, Rpc::ConsentHistory, subject_id)
            .await
    }

    async fn consent_events(
        &self,
        caller: &Caller,
        rpc: Rpc,
        subject_id: &str,
    ) -> Result<Vec<ConsentEvent>> {
        let mut log = self.record(caller, rpc);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, rpc, &registry, None, None)?;
            let id = parse_id("subject_id", subject_id)?;
            log.subject(&id);
            let loaded = self.load(&id).await?.ok_or_else(|| not_found(&id))?;
            let state = loaded.consent_state();
            self.decide(
                &mut log,
                caller,
                rpc,
                &registry,
                Some(loaded.subject(&state)),
                None,
            )?;
            Ok(loaded
                .consent
                .into_iter()
                .filter(|e| {
                    caller.role == Role::Dpo || caller.allowed_purposes.contains(&e.purpose)
                })
                .collect())
        }
        .await;
        log.finish(&self.audit, result).await
    }
}
