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
//!
//! The ids one search holds in memory are bounded whatever the query ([`Bounds`]): a group
//! whose union would pass the whole-list limit, or the search's budget of held ids, is
//! probed instead of read (same answer, point reads instead of memory), and a driving
//! group reads a share of the chunk per term. A 100-term union over large tags costs reads,
//! never millions of ids.

use std::collections::BTreeSet;

use crate::access::{Caller, Rpc};
use crate::crypto::IndexKind;
use crate::error::{Error, InvalidInput, Result};
use crate::postings::{self, Term, TermHash};
use crate::purpose::{Channel, Purpose};
use crate::storage::Table;
use crate::storage::schema::meta;
use crate::supporter::{Field, FieldSet, Supporter, normalize, record};

use super::Vault;

/// Default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// Largest number of criteria values in one query.
pub const MAX_CRITERIA: usize = 100;
/// How many ids one search may hold in memory at once.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// A group (the union of its terms' lists) up to this size is read whole; a longer one
    /// is probed per candidate.
    whole_list: usize,
    /// Ids held in all whole lists of one search together; past it, lists are probed.
    held: usize,
    /// Ids read at a time from a driving group, shared among its terms.
    drive_chunk: usize,
}

impl Bounds {
    const DEFAULT: Bounds = Bounds {
        whole_list: 50_000,
        held: 200_000,
        drive_chunk: 4096,
    };

    /// Ids read per term of a driving group of `terms`: the union's first `per_term` ids
    /// after the cursor are exact whatever the share, so a share keeps the union bounded
    /// (a share of at least one id, so a chunk always moves the cursor).
    fn per_term(&self, terms: usize) -> usize {
        (self.drive_chunk / terms.max(1)).max(1)
    }
}

