//! Segments: consent-filtered lists of supporters (tags × postcodes × consent channel),
//! evaluated over posting lists, so only the page returned is ever decrypted.
//!
//! A query is an AND of groups, each an OR of terms (one group per `tags_all` tag, one for
//! `tags_any`, one for `postcodes`, one for the basis: the consent of a consent-based
//! purpose, or the people collected for any other), minus exclusions (restricted people;
//! people who objected on every channel searched). A criterion may name only a field the
//! purpose may see. Lists small enough
//! are read whole and intersected; larger ones are tested per candidate with point reads.
//! When every list is large, the first drives in id order. Pages follow the subject id
//! order; the page token carries the last id and a MAC binding it to the query and the
//! purpose, so a client can neither forge a position nor reuse a token for another query.

use std::collections::BTreeSet;

use crate::access::{Caller, Rpc};
use crate::crypto::IndexKind;
use crate::error::{Error, InvalidInput, Result};
use crate::postings::{self, Term, TermHash};
use crate::purpose::{Channel, Purpose};
use crate::storage::Table;
use crate::supporter::{Field, FieldSet, Supporter, normalize, record};

use super::Vault;

/// Default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// Largest number of criteria values in one query.
pub const MAX_CRITERIA: usize = 100;
/// Lists up to this size are read whole; longer ones are probed per candidate.
const WHOLE_LIST_LIMIT: usize = 50_000;
/// Ids read at a time from a driving list.
const DRIVE_CHUNK: usize = 4096;
/// `Meta` key: the `collected` posting terms exist for every supporter.
const COLLECTED_TERMS_MARKER: &[u8] = b"postings_collected_for";

/// A segment query.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Every one of these tags.
    pub tags_all: Vec<String>,
    /// At least one of these tags.
    pub tags_any: Vec<String>,
    /// One of these postcodes.
    pub postcodes: Vec<String>,
    /// Consent purpose: empty or the caller's purpose.
    pub consent_purpose: String,
    /// Consent channel (optional).
    pub consent_channel: String,
    /// Narrows the purpose's fields.
    pub fields: FieldSet,
    /// Page size (0: the default).
    pub page_size: u32,
    /// Token of the previous page.
    pub page_token: String,
}

/// One page of a segment.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// Supporters, in id order, projected to the purpose's fields.
    pub supporters: Vec<Supporter>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// A list of subject ids: read whole, or too long and probed.
enum List {
    Whole(BTreeSet<String>),
    Large(Vec<TermHash>),
}

fn prefix_end(term: &TermHash) -> Vec<u8> {
    // Subject ids are ASCII, so every key of the list sorts below `term ‖ 0xff`.
    let mut end = term.to_vec();
    end.push(0xff);
    end
}

