//! The vault: opens keys and store, and runs the supporter operations.
//!
//! Every write is one [`Batch`] whose checks pin what the operation read (the record's
//! ciphertext, the index entries it claims), so concurrent writers never lose an update or
//! create two supporters for one email: a conflicting batch fails as a whole and the
//! operation re-reads and retries. A write returns only once it is durable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::access::{self, Action, Caller};
use crate::credentials::{self, TokenHash};
use crate::crypto::keyring::{self, Keyring};
use crate::crypto::root_key::{Origin, RootKey};
use crate::crypto::{BlindIndexKey, IndexKind, Key256};
use crate::error::{Error, IntegrityObject, InvalidInput, Result};
use crate::storage::sled_store::SledOptions;
use crate::storage::{Batch, SledStore, Store, StoreError, Table};
use crate::supporter::normalize;
use crate::supporter::record;
use crate::supporter::{FieldSet, LookupKey, Supporter, UpsertOutcome};

/// How often an operation re-reads and retries after a concurrent writer changed its rows.
const MAX_ATTEMPTS: usize = 32;
const META_FORMAT: &[u8] = b"format_version";
const META_BOOTSTRAP_ADMIN: &[u8] = b"bootstrap_admin_sha256";
const FORMAT_VERSION: &[u8] = b"1";

/// Where the vault keeps its data and keys.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// The data directory (the embedded store lives in `<data_dir>/store`).
    pub data_dir: PathBuf,
    /// The root key file; `<data_dir>/root.key` when `None`.
    pub root_key_file: Option<PathBuf>,
    /// Embedded store tuning.
    pub sled: SledOptions,
}

impl VaultOptions {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            root_key_file: None,
            sled: SledOptions::default(),
        }
    }

    /// The root key file in effect.
    pub fn root_key_path(&self) -> PathBuf {
        self.root_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("root.key"))
    }
}

/// What opening the vault found or created.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// The root key file in use.
    pub root_key_path: PathBuf,
    /// Whether the root key file was created by this open.
    pub root_key_created: bool,
}

/// A supporter as read from the store, with what a write needs to pin it.
struct Loaded {
    supporter: Supporter,
    dek: Key256,
    sealed: Vec<u8>,
}

/// The vault.
pub struct Vault {
    store: Arc<dyn Store>,
    keyring: Keyring,
    blind: BlindIndexKey,
    bootstrap_admin: RwLock<Option<TokenHash>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Validates a supporter id and returns its canonical form.
fn parse_id(id: &str) -> Result<String> {
    uuid::Uuid::try_parse(id.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            InvalidInput::new(
                "id",
                "must be a supporter id as returned by Upsert (a UUID)",
            )
            .into()
        })
}

fn id_from_index(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|_| Error::Integrity(IntegrityObject::Metadata("blind index entry")))
}

