//! Data-subject rights for the DPO: export (art. 15, 20), erasure by crypto-shredding
//! (art. 17), restriction (art. 18) and objection (art. 21), and the replay of the erasure
//! journal after a restore.
//!
//! Erasure deletes, in one transaction, the wrapped subject key, the record, the consent
//! ledger, the rights state, the blind-index entries and the posting lists, and keeps an
//! erasure receipt (ids, time, request reference, DPO client: no personal data) in the
//! erasure journal. Stale copies (old storage pages, backups) still hold the subject key
//! wrapped under an older key epoch; rotation and the destruction of that epoch make them
//! undecryptable (see SECURITY.md for the bound).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::{Caller, Role, Rpc};
use crate::changes::{Change, ChangeKind};
use crate::consent::ledger::{self as consent_ledger, ConsentEvent, ConsentKind, ConsentSource};
use crate::crypto::IndexKind;
use crate::error::{Error, IntegrityObject, Result};
use crate::journal::AccessRecord;
use crate::postings;
use crate::purpose::{Channel, DPO_PURPOSE};
use crate::storage::{Batch, Table};
use crate::supporter::normalize;

use super::tickets::Answer;
use super::{Loaded, Vault, now_us, parse_id};
use crate::txn;

/// Export document schema written by this build (docs/rights-export.md).
pub const EXPORT_SCHEMA: &str = "vault.rights.export/1";

/// What remains of an erasure: no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// Receipt id.
    pub receipt_id: String,
    /// The erased subject.
    pub subject_id: String,
    /// When, microseconds since the Unix epoch.
    pub erased_at_us: i64,
    /// The rights request answered (`retention-sweep` for the sweep).
    pub request_ref: String,
    /// The client that erased.
    pub client_id: String,
    /// Whether the email and phone HMACs were kept to refuse re-import.
    pub suppressed: bool,
}

/// A subject's rights state as the DPO sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightsState {
    /// Subject id.
    pub subject_id: String,
    /// Processing restricted.
    pub restricted: bool,
    /// Channels objected to.
    pub objected: Vec<Channel>,
    /// Re-import refused.
    pub suppressed: bool,
}

/// Who an export is for.
#[derive(Debug, Clone)]
pub enum ExportKey {
    /// By subject id.
    Id(String),
    /// By email (normalized first).
    Email(String),
}

/// Validates a request reference (required for every DPO action that changes data): a
/// ticket id or number, never free text ([`crate::rights_requests::validate_reference`]).
pub(super) fn request_ref(raw: &str) -> Result<String> {
    crate::rights_requests::validate_reference("request_ref", raw)
}

fn rights_state(loaded_id: &str, s: &crate::subject_state::SubjectState) -> RightsState {
    RightsState {
        subject_id: loaded_id.to_owned(),
        restricted: s.restricted,
        objected: s.objected.iter().copied().collect(),
        suppressed: s.suppressed,
    }
}