impl Vault {
    /// One page of the segment `query`, for the caller's purpose (see the module docs).
    pub async fn search(&self, caller: &Caller, query: &SearchQuery) -> Result<SearchPage> {
        let mut log = self.record(caller, Rpc::SupportersSearch);
        let result = async {
            let registry = self.registry().await?;
            let decision = self.decide(
                &mut log,
                caller,
                Rpc::SupportersSearch,
                &registry,
                None,
                None,
            )?;
            let purpose = decision
                .purpose
                .ok_or_else(|| Error::Codec("no purpose".into()))?;
            let plan = self.plan(&purpose, query)?;
            let visible = if query.fields.is_empty() {
                decision.fields
            } else {
                decision.fields.intersect(query.fields)
            };
            log.fields(visible);
            let after = match query.page_token.trim() {
                "" => None,
                t => Some(self.open_page_token(&plan.digest, t)?),
            };
            let (ids, more) = self.evaluate(&plan, after.as_deref()).await?;
            let mut supporters = Vec::with_capacity(ids.len());
            for id in &ids {
                // Erased since the lists were read: skip.
                if let Some(s) = self.load_record(id).await? {
                    log.subject(id);
                    supporters.push(s.project(visible));
                }
            }
            let next_page_token = match (more, ids.last()) {
                (true, Some(last)) => Some(self.page_token(&plan.digest, last)),
                _ => None,
            };
            Ok(SearchPage {
                supporters,
                next_page_token,
            })
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Writes the `collected` posting terms of the people stored before they existed (once
    /// per store, marked in `Meta`): without them a purpose that does not rest on consent
    /// would find none of them. Idempotent, so replicas racing through it are harmless.
    pub(super) async fn index_collected_for(&self) -> Result<()> {
        if self
            .store
            .get(Table::Meta, COLLECTED_TERMS_MARKER)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let mut start = Vec::new();
        let mut indexed = 0u64;
        loop {
            let rows = self
                .store
                .scan_range(Table::SubjectKeys, &start, None, DRIVE_CHUNK)
                .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            start.clone_from(last);
            start.push(0);
            let mut b = crate::storage::Batch::new();
            for (k, _) in rows {
                let Ok(id) = String::from_utf8(k) else {
                    continue;
                };
                let Some(loaded) = self.load(&id).await? else {
                    continue;
                };
                for p in &loaded.state.collected_for {
                    b.put(
                        Table::Postings,
                        &postings::key(&Term::Collected(p).hash(&self.blind), &id),
                        Vec::new(),
                    );
                }
                indexed += 1;
            }
            self.store.commit(b).await?;
        }
        let mut b = crate::storage::Batch::new();
        b.put(Table::Meta, COLLECTED_TERMS_MARKER, b"1".to_vec());
        self.store.commit(b).await?;
        if indexed > 0 {
            tracing::info!(
                target: "vault::store",
                supporters = indexed,
                "indexed the purposes each supporter was collected for (once, for searches \
                 under purposes that do not rest on consent)"
            );
        }
        Ok(())
    }

    /// Reads a record without its ledger (the lists already decided the basis).
    async fn load_record(&self, id: &str) -> Result<Option<Supporter>> {
        let Some(wrapped) = self.store.get(Table::SubjectKeys, id.as_bytes()).await? else {
            return Ok(None);
        };
        let Some(sealed) = self.store.get(Table::Records, id.as_bytes()).await? else {
            return Ok(None);
        };
        let dek = self.unwrap_subject_key(id, &wrapped).await?;
        Ok(Some(record::open(&dek, id, &sealed)?))
    }

    fn plan(&self, purpose: &Purpose, q: &SearchQuery) -> Result<Plan> {
        let count = q.tags_all.len() + q.tags_any.len() + q.postcodes.len();
        if count > MAX_CRITERIA {
            return Err(InvalidInput::new(
                "tags_all",
                format!("a query may name at most {MAX_CRITERIA} tags and postcodes in all"),
            )
            .into());
        }
        // A criterion is a question about the field: a purpose may ask only about the
        // fields it may see (otherwise a newsletter tool learns postcodes one query at a
        // time).
        for (field, used, name) in [
            (
                Field::Tags,
                !q.tags_all.is_empty() || !q.tags_any.is_empty(),
                "tags_all",
            ),
            (Field::Postcode, !q.postcodes.is_empty(), "postcodes"),
        ] {
            if used && !purpose.fields.contains(field) {
                return Err(InvalidInput::new(
                    name,
                    format!(
                        "purpose {} may not see {}, so a search under it may not select by it",
                        purpose.id,
                        field.path()
                    ),
                )
                .into());
            }
        }
        let tags_all = normalize::tags(q.tags_all.iter().map(String::as_str))?;
        let tags_any = normalize::tags(q.tags_any.iter().map(String::as_str))?;
        let postcodes: BTreeSet<String> = q
            .postcodes
            .iter()
            .map(|p| normalize::postcode(p))
            .collect::<Result<_, _>>()?;
        let consent_purpose = q.consent_purpose.trim();
        if !consent_purpose.is_empty() && consent_purpose != purpose.id {
            return Err(InvalidInput::new(
                "consent_purpose",
                format!(
                    "must be empty or the declared purpose ({}); a segment is built for the \
                     purpose it is used for",
                    purpose.id
                ),
            )
            .into());
        }
        let channels: Vec<Channel> = match q.consent_channel.trim() {
            "" => purpose.channels.iter().copied().collect(),
            c => {
                let channel: Channel = c
                    .parse()
                    .map_err(|why: String| InvalidInput::new("consent_channel", why))?;
                if !purpose.channels.contains(&channel) {
                    return Err(InvalidInput::new(
                        "consent_channel",
                        format!(
                            "purpose {} does not contact people by {channel}",
                            purpose.id
                        ),
                    )
                    .into());
                }
                vec![channel]
            }
        };
        let page_size = match q.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(InvalidInput::new(
                    "page_size",
                    format!("must be at most {MAX_PAGE_SIZE}"),
                )
                .into());
            }
            n => n,
        };
        let key = &self.blind;
        let mut groups: Vec<Vec<TermHash>> = tags_all
            .iter()
            .map(|t| vec![Term::Tag(t).hash(key)])
            .collect();
        if !tags_any.is_empty() {
            groups.push(tags_any.iter().map(|t| Term::Tag(t).hash(key)).collect());
        }
        if !postcodes.is_empty() {
            groups.push(
                postcodes
                    .iter()
                    .map(|p| Term::Postcode(p).hash(key))
                    .collect(),
            );
        }
        // The basis, as `access::has_basis` judges it for one person.
        if purpose.needs_consent() {
            groups.push(
                channels
                    .iter()
                    .map(|c| Term::Consent(&purpose.id, *c).hash(key))
                    .collect(),
            );
        } else {
            groups.push(
                std::iter::once(&purpose.id)
                    .chain(&purpose.reaches_collected_for)
                    .map(|p| Term::Collected(p).hash(key))
                    .collect(),
            );
        }
        // Excluded: restricted people, and people who objected on every channel searched.
        let mut exclusions = vec![vec![Term::Restricted.hash(key)]];
        if !channels.is_empty() {
            exclusions.push(
                channels
                    .iter()
                    .map(|c| Term::Objected(*c).hash(key))
                    .collect(),
            );
        }
        let canonical = serde_json::json!([
            purpose.id,
            tags_all,
            tags_any,
            postcodes,
            channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        ])
        .to_string();
        let digest = self
            .blind
            .index(IndexKind::Term, &format!("page-query\0{canonical}"));
        Ok(Plan {
            groups,
            exclusions,
            page_size: page_size as usize,
            digest,
        })
    }

    /// The ids of the page after `after`, and whether more follow.
    async fn evaluate(&self, plan: &Plan, after: Option<&str>) -> Result<(Vec<String>, bool)> {
        let mut lists = Vec::with_capacity(plan.groups.len());
        for g in &plan.groups {
            lists.push(self.read_list(g).await?);
        }
        let mut exclusions = Vec::with_capacity(plan.exclusions.len());
        for g in &plan.exclusions {
            // An exclusion holds when the subject is on every one of its lists.
            let mut parts = Vec::with_capacity(g.len());
            for h in g {
                parts.push(self.read_list(std::slice::from_ref(h)).await?);
            }
            exclusions.push(parts);
        }
        let mut whole: Vec<&BTreeSet<String>> = Vec::new();
        let mut large: Vec<&Vec<TermHash>> = Vec::new();
        for l in &lists {
            match l {
                List::Whole(set) => whole.push(set),
                List::Large(hashes) => large.push(hashes),
            }
        }
        whole.sort_by_key(|s| s.len());
        let want = plan.page_size + 1;
        let mut out = Vec::new();
        if let Some((first, rest)) = whole.split_first() {
            let start = after.map_or(std::ops::Bound::Unbounded, |a| {
                std::ops::Bound::Excluded(a.to_owned())
            });
            for id in first.range((start, std::ops::Bound::Unbounded)) {
                if rest.iter().all(|s| s.contains(id))
                    && self.passes(id, &large, &exclusions).await?
                {
                    out.push(id.clone());
                    if out.len() == want {
                        break;
                    }
                }
            }
        } else {
            let (driver, others) = match large.split_first() {
                Some((d, o)) => (Some(*d), o.to_vec()),
                None => (None, Vec::new()),
            };
            let mut cursor = after.map(str::to_owned);
            'drive: loop {
                let chunk = self.drive(driver, cursor.as_deref()).await?;
                let Some(last) = chunk.last().cloned() else {
                    break;
                };
                for id in chunk {
                    if self.passes(&id, &others, &exclusions).await? {
                        out.push(id);
                        if out.len() == want {
                            break 'drive;
                        }
                    }
                }
                cursor = Some(last);
            }
        }
        let more = out.len() > plan.page_size;
        out.truncate(plan.page_size);
        Ok((out, more))
    }