impl Vault {
    /// Opens the embedded store in `options.data_dir`, creating the data directory, the
    /// root key file and the first key epoch on first start.
    pub async fn open(options: &VaultOptions) -> Result<(Self, OpenReport)> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| {
            Error::Storage(StoreError::Engine(format!(
                "cannot create data directory {}: {e}",
                options.data_dir.display()
            )))
        })?;
        restrict_dir(&options.data_dir)?;
        let key_path = options.root_key_path();
        let (root, origin) = RootKey::load_or_create(&key_path)?;
        let store = SledStore::open(&options.data_dir.join("store"), &options.sled)?;
        let store: Arc<dyn Store> = Arc::new(store);
        let has_epochs = !store.scan_prefix(Table::Keyring, b"").await?.is_empty();
        if origin == Origin::Created && has_epochs {
            // The key file went missing; a new key can never open this store. Don't leave
            // the useless new key behind to confuse the next start.
            let _ = std::fs::remove_file(&key_path);
            return Err(Error::RootKeyFile {
                path: key_path.display().to_string(),
                reason: format!(
                    "is missing, but the store in {} holds data sealed under a root key; \
                     restore the original key file (or point --root-key at it)",
                    options.data_dir.display()
                ),
            });
        }
        let vault = Self::with_store(store, &root).await?;
        Ok((
            vault,
            OpenReport {
                root_key_path: key_path,
                root_key_created: origin == Origin::Created,
            },
        ))
    }

    /// Opens the vault on any store with the given root key (first use initializes it).
    pub async fn with_store(store: Arc<dyn Store>, root: &RootKey) -> Result<Self> {
        match store.get(Table::Meta, META_FORMAT).await? {
            None => {
                let mut b = Batch::new();
                b.check(Table::Meta, META_FORMAT, None).put(
                    Table::Meta,
                    META_FORMAT,
                    FORMAT_VERSION.to_vec(),
                );
                match store.commit(b).await {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(v) if v == FORMAT_VERSION => {}
            Some(_) => {
                return Err(Error::FailedPrecondition(
                    "the store was written by a newer, incompatible version of the vault".into(),
                ));
            }
        }
        let keyring = load_keyring(store.as_ref(), root).await?;
        let bootstrap_admin = match store.get(Table::Meta, META_BOOTSTRAP_ADMIN).await? {
            Some(bytes) => Some(TokenHash(bytes.as_slice().try_into().map_err(|_| {
                Error::Integrity(IntegrityObject::Metadata("bootstrap admin credential"))
            })?)),
            None => None,
        };
        Ok(Self {
            store,
            keyring,
            blind: BlindIndexKey::derive(root),
            bootstrap_admin: RwLock::new(bootstrap_admin),
        })
    }

    /// The store, for engine-level tools and tests.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Makes everything written so far durable (used at shutdown).
    pub async fn sync(&self) -> Result<()> {
        Ok(self.store.sync().await?)
    }

    // ---- bootstrap credential -------------------------------------------------------

    /// Whether a bootstrap admin credential exists.
    pub fn has_bootstrap_admin(&self) -> bool {
        self.bootstrap_admin
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Creates the bootstrap admin token if none exists yet. `persist` receives the token
    /// and must store it for the operator (the daemon writes `admin.token`) before the hash
    /// is committed, so a crash in between leaves no credential nobody holds. Returns
    /// `false` if a credential already existed (possibly created concurrently elsewhere).
    pub async fn create_bootstrap_admin<F>(&self, persist: F) -> Result<bool>
    where
        F: FnOnce(&str) -> Result<()>,
    {
        if self.has_bootstrap_admin() {
            return Ok(false);
        }
        let token: Zeroizing<String> = credentials::new_token()?;
        persist(&token)?;
        let hash = TokenHash::of(&token);
        let mut b = Batch::new();
        b.check(Table::Meta, META_BOOTSTRAP_ADMIN, None).put(
            Table::Meta,
            META_BOOTSTRAP_ADMIN,
            hash.0.to_vec(),
        );
        match self.store.commit(b).await {
            Ok(()) => {
                *self
                    .bootstrap_admin
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = Some(hash);
                Ok(true)
            }
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `token` is the bootstrap admin token (constant-time comparison of hashes).
    pub fn verify_bootstrap_admin(&self, token: &str) -> bool {
        self.bootstrap_admin
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|h| h.matches(token))
    }

    // ---- supporters -----------------------------------------------------------------

    /// Creates a supporter, or merges into the one with the same email or phone.
    pub async fn upsert(&self, caller: &Caller, input: &Supporter) -> Result<UpsertOutcome> {
        access::authorize(caller, Action::SupporterUpsert)?;
        let mut incoming = input.normalized()?;
        incoming.id.clear();
        incoming.require_contact()?;
        let email_h = self.index_of(IndexKind::Email, &incoming.email);
        let phone_h = self.index_of(IndexKind::Phone, &incoming.phone);
        for _ in 0..MAX_ATTEMPTS {
            let by_email = self
                .index_owner(Table::EmailIndex, email_h.as_ref())
                .await?;
            let by_phone = self
                .index_owner(Table::PhoneIndex, phone_h.as_ref())
                .await?;
            let target = match (by_email, by_phone) {
                (Some(a), Some(b)) if a != b => {
                    return Err(Error::AlreadyExists(format!(
                        "the email matches supporter {a} but the phone belongs to supporter {b}; \
                         correct one of them with Update before upserting both"
                    )));
                }
                (Some(a), _) => Some(a),
                (None, Some(b)) => Some(b),
                (None, None) => None,
            };
            let attempt = match target {
                None => self
                    .create(&incoming, email_h, phone_h)
                    .await
                    .map(|id| UpsertOutcome { id, created: true }),
                Some(id) => {
                    let loaded = self.load_existing(&id).await?;
                    if !incoming.email.is_empty()
                        && !loaded.supporter.email.is_empty()
                        && loaded.supporter.email != incoming.email
                    {
                        return Err(Error::AlreadyExists(format!(
                            "the phone belongs to supporter {id}, who has a different email; \
                             upsert without the phone, or change supporter {id} with Update"
                        )));
                    }
                    let mut merged = loaded.supporter.clone();
                    merged.merge_upsert(&incoming);
                    self.save(&loaded, merged)
                        .await
                        .map(|_| UpsertOutcome { id, created: false })
                }
            };
            match attempt {
                Err(Error::Storage(StoreError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Err(Error::Contention("supporter upsert".into()))
    }

    /// Reads a supporter; `fields` empty means every field.
    pub async fn get(&self, caller: &Caller, id: &str, fields: FieldSet) -> Result<Supporter> {
        access::authorize(caller, Action::SupporterGet)?;
        let id = parse_id(id)?;
        let loaded = self
            .load(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no supporter with id {id}")))?;
        Ok(project(&loaded.supporter, fields))
    }

    /// Finds a supporter by email or phone (normalized first, so any casing or format
    /// the normalizer accepts finds the same person).
    pub async fn lookup(&self, caller: &Caller, key: &LookupKey) -> Result<Supporter> {
        access::authorize(caller, Action::SupporterLookup)?;
        let (table, hash, what) = match key {
            LookupKey::Email(e) => (
                Table::EmailIndex,
                self.blind.index(IndexKind::Email, &normalize::email(e)?),
                "email",
            ),
            LookupKey::Phone(p) => (
                Table::PhoneIndex,
                self.blind.index(IndexKind::Phone, &normalize::phone(p)?),
                "phone",
            ),
        };
        let not_found = || Error::NotFound(format!("no supporter with this {what}"));
        let id = self
            .index_owner(table, Some(&hash))
            .await?
            .ok_or_else(not_found)?;
        let loaded = self.load(&id).await?.ok_or_else(not_found)?;
        Ok(loaded.supporter)
    }

    /// Sets the fields named by `mask` to their values in `patch` (an empty value clears
    /// the field). Index entries follow an email or phone change.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        patch: &Supporter,
        mask: FieldSet,
    ) -> Result<Supporter> {
        access::authorize(caller, Action::SupporterUpdate)?;
        let id = parse_id(id)?;
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
        let mut masked = Supporter::default();
        masked.assign(patch, mask);
        let masked = masked.normalized()?;
        for _ in 0..MAX_ATTEMPTS {
            let loaded = self
                .load(&id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no supporter with id {id}")))?;
            let mut next = loaded.supporter.clone();
            next.assign(&masked, mask);
            next.require_contact()?;
            self.ensure_unclaimed(&id, IndexKind::Email, &next.email)
                .await?;
            self.ensure_unclaimed(&id, IndexKind::Phone, &next.phone)
                .await?;
            match self.save(&loaded, next).await {
                Err(Error::Storage(StoreError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Err(Error::Contention(format!("supporter {id}")))
    }

    /// Adds tags to a supporter.
    pub async fn tag(&self, caller: &Caller, id: &str, tags: &[String]) -> Result<Supporter> {
        self.retag(caller, id, tags, true).await
    }

    /// Removes tags from a supporter (tags it does not have are ignored).
    pub async fn untag(&self, caller: &Caller, id: &str, tags: &[String]) -> Result<Supporter> {
        self.retag(caller, id, tags, false).await
    }

    async fn retag(
        &self,
        caller: &Caller,
        id: &str,
        tags: &[String],
        add: bool,
    ) -> Result<Supporter> {
        access::authorize(caller, Action::SupporterTag)?;
        let id = parse_id(id)?;
        let tags = normalize::tags(tags.iter().map(String::as_str))?;
        if tags.is_empty() {
            return Err(InvalidInput::new("tags", "must name at least one tag").into());
        }
        for _ in 0..MAX_ATTEMPTS {
            let loaded = self
                .load(&id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no supporter with id {id}")))?;
            let mut next = loaded.supporter.clone();
            if add {
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
            match self.save(&loaded, next).await {
                Err(Error::Storage(StoreError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Err(Error::Contention(format!("supporter {id}")))
    }

    // ---- internals ------------------------------------------------------------------

    fn index_of(&self, kind: IndexKind, normalized: &str) -> Option<[u8; 32]> {
        (!normalized.is_empty()).then(|| self.blind.index(kind, normalized))
    }

    async fn index_owner(&self, table: Table, hash: Option<&[u8; 32]>) -> Result<Option<String>> {
        match hash {
            None => Ok(None),
            Some(h) => self
                .store
                .get(table, h)
                .await?
                .map(id_from_index)
                .transpose(),
        }
    }

    /// Fails with `AlreadyExists` if `value` is indexed to a supporter other than `id`.
    async fn ensure_unclaimed(&self, id: &str, kind: IndexKind, value: &str) -> Result<()> {
        let table = index_table(kind);
        let owner = self
            .index_owner(table, self.index_of(kind, value).as_ref())
            .await?;
        if let Some(owner) = owner.filter(|o| o != id) {
            let what = if kind == IndexKind::Email {
                "email"
            } else {
                "phone"
            };
            return Err(Error::AlreadyExists(format!(
                "this {what} already belongs to supporter {owner}"
            )));
        }
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<Loaded>> {
        let Some(wrapped) = self.store.get(Table::SubjectKeys, id.as_bytes()).await? else {
            return Ok(None);
        };
        let sealed = self
            .store
            .get(Table::Records, id.as_bytes())
            .await?
            .ok_or_else(|| Error::Integrity(IntegrityObject::Record(id.to_owned())))?;
        let dek = self.keyring.unwrap_subject_key(id, &wrapped)?;
        let supporter = record::open(&dek, id, &sealed)?;
        Ok(Some(Loaded {
            supporter,
            dek,
            sealed,
        }))
    }

    /// Loads a supporter an index entry points at; a dangling entry means the supporter
    /// was removed concurrently, which the caller's retry resolves.
    async fn load_existing(&self, id: &str) -> Result<Loaded> {
        self.load(id)
            .await?
            .ok_or(Error::Storage(StoreError::Conflict(Table::Records.name())))
    }

    async fn create(
        &self,
        incoming: &Supporter,
        email_h: Option<[u8; 32]>,
        phone_h: Option<[u8; 32]>,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let dek = Key256::generate()?;
        let now = now_us();
        let mut s = incoming.clone();
        s.id.clone_from(&id);
        s.created_at_us = now;
        s.updated_at_us = now;
        let mut b = Batch::new();
        b.check(Table::SubjectKeys, id.as_bytes(), None)
            .put(
                Table::SubjectKeys,
                id.as_bytes(),
                self.keyring.wrap_subject_key(&id, &dek)?,
            )
            .put(Table::Records, id.as_bytes(), record::seal(&dek, &s)?);
        for (table, hash) in [(Table::EmailIndex, email_h), (Table::PhoneIndex, phone_h)] {
            if let Some(h) = hash {
                b.check(table, &h, None)
                    .put(table, &h, id.as_bytes().to_vec());
            }
        }
        self.store.commit(b).await?;
        Ok(id)
    }

    /// Writes `next` over `loaded` if nothing changed it meanwhile; moves index entries.
    /// Writes nothing when `next` equals what is stored.
    async fn save(&self, loaded: &Loaded, mut next: Supporter) -> Result<Supporter> {
        let old = &loaded.supporter;
        if next == *old {
            return Ok(next);
        }
        next.updated_at_us = now_us().max(old.updated_at_us);
        let id = old.id.as_bytes();
        let mut b = Batch::new();
        b.check(Table::Records, id, Some(&loaded.sealed)).put(
            Table::Records,
            id,
            record::seal(&loaded.dek, &next)?,
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
                b.check(table, &h, None).put(table, &h, id.to_vec());
            }
        }
        self.store.commit(b).await?;
        Ok(next)
    }
}

fn index_table(kind: IndexKind) -> Table {
    match kind {
        IndexKind::Phone => Table::PhoneIndex,
        _ => Table::EmailIndex,
    }
}

fn project(s: &Supporter, fields: FieldSet) -> Supporter {
    if fields.is_empty() {
        s.clone()
    } else {
        s.project(fields)
    }
}

async fn load_keyring(store: &dyn Store, root: &RootKey) -> Result<Keyring> {
    let mut stored = read_epochs(store).await?;
    if stored.is_empty() {
        let epoch = 1u32;
        let mut b = Batch::new();
        b.check(Table::Keyring, &epoch.to_be_bytes(), None).put(
            Table::Keyring,
            &epoch.to_be_bytes(),
            keyring::new_wrapped_epoch(root, epoch)?,
        );
        match store.commit(b).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        stored = read_epochs(store).await?;
    }
    Keyring::unwrap(root, &stored)
}

async fn read_epochs(store: &dyn Store) -> Result<BTreeMap<u32, Vec<u8>>> {
    store
        .scan_prefix(Table::Keyring, b"")
        .await?
        .into_iter()
        .map(|(k, v)| {
            let epoch: [u8; 4] = k
                .as_slice()
                .try_into()
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("keyring entry")))?;
            Ok((u32::from_be_bytes(epoch), v))
        })
        .collect()
}

/// The data directory holds only ciphertext, but its layout still tells who runs a vault;
/// keep it to its owner.
fn restrict_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        Error::Storage(StoreError::Engine(format!(
            "cannot restrict permissions of {}: {e}",
            dir.display()
        )))
    })
}