fn rfc3339(us: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

impl Vault {
    /// Erases a supporter by crypto-shredding (see the module docs). With `suppress`, only
    /// the HMACs of the email and phone are kept, so they can never be added again. Erasing
    /// an already erased supporter returns the original receipt.
    pub async fn erase(
        &self,
        caller: &Caller,
        subject_id: &str,
        request_ref: &str,
        suppress: bool,
    ) -> Result<ErasureReceipt> {
        let mut log = self.record(caller, Rpc::RightsErase);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, Rpc::RightsErase, &registry, None, None)?;
            let id = parse_id("subject_id", subject_id)?;
            log.subject(&id);
            let reference = self::request_ref(request_ref)?;
            log.request_ref(&reference);
            txn::retry!(&format!("erasure of supporter {id}"), {
                let Some(loaded) = self.load(&id).await? else {
                    return match self.erasure_receipt(&id).await? {
                        Some(receipt) => Ok(receipt),
                        None => Err(super::not_found(&id)),
                    };
                };
                let state = loaded.consent_state();
                self.decide(
                    &mut log,
                    caller,
                    Rpc::RightsErase,
                    &registry,
                    Some(loaded.subject(&state)),
                    None,
                )?;
                let receipt = ErasureReceipt {
                    receipt_id: uuid::Uuid::new_v4().hyphenated().to_string(),
                    subject_id: id.clone(),
                    erased_at_us: now_us(),
                    request_ref: reference.clone(),
                    client_id: caller.client_id.clone(),
                    suppressed: suppress || loaded.state.suppressed,
                };
                let mut b = Batch::new();
                self.ticket_answered(&mut b, caller, &reference, Answer::ERASE, &id)
                    .await?;
                let attempt = self.erase_loaded(&mut log, &loaded, &receipt, b).await;
                attempt.map(|()| receipt)
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// The receipt of an erased subject, if it was erased.
    pub(super) async fn erasure_receipt(&self, id: &str) -> Result<Option<ErasureReceipt>> {
        self.store
            .get(Table::Erasures, id.as_bytes())
            .await?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|_| Error::Integrity(IntegrityObject::Metadata("erasure journal")))
            })
            .transpose()
    }

    /// Commits the erasure of `loaded` with its receipt (and the log entry of `log`), with
    /// what `b` already holds (the closing of the rights request it answers).
    pub(super) async fn erase_loaded(
        &self,
        log: &mut AccessRecord,
        loaded: &Loaded,
        receipt: &ErasureReceipt,
        mut b: Batch,
    ) -> Result<()> {
        let id = loaded.supporter.id.as_str();
        let key = id.as_bytes();
        b.check(Table::SubjectKeys, key, Some(&loaded.wrapped))
            .delete(Table::SubjectKeys, key)
            .check(Table::Records, key, Some(&loaded.sealed))
            .delete(Table::Records, key)
            .check(Table::SubjectState, key, loaded.state_sealed.as_deref())
            .delete(Table::SubjectState, key);
        let n = loaded.consent.len() as u64;
        for seq in 0..n {
            b.delete(Table::Consent, &consent_ledger::event_key(id, seq));
        }
        b.check(Table::Consent, &consent_ledger::event_key(id, n), None);
        let s = &loaded.supporter;
        for (kind, table, value) in [
            (IndexKind::Email, Table::EmailIndex, &s.email),
            (IndexKind::Phone, Table::PhoneIndex, &s.phone),
        ] {
            if let Some(h) = self.index_of(kind, value) {
                b.check(table, &h, Some(key)).delete(table, &h);
                if receipt.suppressed {
                    b.put(
                        Table::Suppressions,
                        &h,
                        suppression_note(receipt.erased_at_us)?,
                    );
                }
            }
        }
        postings::diff(
            &mut b,
            id,
            &loaded.terms(&self.blind),
            &std::collections::BTreeSet::new(),
        );
        b.check(Table::Erasures, key, None).put(
            Table::Erasures,
            key,
            serde_json::to_vec(receipt).map_err(|e| Error::Codec(e.to_string()))?,
        );
        // The person's earlier change-feed rows collapse into the `erased` this write adds:
        // the feed keeps that they were erased, not their history.
        self.collapse_feed(&mut b, id).await?;
        let mut changes = vec![Change::new(id, ChangeKind::Erased)];
        self.note_basis_before(loaded, &mut changes).await?;
        log.changes(changes);
        log.commit_write(&self.audit, b).await
    }

    /// Adds to `b` the deletion of every change-feed row about `id`. The rows are found
    /// through the access log's subject index (every change is written with an entry naming
    /// its subject), and each is decoded and must be about `id` before it goes.
    async fn collapse_feed(&self, b: &mut Batch, id: &str) -> Result<()> {
        for seq in self.audit.subject_seqs(id).await? {
            for (key, value) in self
                .store
                .scan_prefix(Table::Changes, &seq.to_be_bytes())
                .await?
            {
                if crate::changes::decode(&key, &value).is_some_and(|e| e.change.subject_id == id) {
                    b.delete(Table::Changes, &key);
                }
            }
        }
        Ok(())
    }

    /// Restricts processing of a supporter's data (`on`), or lifts the restriction.
    pub async fn restrict(
        &self,
        caller: &Caller,
        subject_id: &str,
        request_ref: &str,
        on: bool,
    ) -> Result<RightsState> {
        let rpc = if on {
            Rpc::RightsRestrict
        } else {
            Rpc::RightsUnrestrict
        };
        let answer = if on {
            Answer::RESTRICT
        } else {
            Answer::UNRESTRICT
        };
        self.change_rights_state(
            caller,
            rpc,
            answer,
            subject_id,
            request_ref,
            |reference, state, _| {
                state.restricted = on;
                state.restricted_ref = on.then(|| reference.to_owned());
                Ok(Vec::new())
            },
        )
        .await
    }

    /// Records an objection on `channels` (every channel when empty: an objection to direct
    /// marketing as a whole, which also suppresses re-import). Every active consent on those
    /// channels is withdrawn in the same transaction.
    pub async fn object(
        &self,
        caller: &Caller,
        subject_id: &str,
        channels: &[Channel],
        request_ref: &str,
    ) -> Result<RightsState> {
        let all = channels.is_empty() || Channel::ALL.iter().all(|c| channels.contains(c));
        let chosen: Vec<Channel> = if channels.is_empty() {
            Channel::ALL.to_vec()
        } else {
            channels.to_vec()
        };
        let client = caller.client_id.clone();
        self.change_rights_state(
            caller,
            Rpc::RightsObject,
            Answer::OBJECT,
            subject_id,
            request_ref,
            move |reference, state, loaded| {
                state.objected.extend(chosen.iter().copied());
                if all {
                    state.suppressed = true;
                }
                let consent = loaded.consent_state();
                let at = now_us();
                let first = loaded.consent.len() as u64;
                let mut events = Vec::new();
                for (i, s) in consent
                    .statuses()
                    .filter(|s| s.active && chosen.contains(&s.channel))
                    .enumerate()
                {
                    events.push(ConsentEvent {
                        subject_id: loaded.supporter.id.clone(),
                        seq: first + i as u64,
                        purpose: s.purpose.clone(),
                        channel: s.channel,
                        kind: ConsentKind::Withdraw,
                        at_us: at,
                        source: ConsentSource::Other,
                        notice_version: format!("objection {reference}"),
                        client_id: client.clone(),
                    });
                }
                Ok(events)
            },
        )
        .await
    }

    async fn change_rights_state(
        &self,
        caller: &Caller,
        rpc: Rpc,
        answer: Answer,
        subject_id: &str,
        request_ref: &str,
        change: impl Fn(
            &str,
            &mut crate::subject_state::SubjectState,
            &Loaded,
        ) -> Result<Vec<ConsentEvent>>,
    ) -> Result<RightsState> {
        let mut log = self.record(caller, rpc);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, rpc, &registry, None, None)?;
            let id = parse_id("subject_id", subject_id)?;
            log.subject(&id);
            let reference = self::request_ref(request_ref)?;
            log.request_ref(&reference);
            txn::retry!(&format!("supporter {id}"), {
                let loaded = self.load(&id).await?.ok_or_else(|| super::not_found(&id))?;
                let consent = loaded.consent_state();
                self.decide(
                    &mut log,
                    caller,
                    rpc,
                    &registry,
                    Some(loaded.subject(&consent)),
                    None,
                )?;
                let mut state = loaded.state.clone();
                let events = change(&reference, &mut state, &loaded)?;
                let mut b = Batch::new();
                self.ticket_answered(&mut b, caller, &reference, answer, &id)
                    .await?;
                if state.suppressed && !loaded.state.suppressed {
                    let s = &loaded.supporter;
                    for (kind, value) in
                        [(IndexKind::Email, &s.email), (IndexKind::Phone, &s.phone)]
                    {
                        if let Some(h) = self.index_of(kind, value) {
                            b.put(Table::Suppressions, &h, suppression_note(now_us())?);
                        }
                    }
                }
                self.save_subject(
                    &mut log,
                    &loaded,
                    loaded.supporter.clone(),
                    &events,
                    &state,
                    b,
                )
                .await
                .map(|_| rights_state(&id, &state))
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// The person's whole file as one JSON document (schema `EXPORT_SCHEMA`): every stored
    /// field, the consent history and state, the rights state, the purposes with their basis
    /// and retention, every access-log entry about the person (the recipients, art. 15(1)(c))
    /// and their rights requests. Returns the subject id and the document.
    pub async fn export(&self, caller: &Caller, key: &ExportKey) -> Result<(String, Vec<u8>)> {
        let mut log = self.record(caller, Rpc::RightsExport);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, Rpc::RightsExport, &registry, None, None)?;
            let id = match key {
                ExportKey::Id(id) => parse_id("subject_id", id)?,
                ExportKey::Email(email) => {
                    let h = self
                        .blind
                        .index(IndexKind::Email, &normalize::email(email)?);
                    self.index_owner(Table::EmailIndex, Some(&h))
                        .await?
                        .ok_or_else(|| Error::NotFound("no supporter with this email".into()))?
                }
            };
            log.subject(&id);
            let loaded = self
                .load(&id)
                .await?
                .ok_or_else(|| super::not_found(&id))?;
            let consent = loaded.consent_state();
            self.decide(
                &mut log,
                caller,
                Rpc::RightsExport,
                &registry,
                Some(loaded.subject(&consent)),
                None,
            )?;
            log.fields(crate::supporter::FieldSet::all());
            let s = &loaded.supporter;
            let purposes: Vec<Value> = registry
                .iter()
                .filter(|p| p.id != DPO_PURPOSE)
                .map(|p| {
                    let applies = if p.needs_consent() {
                        consent.is_active(&p.id, None)
                    } else {
                        loaded.state.collected_for.contains(&p.id)
                    };
                    json!({
                        "id": p.id,
                        "description": p.description,
                        "lawful_basis": p.lawful_basis.as_str(),
                        "special_category_basis": p.special_category_basis.as_str(),
                        "channels": p.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                        "retention_days": p.retention_days,
                        "fields": p.fields.iter().map(|f| f.path()).collect::<Vec<_>>(),
                        "applies_to_you": applies,
                    })
                })
                .collect();
            let size = self.audit.size().await;
            // Through the per-subject index: the person's entries only, each checked.
            let accesses: Vec<Value> = self
                .audit
                .subject_entries(&id, 0, size)
                .await?
                .into_iter()
                .map(|(_, e)| {
                    json!({
                        "seq": e.seq,
                        "at": rfc3339(e.at_us),
                        "client": e.client,
                        "role": e.role,
                        "action": e.rpc,
                        "purpose": e.purpose,
                        "fields": e.fields,
                        "outcome": e.outcome,
                        "reason": e.reason,
                        "request_ref": e.request_ref,
                    })
                })
                .collect();
            let clients: std::collections::BTreeMap<String, String> = self
                .store
                .scan_prefix(Table::Clients, b"")
                .await?
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_slice::<crate::client::Client>(&v).ok())
                .map(|c| (c.id, c.name))
                .collect();
            let requests: Vec<Value> = self
                .store
                .scan_prefix(Table::RightsRequests, b"")
                .await?
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_slice::<Value>(&v).ok())
                .filter(|v| v.get("subject_id").and_then(Value::as_str) == Some(id.as_str()))
                .collect();
            let doc = json!({
                "schema": EXPORT_SCHEMA,
                "generated_at": rfc3339(now_us()),
                "subject_id": id,
                "data": {
                    "given_name": s.given_name,
                    "family_name": s.family_name,
                    "email": s.email,
                    "phone": s.phone,
                    "address": {
                        "line1": s.address.line1,
                        "line2": s.address.line2,
                        "postcode": s.address.postcode,
                        "city": s.address.city,
                        "country": s.address.country,
                    },
                    "tags": s.tags,
                    "custom": s.custom,
                    "source": s.source,
                    "created_at": rfc3339(s.created_at_us),
                    "updated_at": rfc3339(s.updated_at_us),
                },
                "consent_history": loaded.consent.iter().map(|e| json!({
                    "seq": e.seq,
                    "purpose": e.purpose,
                    "channel": e.channel.as_str(),
                    "kind": match e.kind { ConsentKind::Grant => "grant", ConsentKind::Withdraw => "withdraw" },
                    "at": rfc3339(e.at_us),
                    "source": e.source.as_str(),
                    "notice_version": e.notice_version,
                    "client": e.client_id,
                })).collect::<Vec<_>>(),
                "consent_state": consent.statuses().map(|c| json!({
                    "purpose": c.purpose,
                    "channel": c.channel.as_str(),
                    "active": c.active,
                    "since": rfc3339(c.last_event.1),
                })).collect::<Vec<_>>(),
                "rights_state": {
                    "restricted": loaded.state.restricted,
                    "objected_channels": loaded.state.objected.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                    "suppressed": loaded.state.suppressed,
                    "last_contact_at": rfc3339(loaded.state.last_contact_us.max(s.created_at_us)),
                    "collected_for": loaded.state.collected_for,
                },
                "purposes": purposes,
                "recipients": clients,
                "access_log": accesses,
                "rights_requests": requests,
            });
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Codec(e.to_string()))?;
            Ok((id, bytes))
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Replays an erasure journal (rows of [`Table::Erasures`] read from a store before it
    /// was replaced by a backup): every subject erased there and present here is erased
    /// again, with the original receipt, so a restore never brings an erased person back.
    /// Returns how many subjects were erased.
    pub async fn replay_erasures(&self, journal: Vec<(Vec<u8>, Vec<u8>)>) -> Result<u64> {
        let system = Caller {
            client_id: "system-restore".to_owned(),
            role: Role::Dpo,
            allowed_purposes: std::collections::BTreeSet::new(),
            purpose: Some(DPO_PURPOSE.to_owned()),
            request_id: uuid::Uuid::new_v4().simple().to_string(),
        };
        let mut erased = 0;
        for (_, bytes) in journal {
            let receipt: ErasureReceipt = serde_json::from_slice(&bytes)
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("erasure journal")))?;
            let id = parse_id("erasure journal", &receipt.subject_id)?;
            // A replay that keeps losing races fails the restore rather than skipping a
            // person: an erasure is never silently left undone.
            let replayed = txn::retry!("erasure replay", {
                let mut log = self.record(&system, Rpc::RightsErase);
                log.subject(&id);
                log.request_ref(&receipt.request_ref);
                match self.load(&id).await? {
                    Some(loaded) => self
                        .erase_loaded(&mut log, &loaded, &receipt, Batch::new())
                        .await
                        .map(|()| true),
                    None if self.erasure_receipt(&id).await?.is_none() => {
                        // Erased before the backup was even taken, or never in it: keep the
                        // journal whole all the same.
                        let mut b = Batch::new();
                        b.check(Table::Erasures, id.as_bytes(), None).put(
                            Table::Erasures,
                            id.as_bytes(),
                            bytes.clone(),
                        );
                        self.store
                            .commit(b)
                            .await
                            .map(|()| false)
                            .map_err(Error::from)
                    }
                    None => Ok(false),
                }
            })?;
            if replayed {
                erased += 1;
            }
        }
        Ok(erased)
    }
}

fn suppression_note(at_us: i64) -> Result<Vec<u8>> {
    serde_json::to_vec(&json!({ "at_us": at_us })).map_err(|e| Error::Codec(e.to_string()))
}