    /// Reads a group's lists whole, unless one is longer than the limit.
    async fn read_list(&self, group: &[TermHash]) -> Result<List> {
        let mut ids = BTreeSet::new();
        for h in group {
            let rows = self
                .store
                .scan_range(
                    Table::Postings,
                    h,
                    Some(&prefix_end(h)),
                    WHOLE_LIST_LIMIT + 1,
                )
                .await?;
            if rows.len() > WHOLE_LIST_LIMIT {
                return Ok(List::Large(group.to_vec()));
            }
            ids.extend(
                rows.iter()
                    .filter_map(|(k, _)| postings::subject_of(k).map(str::to_owned)),
            );
        }
        Ok(List::Whole(ids))
    }

    /// The next ids after `after` of the driving group (every subject without one).
    async fn drive(
        &self,
        group: Option<&Vec<TermHash>>,
        after: Option<&str>,
    ) -> Result<Vec<String>> {
        let Some(group) = group else {
            let start = after.map_or_else(Vec::new, |a| {
                let mut k = a.as_bytes().to_vec();
                k.push(0);
                k
            });
            return Ok(self
                .store
                .scan_range(Table::SubjectKeys, &start, None, DRIVE_CHUNK)
                .await?
                .into_iter()
                .filter_map(|(k, _)| String::from_utf8(k).ok())
                .collect());
        };
        let mut ids = BTreeSet::new();
        for h in group {
            let start = match after {
                Some(a) => {
                    let mut k = postings::key(h, a);
                    k.push(0);
                    k
                }
                None => h.to_vec(),
            };
            let rows = self
                .store
                .scan_range(Table::Postings, &start, Some(&prefix_end(h)), DRIVE_CHUNK)
                .await?;
            ids.extend(
                rows.iter()
                    .filter_map(|(k, _)| postings::subject_of(k).map(str::to_owned)),
            );
        }
        // Each list gave its first ids after the cursor; the union's first chunk is exact.
        Ok(ids.into_iter().take(DRIVE_CHUNK).collect())
    }

