//! Supporter operations: Upsert (with consent in the same transaction), Get, Lookup,
//! Update, Tag and Untag, each decided by purpose and consent and logged.

use std::collections::BTreeSet;

use crate::access::{Caller, Rpc, Subject};
use crate::changes::{Change, ChangeKind};
use crate::consent::ConsentState;
use crate::consent::ledger::{ConsentChange, ConsentEvent, ConsentKind};
use crate::crypto::{IndexKind, Key256};
use crate::error::{Error, InvalidInput, Result};
use crate::journal::AccessRecord;
use crate::postings;
use crate::purpose::{Purpose, Registry};
use crate::storage::{Batch, Table};
use crate::subject_state::{self, Pins, SubjectState};
use crate::supporter::normalize;
use crate::supporter::record;
use crate::supporter::{Field, FieldSet, LookupKey, Shown, Supporter, UpsertOutcome};

use super::{Loaded, Vault, not_found, now_us, parse_id};
use crate::txn;

fn index_table(kind: IndexKind) -> Table {
    match kind {
        IndexKind::Phone => Table::PhoneIndex,
        _ => Table::EmailIndex,
    }
}

/// Refuses writes of fields the purpose may not see: data collected for a purpose is limited
/// to what it needs (GDPR art. 5(1)(c)).
fn check_writable(log: &mut AccessRecord, purpose: &Purpose, written: &[Field]) -> Result<()> {
    let outside: Vec<&str> = written
        .iter()
        .filter(|f| !purpose.fields.contains(**f))
        .map(|f| f.path())
        .collect();
    if outside.is_empty() {
        return Ok(());
    }
    Err(log.denied(crate::access::Denied {
        code: crate::denial::DenialReason::FieldNotAllowed,
        error: Error::PermissionDenied(format!(
            "purpose {} may not write {}: it may see only {}",
            purpose.id,
            outside.join(", "),
            purpose
                .fields
                .iter()
                .map(|f| f.path())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }))
}

/// The answer to an upsert the person-level decision refuses. It is the same whether the
/// email or phone is new or already in the file, so an upsert does not tell a caller who is
/// in the file: a consent-based purpose needs the consent with the upsert; a refusal under
/// any other purpose (an objection or a restriction of a person already in the file) says
/// only that the data may not be recorded for it.
fn upsert_refused(purpose: &Purpose, e: Error) -> Error {
    match e {
        Error::NotFound(_) if purpose.needs_consent() => Error::PermissionDenied(format!(
            "purpose {} rests on consent: an upsert under it must carry the person's consent \
             for it (consents), and the person must not have objected to its channels",
            purpose.id
        )),
        Error::NotFound(_) => Error::PermissionDenied(format!(
            "this person's data may not be recorded under purpose {} (an objection or a \
             restriction applies; the DPO can tell)",
            purpose.id
        )),
        e => e,
    }
}

/// Consent grants that arrive with an upsert (a sign-up form), checked against the registry
/// and the client's purposes.
fn resolve_grants(
    log: &mut AccessRecord,
    caller: &Caller,
    registry: &Registry,
    grants: &[ConsentChange],
) -> Result<Vec<(String, crate::purpose::Channel, ConsentChange)>> {
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        let purpose = registry.get(&g.purpose).ok_or_else(|| {
            InvalidInput::new(
                "consents.purpose",
                format!("unknown purpose; known purposes: {}", registry.ids()),
            )
        })?;
        if !caller.allowed_purposes.contains(&purpose.id) {
            return Err(log.denied(crate::access::Denied {
                code: crate::denial::DenialReason::PurposeNotAllowed,
                error: Error::PermissionDenied(format!(
                    "client {} may not record consent for purpose {}",
                    caller.client_id, purpose.id
                )),
            }));
        }
        let channel = g.resolve(purpose, ConsentKind::Grant)?;
        out.push((purpose.id.clone(), channel, g.clone()));
    }
    Ok(out)
}

fn new_events(
    caller: &Caller,
    subject: &str,
    first_seq: u64,
    grants: &[(String, crate::purpose::Channel, ConsentChange)],
) -> Vec<ConsentEvent> {
    let at = now_us();
    grants
        .iter()
        .enumerate()
        .map(|(i, (purpose, channel, g))| ConsentEvent {
            subject_id: subject.to_owned(),
            seq: first_seq + i as u64,
            purpose: purpose.clone(),
            channel: *channel,
            kind: ConsentKind::Grant,
            at_us: at,
            source: g.source,
            notice_version: g.notice_version.trim().to_owned(),
            client_id: caller.client_id.clone(),
        })
        .collect()
}

impl Vault {
    /// Creates a supporter, or merges into the one with the same email or phone. `consents`
    /// are recorded in the same transaction (a sign-up form's consent boxes); under a
    /// consent-based purpose a new supporter needs them.
    pub async fn upsert(
        &self,
        caller: &Caller,
        input: &Supporter,
        consents: &[ConsentChange],
    ) -> Result<UpsertOutcome> {
        let mut log = self.record(caller, Rpc::SupportersUpsert);
        let result = self
            .upsert_inner(&mut log, caller, Rpc::SupportersUpsert, input, consents)
            .await;
        log.finish(&self.audit, result).await
    }

    /// Upsert as one row of `rpc` (Upsert, or a row of Import).
    pub(super) async fn upsert_inner(
        &self,
        log: &mut AccessRecord,
        caller: &Caller,
        rpc: Rpc,
        input: &Supporter,
        consents: &[ConsentChange],
    ) -> Result<UpsertOutcome> {
        let registry = self.registry().await?;
        let decision = self.decide(log, caller, rpc, &registry, None, None)?;
        let purpose = decision
            .purpose
            .ok_or_else(|| Error::Codec("no purpose".into()))?;
        let mut incoming = input.normalized()?;
        incoming.id.clear();
        incoming.created_at_us = 0;
        incoming.updated_at_us = 0;
        let written = incoming.present();
        check_writable(log, &purpose, &written)?;
        incoming.require_contact()?;
        log.fields(written.iter().fold(FieldSet::empty(), |s, f| s.with(*f)));
        let grants = resolve_grants(log, caller, &registry, consents)?;
        let email_h = self.index_of(IndexKind::Email, &incoming.email);
        let phone_h = self.index_of(IndexKind::Phone, &incoming.phone);
        txn::retry!("supporter upsert", {
            self.refuse_suppressed(log, email_h.as_ref(), phone_h.as_ref())
                .await?;
            let by_email = self
                .index_owner(Table::EmailIndex, email_h.as_ref())
                .await?;
            let by_phone = self
                .index_owner(Table::PhoneIndex, phone_h.as_ref())
                .await?;
            let target = match (by_email, by_phone) {
                // The messages name no one: the caller may have no basis for either person.
                (Some(a), Some(b)) if a != b => {
                    return Err(Error::AlreadyExists(
                        "the email and the phone belong to two different supporters; upsert \
                         with one of them, or correct one supporter with Update first"
                            .to_owned(),
                    ));
                }
                (Some(a), _) => Some(a),
                (None, Some(b)) => Some(b),
                (None, None) => None,
            };
            match target {
                None => {
                    self.create(
                        log, caller, rpc, &registry, &incoming, &grants, email_h, phone_h,
                    )
                    .await
                }
                Some(id) => {
                    log.subject(&id);
                    let Some(loaded) = self.load(&id).await? else {
                        // Removed since the index read: re-read.
                        return Err(txn::stale(Table::Records.name()));
                    };
                    if !incoming.email.is_empty()
                        && !loaded.supporter.email.is_empty()
                        && loaded.supporter.email != incoming.email
                    {
                        return Err(Error::AlreadyExists(
                            "the phone belongs to a supporter with a different email; upsert \
                             without the phone, or change that supporter with Update"
                                .to_owned(),
                        ));
                    }
                    let before = loaded.consent_state();
                    // A re-imported file re-states consents already on record: that is no
                    // new event. An Upsert (a form submitted again) records it anew.
                    let fresh: Vec<_> = grants
                        .iter()
                        .filter(|(p, c, _)| {
                            rpc != Rpc::SupportersImport || !before.is_active(p, Some(*c))
                        })
                        .cloned()
                        .collect();
                    let events = new_events(caller, &id, loaded.consent.len() as u64, &fresh);
                    let mut state = before;
                    events.iter().for_each(|e| state.apply(e));
                    // The caller came with the person's email or phone (that is how the
                    // person was found): the upsert collects the data for its purpose, so the
                    // decision counts it. Consent still needs the person's consent, carried
                    // by the upsert or on record.
                    let mut collected = loaded.state.collected_for.clone();
                    collected.insert(purpose.id.clone());
                    let subject = Subject {
                        collected_for: &collected,
                        ..loaded.subject(&state)
                    };
                    self.decide(log, caller, rpc, &registry, Some(subject), None)
                        .map_err(|e| upsert_refused(&purpose, e))?;
                    let mut merged = loaded.supporter.clone();
                    merged.merge_upsert(&incoming);
                    let mut subject_state = loaded.state.clone();
                    if merged != loaded.supporter || !events.is_empty() {
                        subject_state.last_contact_us = now_us();
                    }
                    // The caller came with the person's contact point: collected for its
                    // purpose from now on, as the decision above counted it.
                    subject_state.collected_for.insert(purpose.id.clone());
                    self.save_subject(log, &loaded, merged, &events, &subject_state, Batch::new())
                        .await
                        .map(|(_, changed)| UpsertOutcome {
                            id,
                            created: false,
                            changed,
                        })
                }
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        log: &mut AccessRecord,
        caller: &Caller,
        rpc: Rpc,
        registry: &Registry,
        incoming: &Supporter,
        grants: &[(String, crate::purpose::Channel, ConsentChange)],
        email_h: Option<[u8; 32]>,
        phone_h: Option<[u8; 32]>,
    ) -> Result<UpsertOutcome> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let events = new_events(caller, &id, 0, grants);
        let state = ConsentState::from_events(&events);
        let collected_for: BTreeSet<String> = caller.purpose.iter().cloned().collect();
        let purpose = caller
            .purpose
            .as_deref()
            .and_then(|p| registry.get(p))
            .ok_or_else(|| Error::Codec("no purpose".into()))?;
        self.decide(
            log,
            caller,
            rpc,
            registry,
            Some(Subject {
                id: &id,
                consent: &state,
                restricted: false,
                objected: &BTreeSet::new(),
                collected_for: &collected_for,
            }),
            None,
        )
        .map_err(|e| upsert_refused(purpose, e))?;
        log.subject(&id);
        let dek = Key256::generate()?;
        let now = now_us();
        let mut s = incoming.clone();
        s.id.clone_from(&id);
        s.created_at_us = now;
        s.updated_at_us = now;
        let mut b = Batch::new();
        // Pins the epoch: a rotation meanwhile fails this batch, and the retry wraps anew.
        let wrapped = self.wrap_new_subject_key(&mut b, &id, &dek).await?;
        let sealed = record::seal(&dek, &s)?;
        let pins = Pins::of(&sealed, events.len() as u64);
        b.check(Table::SubjectKeys, id.as_bytes(), None)
            .put(Table::SubjectKeys, id.as_bytes(), wrapped)
            .put(Table::Records, id.as_bytes(), sealed);
        for (table, hash) in [(Table::EmailIndex, email_h), (Table::PhoneIndex, phone_h)] {
            if let Some(h) = hash {
                // Pinning the suppression's absence too: an erasure with suppression that
                // lands between our read and this commit makes the batch fail.
                b.check(table, &h, None)
                    .check(Table::Suppressions, &h, None)
                    .put(table, &h, id.as_bytes().to_vec());
            }
        }
        self.append_consent(&mut b, &dek, &events)?;
        let subject_state = SubjectState {
            last_contact_us: now,
            collected_for,
            pins: Some(pins),
            ..SubjectState::default()
        };
        b.check(Table::SubjectState, id.as_bytes(), None).put(
            Table::SubjectState,
            id.as_bytes(),
            subject_state::seal(&dek, &id, &subject_state)?,
        );
        let terms = postings::terms(&self.blind, &s, &state, &subject_state);
        postings::diff(&mut b, &id, &BTreeSet::new(), &terms);
        let mut changes = vec![Change::new(&id, ChangeKind::Created)];
        changes.extend(events.iter().map(consent_change));
        log.changes(changes);
        log.commit_write(&self.audit, b).await?;
        Ok(UpsertOutcome {
            id,
            created: true,
            changed: true,
        })
    }

    /// Reads a supporter. The reply holds the purpose's fields, narrowed by `fields` when
    /// it is not empty.
    pub async fn get(&self, caller: &Caller, id: &str, fields: FieldSet) -> Result<Shown> {
        let mut log = self.record(caller, Rpc::SupportersGet);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, Rpc::SupportersGet, &registry, None, None)?;
            let id = parse_id("id", id)?;
            log.subject(&id);
            let loaded = self.load(&id).await?.ok_or_else(|| not_found(&id))?;
            self.read_decided(
                &mut log,
                caller,
                Rpc::SupportersGet,
                &registry,
                &loaded,
                fields,
            )
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Finds a supporter by email or phone (normalized first, so any casing or format
    /// the normalizer accepts finds the same person). The purpose must see the field used.
    pub async fn lookup(&self, caller: &Caller, key: &LookupKey) -> Result<Shown> {
        let mut log = self.record(caller, Rpc::SupportersLookup);
        let result = async {
            let registry = self.registry().await?;
            let decision = self.decide(
                &mut log,
                caller,
                Rpc::SupportersLookup,
                &registry,
                None,
                None,
            )?;
            let purpose = decision
                .purpose
                .ok_or_else(|| Error::Codec("no purpose".into()))?;
            let (table, field, hash) = match key {
                LookupKey::Email(e) => (
                    Table::EmailIndex,
                    Field::Email,
                    self.blind.index(IndexKind::Email, &normalize::email(e)?),
                ),
                LookupKey::Phone(p) => (
                    Table::PhoneIndex,
                    Field::Phone,
                    self.blind.index(IndexKind::Phone, &normalize::phone(p)?),
                ),
            };
            check_writable(&mut log, &purpose, &[field])?;
            let missing = || Error::NotFound(format!("no supporter with this {}", field.path()));
            let id = self
                .index_owner(table, Some(&hash))
                .await?
                .ok_or_else(missing)?;
            log.subject(&id);
            let loaded = self.load(&id).await?.ok_or_else(missing)?;
            // A person outside the caller's basis reads as absent, without the id.
            self.read_decided(
                &mut log,
                caller,
                Rpc::SupportersLookup,
                &registry,
                &loaded,
                FieldSet::empty(),
            )
            .map_err(|e| match e {
                Error::NotFound(_) => missing(),
                e => e,
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// The subject-level decision of a read, then the projection of the reply.
    fn read_decided(
        &self,
        log: &mut AccessRecord,
        caller: &Caller,
        rpc: Rpc,
        registry: &Registry,
        loaded: &Loaded,
        mask: FieldSet,
    ) -> Result<Shown> {
        let state = loaded.consent_state();
        let decision = self.decide(
            log,
            caller,
            rpc,
            registry,
            Some(loaded.subject(&state)),
            None,
        )?;
        let visible = if mask.is_empty() {
            decision.fields
        } else {
            decision.fields.intersect(mask)
        };
        log.fields(visible);
        Ok(loaded.supporter.shown(visible))
    }

    /// Sets the fields named by `mask` to their values in `patch` (an empty value clears
    /// the field). Index entries follow an email or phone change. A `request_ref` marks the
    /// update as a rectification (art. 16) in the access log.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        patch: &Supporter,
        mask: FieldSet,
        request_ref: &str,
    ) -> Result<Shown> {
        let mut log = self.record(caller, Rpc::SupportersUpdate);
        let result = async {
            if !request_ref.trim().is_empty() {
                log.request_ref(&super::rights::request_ref(request_ref)?);
            }
            self.update_inner(&mut log, caller, id, patch, mask).await
        }
        .await;
        log.finish(&self.audit, result).await
    }

    async fn update_inner(
        &self,
        log: &mut AccessRecord,
        caller: &Caller,
        id: &str,
        patch: &Supporter,
        mask: FieldSet,
    ) -> Result<Shown> {
        let registry = self.registry().await?;
        let decision = self.decide(log, caller, Rpc::SupportersUpdate, &registry, None, None)?;
        let purpose = decision
            .purpose
            .ok_or_else(|| Error::Codec("no purpose".into()))?;
        let id = parse_id("id", id)?;
        log.subject(&id);
        if mask.is_empty() {
            return Err(InvalidInput::new(
                "update_mask",
                "must list the fields to change, for example paths: [\"email\"]",
            )
            .into());
        }
        if let Some(ro) = mask.iter().find(|f| !f.writable()) {
            return Err(InvalidInput::new(
                "update_mask",
                format!("{} is set by the vault and cannot be updated", ro.path()),
            )
            .into());
        }
        check_writable(log, &purpose, &mask.iter().collect::<Vec<_>>())?;
        log.fields(mask);
        let mut masked = Supporter::default();
        masked.assign(patch, mask);
        let masked = masked.normalized()?;
        txn::retry!(&format!("supporter {id}"), {
            let loaded = self.load(&id).await?.ok_or_else(|| not_found(&id))?;
            let state = loaded.consent_state();
            self.decide(
                log,
                caller,
                Rpc::SupportersUpdate,
                &registry,
                Some(loaded.subject(&state)),
                None,
            )?;
            let mut next = loaded.supporter.clone();
            next.assign(&masked, mask);
            next.require_contact()?;
            self.ensure_unclaimed(&id, IndexKind::Email, &next.email)
                .await?;
            self.ensure_unclaimed(&id, IndexKind::Phone, &next.phone)
                .await?;
            // A contact point a person asked never to be contacted on again may not come
            // back through a rectification of someone else either (save pins its absence).
            let added = |kind, before: &str, after: &str| {
                (before != after)
                    .then(|| self.index_of(kind, after))
                    .flatten()
            };
            let email_h = added(IndexKind::Email, &loaded.supporter.email, &next.email);
            let phone_h = added(IndexKind::Phone, &loaded.supporter.phone, &next.phone);
            self.refuse_suppressed(log, email_h.as_ref(), phone_h.as_ref())
                .await?;
            let attempt = self.save(log, &loaded, next).await;
            attempt.map(|s| s.shown(purpose.fields))
        })
    }

    /// Adds tags to a supporter.
    pub async fn tag(&self, caller: &Caller, id: &str, tags: &[String]) -> Result<Shown> {
        self.retag(caller, Rpc::SupportersTag, id, tags).await
    }

    /// Removes tags from a supporter (tags it does not have are ignored).
    pub async fn untag(&self, caller: &Caller, id: &str, tags: &[String]) -> Result<Shown> {
        self.retag(caller, Rpc::SupportersUntag, id, tags).await
    }

    async fn retag(&self, caller: &Caller, rpc: Rpc, id: &str, tags: &[String]) -> Result<Shown> {
        let mut log = self.record(caller, rpc);
        let result = self.retag_inner(&mut log, caller, rpc, id, tags).await;
        log.finish(&self.audit, result).await
    }

    async fn retag_inner(
        &self,
        log: &mut AccessRecord,
        caller: &Caller,
        rpc: Rpc,
        id: &str,
        tags: &[String],
    ) -> Result<Shown> {
        let registry = self.registry().await?;
        let decision = self.decide(log, caller, rpc, &registry, None, None)?;
        let purpose = decision
            .purpose
            .ok_or_else(|| Error::Codec("no purpose".into()))?;
        check_writable(log, &purpose, &[Field::Tags])?;
        let id = parse_id("id", id)?;
        log.subject(&id);
        log.fields(FieldSet::empty().with(Field::Tags));
        let tags = normalize::tags(tags.iter().map(String::as_str))?;
        if tags.is_empty() {
            return Err(InvalidInput::new("tags", "must name at least one tag").into());
        }
        txn::retry!(&format!("supporter {id}"), {
            let loaded = self.load(&id).await?.ok_or_else(|| not_found(&id))?;
            let state = loaded.consent_state();
            self.decide(
                log,
                caller,
                rpc,
                &registry,
                Some(loaded.subject(&state)),
                None,
            )?;
            let mut next = loaded.supporter.clone();
            if rpc == Rpc::SupportersTag {
                next.tags.extend(tags.iter().cloned());
                if next.tags.len() > normalize::MAX_TAGS {
                    return Err(InvalidInput::new(
                        "tags",
                        format!(
                            "a supporter may carry at most {} tags; remove some first",
                            normalize::MAX_TAGS
                        ),
                    )
                    .into());
                }
            } else {
                next.tags.retain(|t| !tags.contains(t));
            }
            let attempt = self.save(log, &loaded, next).await;
            attempt.map(|s| s.shown(purpose.fields))
        })
    }

    /// Fails with `AlreadyExists` if `value` is indexed to a supporter other than `id`.
    async fn ensure_unclaimed(&self, id: &str, kind: IndexKind, value: &str) -> Result<()> {
        let table = index_table(kind);
        let owner = self
            .index_owner(table, self.index_of(kind, value).as_ref())
            .await?;
        if owner.is_some_and(|o| o != id) {
            let what = if kind == IndexKind::Email {
                "email"
            } else {
                "phone"
            };
            // No id: the caller may have no basis for the other person.
            return Err(Error::AlreadyExists(format!(
                "this {what} already belongs to another supporter"
            )));
        }
        Ok(())
    }

    /// Writes `next` over `loaded` (same consent and state).
    async fn save(
        &self,
        log: &mut AccessRecord,
        loaded: &Loaded,
        next: Supporter,
    ) -> Result<Supporter> {
        self.save_subject(log, loaded, next, &[], &loaded.state, Batch::new())
            .await
            .map(|(s, _)| s)
    }

    /// Writes the subject's next record, new consent `events` and next `state` over
    /// `loaded`, in `b` (which may already hold writes of the caller's), if nothing changed
    /// the subject meanwhile. Moves index entries and posting lists and reports the changes
    /// to the feed. Writes nothing when nothing changes; says whether it wrote.
    pub(super) async fn save_subject(
        &self,
        log: &mut AccessRecord,
        loaded: &Loaded,
        mut next: Supporter,
        events: &[ConsentEvent],
        state: &SubjectState,
        mut b: Batch,
    ) -> Result<(Supporter, bool)> {
        let old = &loaded.supporter;
        let record_changed = next != *old;
        let state_changed = state.unpinned() != loaded.state.unpinned();
        if !record_changed && !state_changed && events.is_empty() && b.ops.is_empty() {
            return Ok((next, false));
        }
        let id = old.id.as_bytes();
        // Pin everything the new postings are derived from: the record, the state row and
        // (through the event slots `append_consent` claims) the ledger.
        b.check(Table::Records, id, Some(&loaded.sealed)).check(
            Table::SubjectState,
            id,
            loaded.state_sealed.as_deref(),
        );
        if record_changed {
            next.updated_at_us = now_us().max(old.updated_at_us);
        }
        // Every write re-seals the record (a fresh ciphertext) and pins it, with the
        // ledger's new length, from the state: a row of this person put back from an older
        // copy, or a ledger cut short, then no longer matches (`subject_state::Pins`).
        let sealed = record::seal(&loaded.dek, &next)?;
        let consent_len = (loaded.consent.len() + events.len()) as u64;
        let pinned = SubjectState {
            pins: Some(Pins::of(&sealed, consent_len)),
            ..state.clone()
        };
        b.put(Table::Records, id, sealed).put(
            Table::SubjectState,
            id,
            subject_state::seal(&loaded.dek, &old.id, &pinned)?,
        );
        for (kind, before, after) in [
            (IndexKind::Email, &old.email, &next.email),
            (IndexKind::Phone, &old.phone, &next.phone),
        ] {
            if before == after {
                continue;
            }
            let table = index_table(kind);
            if let Some(h) = self.index_of(kind, before) {
                b.check(table, &h, Some(id)).delete(table, &h);
            }
            if let Some(h) = self.index_of(kind, after) {
                // A suppression landing after our read makes the batch fail.
                b.check(table, &h, None)
                    .check(Table::Suppressions, &h, None)
                    .put(table, &h, id.to_vec());
            }
        }
        self.append_consent(&mut b, &loaded.dek, events)?;
        let mut consent = loaded.consent_state();
        events.iter().for_each(|e| consent.apply(e));
        let before = loaded.terms(&self.blind);
        let after = postings::terms(&self.blind, &next, &consent, state);
        postings::diff(&mut b, &old.id, &before, &after);
        let mut changes = describe_changes(old, &next, events, &loaded.state, state);
        self.note_basis_before(loaded, &mut changes).await?;
        log.changes(changes);
        log.commit_write(&self.audit, b).await?;
        Ok((next, true))
    }

    /// Refuses an email or phone a person asked never to be contacted on again.
    async fn refuse_suppressed(
        &self,
        log: &mut AccessRecord,
        email_h: Option<&[u8; 32]>,
        phone_h: Option<&[u8; 32]>,
    ) -> Result<()> {
        for (what, h) in [("email", email_h), ("phone", phone_h)] {
            let Some(h) = h else { continue };
            if self.store.get(Table::Suppressions, h).await?.is_some() {
                return Err(log.denied(crate::access::Denied {
                    code: crate::denial::DenialReason::Suppressed,
                    error: Error::FailedPrecondition(format!(
                        "the person with this {what} objected to any further contact (their \
                         data was erased or suppressed at their request); it may not be added \
                         again"
                    )),
                }));
            }
        }
        Ok(())
    }
}

/// The feed's view of a consent event.
pub(super) fn consent_change(e: &ConsentEvent) -> Change {
    Change {
        subject_id: e.subject_id.clone(),
        kind: match e.kind {
            ConsentKind::Grant => ChangeKind::ConsentGranted,
            ConsentKind::Withdraw => ChangeKind::ConsentWithdrawn,
        },
        purpose: Some(e.purpose.clone()),
        channel: Some(e.channel),
        basis_before: None,
    }
}

/// What a write of a subject changed, for the feed.
fn describe_changes(
    old: &Supporter,
    next: &Supporter,
    events: &[ConsentEvent],
    old_state: &SubjectState,
    state: &SubjectState,
) -> Vec<Change> {
    let id = &old.id;
    let mut out = Vec::new();
    let mut same_tags = next.clone();
    same_tags.tags.clone_from(&old.tags);
    same_tags.updated_at_us = old.updated_at_us;
    if same_tags != *old {
        out.push(Change::new(id, ChangeKind::Updated));
    }
    if !next.tags.is_subset(&old.tags) {
        out.push(Change::new(id, ChangeKind::Tagged));
    }
    if !old.tags.is_subset(&next.tags) {
        out.push(Change::new(id, ChangeKind::Untagged));
    }
    out.extend(events.iter().map(consent_change));
    if state.restricted != old_state.restricted {
        out.push(Change::new(
            id,
            if state.restricted {
                ChangeKind::Restricted
            } else {
                ChangeKind::Unrestricted
            },
        ));
    }
    for c in state.objected.difference(&old_state.objected) {
        out.push(Change {
            channel: Some(*c),
            ..Change::new(id, ChangeKind::Objected)
        });
    }
    out
}
