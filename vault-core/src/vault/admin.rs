//! Administration: the bootstrap credential, client authentication, clients and the
//! purpose registry. None of it touches personal data; what would widen access to it (a
//! client that reads it, a purpose that shows more) is refused here and goes through a
//! proposal and a second admin's approval instead (`approval.rs`, [`crate::proposal`]).

use std::collections::BTreeSet;

use zeroize::Zeroizing;

use crate::access::{BOOTSTRAP_ADMIN_ID, Caller, Denied, Role, Rpc};
use crate::client::{self, Client};
use crate::credentials::{self, TokenHash};
use crate::error::{Error, IntegrityObject, InvalidInput, Result};
use crate::journal::AccessRecord;
use crate::proposal::{Change, ProposedClient, needs_second_admin};
use crate::purpose::{self, DPO_PURPOSE, Purpose, Registry};
use crate::storage::schema::meta;
use crate::storage::{Batch, StoreError, Table};

use crate::txn;

use super::{Vault, now_us};

pub(super) fn purpose_json(p: &Purpose) -> Result<Vec<u8>> {
    serde_json::to_vec(p).map_err(|e| Error::Codec(e.to_string()))
}

fn client_json(c: &StoredClient) -> Result<Vec<u8>> {
    serde_json::to_vec(c).map_err(|e| Error::Codec(e.to_string()))
}

/// A client as stored: the public record and the hash of its token.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct StoredClient {
    pub(super) client: Client,
    pub(super) token_sha256: String,
}

/// The refusal of a one-admin change that widens access to personal data.
pub(super) fn needs_approval(log: &mut AccessRecord, why: &[String], how: &str) -> Error {
    log.denied(Denied {
        code: crate::denial::DenialReason::NeedsSecondAdmin,
        error: Error::PermissionDenied(format!(
            "this change widens access to personal data ({}), so it needs a second admin: \
             propose it with Admin.ProposeChange ({how}), and another admin approves it with \
             Admin.ApproveProposal (vaultctl admin approve <id>)",
            why.join("; ")
        )),
    })
}

/// The row key of a certificate fingerprint (64 hex digits, normalized) in
/// [`Table::ClientCerts`].
fn cert_key(fp: &str) -> Result<Vec<u8>> {
    hex::decode(fp).map_err(|_| Error::Integrity(IntegrityObject::Metadata("client certificate")))
}

/// A client ready to be created (or proposed): validated, with a fresh token.
pub(super) struct NewClient {
    pub(super) stored: StoredClient,
    pub(super) token: Zeroizing<String>,
}

impl Vault {
    // ---- bootstrap and authentication ----------------------------------------------

