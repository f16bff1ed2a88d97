//! Segment posting lists: for each searchable term, the ids of the subjects it holds for.
//!
//! A term is a tag, a postcode, an active consent (purpose and channel), a restriction, an
//! objection on a channel or a purpose the data was collected for. Its list lives in [`Table::Postings`] under the blind-index HMAC
//! of the term followed by each subject id, so a prefix scan lists the subjects in id order
//! and a point read tests one. Search intersects lists without decrypting a record; only the
//! page it returns is opened. What the store learns is which ids share a term, never the
//! term (see SECURITY.md).
//!
//! Every write of a subject moves its postings in the same batch, computed as the
//! difference between the terms before and after, so the lists follow the records exactly.

use std::collections::BTreeSet;

use crate::consent::ConsentState;
use crate::crypto::{BlindIndexKey, IndexKind};
use crate::purpose::Channel;
use crate::storage::{Batch, Table};
use crate::subject_state::SubjectState;
use crate::supporter::Supporter;

/// The HMAC naming a term's list.
pub type TermHash = [u8; 32];

/// A searchable term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term<'a> {
    /// A normalized tag.
    Tag(&'a str),
    /// A normalized postcode.
    Postcode(&'a str),
    /// Active consent for a purpose on a channel.
    Consent(&'a str, Channel),
    /// Processing is restricted.
    Restricted,
    /// The person objected on a channel.
    Objected(Channel),
    /// The data was collected for a purpose (the basis of a purpose that does not rest on
    /// consent).
    Collected(&'a str),
}

impl Term<'_> {
    /// The term's list name.
    pub fn hash(self, key: &BlindIndexKey) -> TermHash {
        match self {
            Term::Tag(t) => key.index(IndexKind::Tag, t),
            Term::Postcode(p) => key.index(IndexKind::Postcode, p),
            Term::Consent(p, c) => key.index(IndexKind::Term, &format!("consent\0{p}\0{c}")),
            Term::Restricted => key.index(IndexKind::Term, "restricted"),
            Term::Objected(c) => key.index(IndexKind::Term, &format!("objected\0{c}")),
            Term::Collected(p) => key.index(IndexKind::Term, &format!("collected\0{p}")),
        }
    }
}

/// Every term `supporter` holds for, given its consent and state.
pub fn terms(
    key: &BlindIndexKey,
    supporter: &Supporter,
    consent: &ConsentState,
    state: &SubjectState,
) -> BTreeSet<TermHash> {
    let mut out = BTreeSet::new();
    for t in &supporter.tags {
        out.insert(Term::Tag(t).hash(key));
    }
    if !supporter.address.postcode.is_empty() {
        out.insert(Term::Postcode(&supporter.address.postcode).hash(key));
    }
    for s in consent.statuses().filter(|s| s.active) {
        out.insert(Term::Consent(&s.purpose, s.channel).hash(key));
    }
    if state.restricted {
        out.insert(Term::Restricted.hash(key));
    }
    for c in &state.objected {
        out.insert(Term::Objected(*c).hash(key));
    }
    for p in &state.collected_for {
        out.insert(Term::Collected(p).hash(key));
    }
    out
}

/// The store key of `subject` in the list `term`.
pub fn key(term: &TermHash, subject: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + subject.len());
    k.extend_from_slice(term);
    k.extend_from_slice(subject.as_bytes());
    k
}

/// The subject id of a posting key.
pub fn subject_of(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(32..)?).ok()
}

/// Adds to `batch` the moves from `before` to `after` for `subject`.
pub fn diff(
    batch: &mut Batch,
    subject: &str,
    before: &BTreeSet<TermHash>,
    after: &BTreeSet<TermHash>,
) {
    for gone in before.difference(after) {
        batch.delete(Table::Postings, &key(gone, subject));
    }
    for new in after.difference(before) {
        batch.put(Table::Postings, &key(new, subject), Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key256;
    use crate::crypto::root_key::RootKey;

    #[test]
    fn terms_follow_tags_postcode_and_state() {
        let key = BlindIndexKey::derive(&RootKey::from_key(Key256::from_bytes(&[3; 32])));
        let mut s = Supporter::default();
        s.tags.insert("volunteer".into());
        s.address.postcode = "75011".into();
        let state = SubjectState {
            restricted: true,
            objected: [Channel::Sms].into_iter().collect(),
            ..SubjectState::default()
        };
        let t = terms(&key, &s, &ConsentState::default(), &state);
        assert_eq!(t.len(), 4);
        assert!(t.contains(&Term::Tag("volunteer").hash(&key)));
        assert!(t.contains(&Term::Objected(Channel::Sms).hash(&key)));
        // A tag and a postcode with the same text are different terms.
        assert_ne!(
            Term::Tag("75011").hash(&key),
            Term::Postcode("75011").hash(&key)
        );
        let mut b = Batch::new();
        diff(&mut b, "id", &t, &BTreeSet::new());
        assert_eq!(b.ops.len(), 4);
        assert_eq!(subject_of(&key_of_first(&t)), Some("id"));
    }

    fn key_of_first(t: &BTreeSet<TermHash>) -> Vec<u8> {
        key(t.iter().next().unwrap_or(&[0; 32]), "id")
    }
}