    async fn on_list(&self, id: &str, list: &List) -> Result<bool> {
        match list {
            List::Whole(set) => Ok(set.contains(id)),
            List::Large(hashes) => self.on_any(id, hashes).await,
        }
    }

    /// Whether `id` is on any of the lists `hashes` (point reads).
    async fn on_any(&self, id: &str, hashes: &[TermHash]) -> Result<bool> {
        for h in hashes {
            if self
                .store
                .get(Table::Postings, &postings::key(h, id))
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn passes(
        &self,
        id: &str,
        large: &[&Vec<TermHash>],
        exclusions: &[Vec<List>],
    ) -> Result<bool> {
        for hashes in large {
            if !self.on_any(id, hashes).await? {
                return Ok(false);
            }
        }
        for parts in exclusions {
            let mut all = true;
            for part in parts {
                if !self.on_list(id, part).await? {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn page_token(&self, digest: &[u8; 32], last: &str) -> String {
        let payload = format!("v1\0{}\0{last}", hex::encode(digest));
        let mac = self
            .blind
            .index(IndexKind::Term, &format!("page-token\0{payload}"));
        format!("{}.{}", hex::encode(payload), hex::encode(&mac[..16]))
    }

    fn open_page_token(&self, digest: &[u8; 32], token: &str) -> Result<String> {
        let bad = || -> Error {
            InvalidInput::new(
                "page_token",
                "is not a token this vault issued for this query and purpose; pass the \
                 previous page's x-vault-next-page-token with the same criteria",
            )
            .into()
        };
        let (payload_hex, mac_hex) = token.split_once('.').ok_or_else(bad)?;
        let payload =
            String::from_utf8(hex::decode(payload_hex).map_err(|_| bad())?).map_err(|_| bad())?;
        let mac = hex::decode(mac_hex).map_err(|_| bad())?;
        let want = self
            .blind
            .index(IndexKind::Term, &format!("page-token\0{payload}"));
        if mac.len() != 16 || !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..16], &mac[..])) {
            return Err(bad());
        }
        let mut parts = payload.splitn(3, '\0');
        let (Some("v1"), Some(d), Some(last)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if d != hex::encode(digest) {
            return Err(bad());
        }
        Ok(last.to_owned())
    }
}

/// A query turned into lists.
struct Plan {
    groups: Vec<Vec<TermHash>>,
    exclusions: Vec<Vec<TermHash>>,
    page_size: usize,
    digest: [u8; 32],
}