    /// Creates the bootstrap admin client (`bootstrap-admin`, role admin) once per store.
    /// `persist` receives the token and must store it for the operator (the daemon writes
    /// `admin.token`) before the client is committed, so a crash in between leaves no
    /// credential nobody holds. Returns `false` if the store already had one (created
    /// earlier, or concurrently by another daemon sharing the store).
    pub async fn create_bootstrap_admin<F>(&self, persist: F) -> Result<bool>
    where
        F: FnOnce(&str) -> Result<()>,
    {
        if self
            .store
            .get(Table::Meta, meta::BOOTSTRAP_ADMIN_CREATED)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let token: Zeroizing<String> = credentials::new_token()?;
        persist(&token)?;
        let stored = StoredClient {
            client: Client {
                id: BOOTSTRAP_ADMIN_ID.to_owned(),
                name: BOOTSTRAP_ADMIN_ID.to_owned(),
                role: Role::Admin,
                purposes: BTreeSet::new(),
                created_at_us: now_us(),
                revoked_at_us: None,
                cert_sha256: None,
                expires_at_us: None,
            },
            token_sha256: hex::encode(TokenHash::of(&token).0),
        };
        let mut b = Batch::new();
        b.check(Table::Meta, meta::BOOTSTRAP_ADMIN_CREATED, None)
            .put(Table::Meta, meta::BOOTSTRAP_ADMIN_CREATED, b"1".to_vec());
        self.put_client(&mut b, &stored, None)?;
        match self.store.commit(b).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn put_client(
        &self,
        b: &mut Batch,
        stored: &StoredClient,
        expect: Option<&[u8]>,
    ) -> Result<()> {
        let id = stored.client.id.as_bytes();
        let token_key = hex::decode(&stored.token_sha256)
            .map_err(|_| Error::Integrity(IntegrityObject::Metadata("client token hash")))?;
        b.check(Table::Clients, id, expect)
            .put(Table::Clients, id, client_json(stored)?);
        // A new client claims its certificate's fingerprint, which must be free; the row is
        // kept after a revocation, so a fingerprint is never handed to a second client.
        if let (None, Some(fp)) = (expect, &stored.client.cert_sha256) {
            let key = cert_key(fp)?;
            b.check(Table::ClientCerts, &key, None)
                .put(Table::ClientCerts, &key, id.to_vec());
        }
        if stored.client.is_active() {
            b.check(
                Table::ClientTokens,
                &token_key,
                if expect.is_some() { Some(id) } else { None },
            )
            .put(Table::ClientTokens, &token_key, id.to_vec());
        } else {
            b.delete(Table::ClientTokens, &token_key);
        }
        Ok(())
    }

    pub(super) async fn stored_client(&self, id: &str) -> Result<Option<(StoredClient, Vec<u8>)>> {
        match self.store.get(Table::Clients, id.as_bytes()).await? {
            None => Ok(None),
            Some(raw) => {
                let c: StoredClient = serde_json::from_slice(&raw)
                    .map_err(|_| Error::Integrity(IntegrityObject::Metadata("client record")))?;
                Ok(Some((c, raw)))
            }
        }
    }

    /// The active client holding `token`. Hashes the token and looks the hash up; the
    /// stored hash is compared in constant time before the client is accepted.
    pub async fn authenticate(&self, token: &str) -> Result<Client> {
        let refused = || {
            Error::Unauthenticated("invalid credentials: the token is unknown or revoked".into())
        };
        let hash = TokenHash::of(token);
        let Some(id) = self.store.get(Table::ClientTokens, &hash.0).await? else {
            return Err(refused());
        };
        let id = String::from_utf8(id).map_err(|_| refused())?;
        let (stored, _) = self.stored_client(&id).await?.ok_or_else(refused)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(&stored.token_sha256, &mut expected).map_err(|_| refused())?;
        if !stored.client.is_active() || !TokenHash(expected).matches(token) {
            return Err(refused());
        }
        // Said only to the token's holder: the token matched.
        if stored.client.has_expired(now_us()) {
            return Err(expired());
        }
        Ok(stored.client)
    }

    /// The client `id` if it still holds: registered, not revoked, not expired. Calls that
    /// act long on one authentication (a `Supporters.Watch` stream) ask again as they run,
    /// so a revocation on any daemon sharing the store ends them too.
    pub async fn client_in_force(&self, id: &str) -> Result<Client> {
        let refused = || {
            Error::Unauthenticated(
                "invalid credentials: the client was revoked or is no longer registered".into(),
            )
        };
        let (stored, _) = self.stored_client(id).await?.ok_or_else(refused)?;
        if !stored.client.is_active() {
            return Err(refused());
        }
        if stored.client.has_expired(now_us()) {
            return Err(expired());
        }
        Ok(stored.client)
    }

    /// The active client whose TLS certificate has this SHA-256 fingerprint.
    pub async fn authenticate_certificate(&self, fingerprint: &str) -> Result<Client> {
        let fp = client::normalize_fingerprint(fingerprint)?;
        for (_, raw) in self.store.scan_prefix(Table::Clients, b"").await? {
            let stored: StoredClient = serde_json::from_slice(&raw)
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("client record")))?;
            let matches =
                stored.client.cert_sha256.as_deref().is_some_and(|c| {
                    subtle::ConstantTimeEq::ct_eq(c.as_bytes(), fp.as_bytes()).into()
                });
            if matches && stored.client.is_active() {
                if stored.client.has_expired(now_us()) {
                    return Err(expired());
                }
                return Ok(stored.client);
            }
        }
        Err(Error::Unauthenticated(
            "the client certificate is not registered to an active client".into(),
        ))
    }

    // ---- clients ---------------------------------------------------------------------

    /// Validates a client to create (or propose) and makes its token: name, purposes
    /// against the registry, certificate fingerprint (free), expiry (ahead).
    pub(super) async fn new_client(
        &self,
        registry: &Registry,
        name: &str,
        role: Role,
        purposes: &[String],
        cert_sha256: Option<&str>,
        expires_at_us: Option<i64>,
    ) -> Result<NewClient> {
        client::validate_name(name)?;
        let purposes = client_purposes(registry, role, purposes)?;
        let cert = cert_sha256
            .filter(|c| !c.trim().is_empty())
            .map(client::normalize_fingerprint)
            .transpose()?;
        if expires_at_us.is_some_and(|at| at <= now_us()) {
            return Err(InvalidInput::new(
                "expires_at",
                "must be in the future (leave it unset for a client that does not expire)",
            )
            .into());
        }
        if let Some(fp) = &cert {
            self.check_cert_free(fp).await?;
        }
        let token = credentials::new_token()?;
        let client = Client {
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            name: name.to_owned(),
            role,
            purposes,
            created_at_us: now_us(),
            revoked_at_us: None,
            cert_sha256: cert,
            expires_at_us,
        };
        Ok(NewClient {
            stored: StoredClient {
                client,
                token_sha256: hex::encode(TokenHash::of(&token).0),
            },
            token,
        })
    }

    /// Refuses a certificate fingerprint already registered to a client: by the index, or,
    /// for clients registered before the index existed, by their records.
    pub(super) async fn check_cert_free(&self, fp: &str) -> Result<()> {
        let owner = match self.store.get(Table::ClientCerts, &cert_key(fp)?).await? {
            Some(id) => Some(String::from_utf8_lossy(&id).into_owned()),
            None => self
                .clients()
                .await?
                .into_iter()
                .find(|c| c.cert_sha256.as_deref() == Some(fp))
                .map(|c| c.id),
        };
        match owner {
            None => Ok(()),
            Some(id) => Err(Error::AlreadyExists(format!(
                "the certificate with this cert_sha256 fingerprint is already registered to \
                 client {id}; a certificate identifies one client only, even once revoked: \
                 issue a new certificate"
            ))),
        }
    }

    /// Active admin clients whose credentials have not expired, with their stored bytes.
    pub(super) async fn active_admins(&self) -> Result<Vec<(Client, Vec<u8>)>> {
        let now = now_us();
        let mut out = Vec::new();
        for (_, raw) in self.store.scan_prefix(Table::Clients, b"").await? {
            let stored: StoredClient = serde_json::from_slice(&raw)
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("client record")))?;
            if stored.client.role == Role::Admin
                && stored.client.is_active()
                && !stored.client.has_expired(now)
            {
                out.push((stored.client, raw));
            }
        }
        Ok(out)
    }

    /// Registers a client; returns it with its token, which is shown this once. A client
    /// that reads personal data (dpo, campaign tool), or a third admin, needs a second
    /// admin: refused here, proposed with [`Vault::propose_client`].
    pub async fn create_client(
        &self,
        caller: &Caller,
        name: &str,
        role: Role,
        purposes: &[String],
        cert_sha256: Option<&str>,
        expires_at_us: Option<i64>,
    ) -> Result<(Client, Zeroizing<String>)> {
        let mut log = self.record(caller, Rpc::AdminCreateClient);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminCreateClient,
                &registry,
                None,
                None,
            )?;
            txn::retry!("client creation", {
                let new = self
                    .new_client(&registry, name, role, purposes, cert_sha256, expires_at_us)
                    .await?;
                let admins = self.active_admins().await?.len();
                let change = Change::CreateClient(ProposedClient {
                    client: new.stored.client.clone(),
                    token_sha256: new.stored.token_sha256.clone(),
                });
                let why = needs_second_admin(&change, admins);
                if !why.is_empty() {
                    return Err(needs_approval(
                        &mut log,
                        &why,
                        "vaultctl admin propose-client",
                    ));
                }
                let mut b = Batch::new();
                self.put_client(&mut b, &new.stored, None)?;
                // A conflict is a concurrent registration of the same certificate: the next
                // attempt sees it and says so.
                let attempt = log.commit_write(&self.audit, b).await;
                attempt.map(|()| (new.stored.client, new.token))
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Revokes a client: its token is refused from the next call on.
    pub async fn revoke_client(&self, caller: &Caller, id: &str) -> Result<Client> {
        let mut log = self.record(caller, Rpc::AdminRevokeClient);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, Rpc::AdminRevokeClient, &registry, None, None)?;
            txn::retry!("client revocation", {
                let (mut stored, raw) = self
                    .stored_client(id.trim())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no client with id {}", id.trim())))?;
                if !stored.client.is_active() {
                    return Ok(stored.client);
                }
                let mut b = Batch::new();
                if stored.client.role == Role::Admin {
                    let others: Vec<(Client, Vec<u8>)> = self
                        .active_admins()
                        .await?
                        .into_iter()
                        .filter(|(c, _)| c.id != stored.client.id)
                        .collect();
                    if others.is_empty() {
                        return Err(Error::FailedPrecondition(
                            "this is the last active admin client; create another admin before revoking it".into(),
                        ));
                    }
                    // Pin the admins this revocation counts on: two admins revoking each other
                    // at once each change the row the other pinned, so one batch fails, retries
                    // and finds itself the last admin.
                    for (other, raw) in &others {
                        b.check(Table::Clients, other.id.as_bytes(), Some(raw));
                    }
                }
                stored.client.revoked_at_us = Some(now_us());
                self.put_client(&mut b, &stored, Some(&raw))?;
                let attempt = log.commit_write(&self.audit, b).await;
                attempt.map(|()| stored.client)
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    async fn clients(&self) -> Result<Vec<Client>> {
        let mut out = Vec::new();
        for (_, raw) in self.store.scan_prefix(Table::Clients, b"").await? {
            let stored: StoredClient = serde_json::from_slice(&raw)
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("client record")))?;
            out.push(stored.client);
        }
        out.sort_by(|a, b| a.created_at_us.cmp(&b.created_at_us).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Every client, revoked ones included, oldest first.
    pub async fn list_clients(&self, caller: &Caller) -> Result<Vec<Client>> {
        let mut log = self.record(caller, Rpc::AdminListClients);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminListClients,
                &registry,
                None,
                None,
            )?;
            self.clients().await
        }
        .await;
        log.finish(&self.audit, result).await
    }

    // ---- purposes --------------------------------------------------------------------

    /// Installs the purpose registry at start, with the config file's purposes and no
    /// `replace_defaults` (see [`Vault::install_registry`]).
    pub async fn install_purposes(&self, configured: Option<&[Purpose]>) -> Result<()> {
        self.install_registry(configured.unwrap_or_default(), false)
            .await
            .map(drop)
    }

    /// Installs the purpose registry at start ([`purpose::registry_at_start`]): the stored
    /// one, or the defaults on a new store (none of them with `replace_defaults`), with the
    /// config file's purposes added or replacing those of their ids. The built-in DPO
    /// purpose is always present and cannot be redefined. Returns the registry in force.
    pub async fn install_registry(
        &self,
        configured: &[Purpose],
        replace_defaults: bool,
    ) -> Result<Vec<Purpose>> {
        for p in configured {
            p.validate()?;
            purpose::check_retention(p, self.min_retention_days)?;
            if p.id == DPO_PURPOSE {
                return Err(InvalidInput::new(
                    "purposes",
                    format!("{DPO_PURPOSE} is built in and cannot be redefined"),
                )
                .into());
            }
        }
        let existing = self.registry().await?;
        let wanted = purpose::registry_at_start(&existing, configured, replace_defaults);
        let mut b = Batch::new();
        for p in wanted.iter() {
            if existing.get(&p.id) != Some(p) {
                b.put(Table::Purposes, p.id.as_bytes(), purpose_json(p)?);
            }
        }
        if !b.ops.is_empty() {
            self.store.commit(b).await?;
        }
        Ok(wanted.iter().cloned().collect())
    }

    /// The purpose registry.
    pub async fn list_purposes(&self, caller: &Caller) -> Result<Vec<Purpose>> {
        let mut log = self.record(caller, Rpc::AdminListPurposes);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminListPurposes,
                &registry,
                None,
                None,
            )?;
            Ok(registry.iter().cloned().collect())
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Creates or replaces a purpose. It applies from the next call on every daemon. A
    /// change that widens access (a new purpose; more fields or channels; another basis; a
    /// shorter retention) needs a second admin: refused here, proposed with
    /// [`Vault::propose_purpose`]. A retention under the floor is refused either way.
    pub async fn put_purpose(&self, caller: &Caller, purpose: &Purpose) -> Result<Purpose> {
        let mut log = self.record(caller, Rpc::AdminPutPurpose);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminPutPurpose,
                &registry,
                None,
                None,
            )?;
            self.check_purpose(purpose)?;
            txn::retry!("purpose change", {
                let (previous, raw) = self.stored_purpose(&purpose.id).await?;
                let change = Change::PutPurpose {
                    purpose: purpose.clone(),
                    previous,
                };
                let why = needs_second_admin(&change, 0);
                if !why.is_empty() {
                    return Err(needs_approval(
                        &mut log,
                        &why,
                        "vaultctl admin propose-purpose",
                    ));
                }
                // Pinned to the purpose it was judged against: a concurrent change (an
                // approval widening it, say) makes this batch fail and be judged again.
                let mut b = Batch::new();
                b.check(Table::Purposes, purpose.id.as_bytes(), raw.as_deref())
                    .put(
                        Table::Purposes,
                        purpose.id.as_bytes(),
                        purpose_json(purpose)?,
                    );
                let attempt = log.commit_write(&self.audit, b).await;
                attempt.map(|()| purpose.clone())
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// The checks every purpose put (or proposed) passes: well formed, not the built-in
    /// DPO purpose, retention at least the floor.
    pub(super) fn check_purpose(&self, purpose: &Purpose) -> Result<()> {
        purpose.validate()?;
        if purpose.id == DPO_PURPOSE {
            return Err(Error::FailedPrecondition(format!(
                "{DPO_PURPOSE} is built in and cannot be changed"
            )));
        }
        purpose::check_retention(purpose, self.min_retention_days)?;
        Ok(())
    }

    /// The stored purpose `id` and its bytes (for a check), if any.
    pub(super) async fn stored_purpose(
        &self,
        id: &str,
    ) -> Result<(Option<Purpose>, Option<Vec<u8>>)> {
        match self.store.get(Table::Purposes, id.as_bytes()).await? {
            None => Ok((None, None)),
            Some(raw) => {
                let p: Purpose = serde_json::from_slice(&raw)
                    .map_err(|_| Error::Integrity(IntegrityObject::Metadata("purpose registry")))?;
                Ok((Some(p), Some(raw)))
            }
        }
    }
}

/// The purposes a new client of `role` gets, checked against the registry.
pub(super) fn client_purposes(
    registry: &Registry,
    role: Role,
    requested: &[String],
) -> Result<BTreeSet<String>> {
    let requested: BTreeSet<String> = requested
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    match role {
        Role::CampaignTool => {
            if requested.is_empty() {
                return Err(InvalidInput::new(
                    "purposes",
                    format!(
                        "a campaign tool needs at least one purpose; known purposes: {}",
                        registry.ids()
                    ),
                )
                .into());
            }
            for p in &requested {
                if p == DPO_PURPOSE {
                    return Err(InvalidInput::new(
                        "purposes",
                        format!("{DPO_PURPOSE} is reserved for the dpo role"),
                    )
                    .into());
                }
                if registry.get(p).is_none() {
                    let shown: String = p.chars().take(64).collect();
                    return Err(InvalidInput::new(
                        "purposes",
                        format!(
                            "unknown purpose {shown:?}; known purposes: {}",
                            registry.ids()
                        ),
                    )
                    .into());
                }
            }
            Ok(requested)
        }
        Role::Dpo => {
            if requested.iter().any(|p| p != DPO_PURPOSE) {
                return Err(InvalidInput::new(
                    "purposes",
                    format!("a dpo client acts under {DPO_PURPOSE} only"),
                )
                .into());
            }
            Ok(BTreeSet::from([DPO_PURPOSE.to_owned()]))
        }
        Role::Auditor | Role::Admin => {
            if !requested.is_empty() {
                return Err(InvalidInput::new(
                    "purposes",
                    format!("role {role} reads no personal data and takes no purposes"),
                )
                .into());
            }
            Ok(BTreeSet::new())
        }
    }
}

impl Vault {
    /// The record of processing activities (GDPR art. 30) from the purposes and clients in
    /// force; `storage` says where the data lives (for the transfers entry).
    pub async fn processing_report(
        &self,
        caller: &Caller,
        controller: &crate::report::Controller,
        storage: &str,
    ) -> Result<crate::report::ProcessingReport> {
        let mut log = self.record(caller, Rpc::AdminProcessingReport);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminProcessingReport,
                &registry,
                None,
                None,
            )?;
            let clients = self.clients().await?;
            Ok(crate::report::ProcessingReport::build(
                &registry,
                &clients,
                controller,
                storage,
                now_us(),
            ))
        }
        .await;
        log.finish(&self.audit, result).await
    }
}

fn expired() -> Error {
    Error::Unauthenticated(
        "invalid credentials: this client's credentials have expired; ask an admin for a new client"
            .into(),
    )
}