/// The ids of one page, and how many ids were held at most while finding them.
struct Evaluated {
    ids: Vec<String>,
    more: bool,
    peak_held: usize,
}

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
    /// Supporters, in id order, projected to `fields`.
    pub supporters: Vec<Supporter>,
    /// The fields every supporter of the page carries (the purpose's, narrowed by the
    /// query's mask); the others were hidden, not empty.
    pub fields: FieldSet,
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
            let Evaluated {
                ids,
                more,
                peak_held,
            } = self
                .evaluate(&plan, after.as_deref(), Bounds::DEFAULT)
                .await?;
            tracing::debug!(
                ids_held = peak_held,
                page = ids.len(),
                "search page evaluated"
            );
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
                fields: visible,
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
            .get(Table::Meta, meta::COLLECTED_TERMS_INDEXED)
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
                .scan_range(
                    Table::SubjectKeys,
                    &start,
                    None,
                    Bounds::DEFAULT.drive_chunk,
                )
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
        b.put(Table::Meta, meta::COLLECTED_TERMS_INDEXED, b"1".to_vec());
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
    async fn evaluate(
        &self,
        plan: &Plan,
        after: Option<&str>,
        bounds: Bounds,
    ) -> Result<Evaluated> {
        let mut budget = bounds.held;
        let mut lists = Vec::with_capacity(plan.groups.len());
        for g in &plan.groups {
            lists.push(self.read_list(g, bounds, &mut budget).await?);
        }
        let mut exclusions = Vec::with_capacity(plan.exclusions.len());
        for g in &plan.exclusions {
            // An exclusion holds when the subject is on every one of its lists.
            let mut parts = Vec::with_capacity(g.len());
            for h in g {
                parts.push(
                    self.read_list(std::slice::from_ref(h), bounds, &mut budget)
                        .await?,
                );
            }
            exclusions.push(parts);
        }
        let lists_held = bounds.held - budget;
        let mut peak_held = lists_held;
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
                let (chunk, read) = self.drive(driver, cursor.as_deref(), bounds).await?;
                peak_held = peak_held.max(lists_held + read + out.len());
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
        peak_held = peak_held.max(lists_held + out.len());
        let more = out.len() > plan.page_size;
        out.truncate(plan.page_size);
        Ok(Evaluated {
            ids: out,
            more,
            peak_held,
        })
    }

    /// Reads a group's lists whole if their union fits both the whole-list limit and what
    /// is left of the search's `budget` (which it then uses up); otherwise the group is
    /// probed per candidate.
    async fn read_list(
        &self,
        group: &[TermHash],
        bounds: Bounds,
        budget: &mut usize,
    ) -> Result<List> {
        let limit = bounds.whole_list.min(*budget);
        let mut ids = BTreeSet::new();
        for h in group {
            let room = limit - ids.len();
            let rows = self
                .store
                .scan_range(Table::Postings, h, Some(&prefix_end(h)), room + 1)
                .await?;
            if rows.len() > room {
                return Ok(List::Large(group.to_vec()));
            }
            ids.extend(
                rows.iter()
                    .filter_map(|(k, _)| postings::subject_of(k).map(str::to_owned)),
            );
        }
        *budget -= ids.len();
        Ok(List::Whole(ids))
    }

    /// The next ids after `after` of the driving group (every subject without one).
    async fn drive(
        &self,
        group: Option<&Vec<TermHash>>,
        after: Option<&str>,
        bounds: Bounds,
    ) -> Result<(Vec<String>, usize)> {
        let Some(group) = group else {
            let start = after.map_or_else(Vec::new, |a| {
                let mut k = a.as_bytes().to_vec();
                k.push(0);
                k
            });
            let ids: Vec<String> = self
                .store
                .scan_range(Table::SubjectKeys, &start, None, bounds.drive_chunk)
                .await?
                .into_iter()
                .filter_map(|(k, _)| String::from_utf8(k).ok())
                .collect();
            let read = ids.len();
            return Ok((ids, read));
        };
        let per_term = bounds.per_term(group.len());
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
                .scan_range(Table::Postings, &start, Some(&prefix_end(h)), per_term)
                .await?;
            ids.extend(
                rows.iter()
                    .filter_map(|(k, _)| postings::subject_of(k).map(str::to_owned)),
            );
        }
        // Each list gave its first `per_term` ids after the cursor, so the union's first
        // `per_term` ids are exact (later ones may miss a list's next ids: dropped).
        let read = ids.len();
        Ok((ids.into_iter().take(per_term).collect(), read))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::access::Role;
    use crate::crypto::Key256;
    use crate::crypto::root_key::RootKey;
    use crate::journal::AuditOptions;
    use crate::storage::Store;
    use crate::storage::sled_store::{SledOptions, SledStore};

    const PEOPLE: usize = 300;
    const TAGS: usize = 30;

    /// Every page of `q`'s ids under `bounds`, and the most ids held for any page.
    async fn all_pages(
        v: &Vault,
        purpose: &Purpose,
        q: &SearchQuery,
        bounds: Bounds,
    ) -> (Vec<String>, usize) {
        let plan = v.plan(purpose, q).unwrap();
        let (mut ids, mut peak, mut after) = (Vec::new(), 0, None::<String>);
        loop {
            let page = v.evaluate(&plan, after.as_deref(), bounds).await.unwrap();
            peak = peak.max(page.peak_held);
            after = page.ids.last().cloned();
            ids.extend(page.ids);
            if !page.more {
                return (ids, peak);
            }
        }
    }

    #[tokio::test]
    async fn a_search_holds_a_bounded_number_of_ids_and_finds_the_same_people() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
        let root = RootKey::from_key(Key256::from_bytes(&[7; 32]));
        let v = Vault::with_store(raw, &root, AuditOptions::default())
            .await
            .unwrap();
        v.install_purposes(None).await.unwrap();
        let member = Caller {
            client_id: "member".into(),
            role: Role::CampaignTool,
            allowed_purposes: ["membership".to_owned()].into(),
            purpose: Some("membership".into()),
            request_id: "r".into(),
        };
        // Person i has tag t(i mod 30), and every third person `common`.
        let mut tagged: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for i in 0..PEOPLE {
            let mut tags: BTreeSet<String> = [format!("t{}", i % TAGS)].into();
            if i % 3 == 0 {
                tags.insert("common".into());
            }
            let s = Supporter {
                email: format!("p{i}@example.org"),
                tags: tags.clone(),
                ..Supporter::default()
            };
            let id = v.upsert(&member, &s, &[]).await.unwrap().id;
            for t in tags {
                tagged.entry(t).or_default().insert(id.clone());
            }
        }
        let registry = v.registry().await.unwrap();
        let purpose = registry.get("membership").unwrap().clone();
        let any: Vec<String> = (0..TAGS).map(|t| format!("t{t}")).collect();
        let union = |tags: &[String]| -> BTreeSet<String> {
            tags.iter()
                .flat_map(|t| tagged[t].iter().cloned())
                .collect()
        };
        let cases = [
            (
                SearchQuery {
                    tags_any: any.clone(),
                    ..SearchQuery::default()
                },
                union(&any),
            ),
            (
                SearchQuery {
                    tags_all: vec!["common".into()],
                    tags_any: any[..10].to_vec(),
                    ..SearchQuery::default()
                },
                union(&any[..10])
                    .intersection(&tagged["common"])
                    .cloned()
                    .collect(),
            ),
            (
                SearchQuery {
                    tags_all: vec!["common".into(), "t3".into()],
                    ..SearchQuery::default()
                },
                tagged["common"]
                    .intersection(&tagged["t3"])
                    .cloned()
                    .collect(),
            ),
        ];
        let tiny = Bounds {
            whole_list: 40,
            held: 60,
            drive_chunk: 64,
        };
        let roomy = Bounds {
            whole_list: 1_000_000,
            held: 1_000_000,
            drive_chunk: 100_000,
        };
        let page = 25;
        for (mut q, expected) in cases {
            q.page_size = page;
            let expected: Vec<String> = expected.into_iter().collect();
            let (small, small_peak) = all_pages(&v, &purpose, &q, tiny).await;
            let (large, large_peak) = all_pages(&v, &purpose, &q, roomy).await;
            assert_eq!(small, expected, "{q:?} under tight bounds");
            assert_eq!(large, expected, "{q:?} under roomy bounds");
            // Whole lists within `held`, one driving chunk, and the page being filled.
            let ceiling = tiny.held + tiny.drive_chunk + page as usize + 1;
            assert!(
                small_peak <= ceiling,
                "{q:?}: held {small_peak} > {ceiling}"
            );
            // The measure is real: read whole, the same query holds far more.
            if expected.len() >= 100 {
                assert!(large_peak >= PEOPLE, "{q:?}: held {large_peak}");
            }
        }

        // Whole lists share one budget: once it is spent, the next group is probed.
        let q = SearchQuery {
            tags_any: any[..4].to_vec(),
            tags_all: vec!["t0".into()],
            ..SearchQuery::default()
        };
        let plan = v.plan(&purpose, &q).unwrap();
        let mut budget = tiny.held;
        let mut kinds = Vec::new();
        for g in &plan.groups {
            kinds.push(match v.read_list(g, tiny, &mut budget).await.unwrap() {
                List::Whole(ids) => ids.len(),
                List::Large(_) => 0,
            });
        }
        // t0 (10 people, read whole), the four tags (40, read whole), the basis (300:
        // probed); `held` = 60 was spent down to 10 and never passed.
        assert_eq!(kinds, [10, 40, 0], "groups read whole (size) or probed (0)");
        assert_eq!(budget, tiny.held - 50);
        let mut spent = 15;
        let t0 = v
            .read_list(&plan.groups[0], tiny, &mut spent)
            .await
            .unwrap();
        assert!(matches!(t0, List::Whole(_)), "10 ids fit a budget of 15");
        let four = v
            .read_list(&plan.groups[1], tiny, &mut spent)
            .await
            .unwrap();
        assert!(
            matches!(four, List::Large(_)),
            "40 ids do not fit the 5 left"
        );
        assert_eq!(spent, 5);
    }
}
