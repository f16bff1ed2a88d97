//! The `Supporter` record of the API, and its normalization as a whole.
//!
//! Strings are empty when unset, as in the API. `Debug` prints the id and which fields are
//! set, never a value: a supporter's fields are personal data (and, for a campaign,
//! special-category data revealing a political opinion).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::fields::{Field, FieldSet};
use super::normalize;
use crate::error::InvalidInput;

/// A postal address.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// First line.
    pub line1: String,
    /// Second line.
    pub line2: String,
    /// Postcode (upper-cased, single spaces).
    pub postcode: String,
    /// City.
    pub city: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// A supporter, as stored and returned.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supporter {
    /// Subject id (a UUID), assigned by the vault.
    pub id: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Email, trimmed and lower-cased.
    pub email: String,
    /// Phone in E.164.
    pub phone: String,
    /// Postal address.
    pub address: Address,
    /// Tags, normalized, sorted, distinct.
    pub tags: BTreeSet<String>,
    /// Campaign-defined fields.
    pub custom: BTreeMap<String, String>,
    /// Where the data came from (GDPR art. 14), for example `form:petition-2026`.
    pub source: String,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// Last change, microseconds since the Unix epoch.
    pub updated_at_us: i64,
}

impl fmt::Debug for Supporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<&str> = self.present().into_iter().map(Field::path).collect();
        f.debug_struct("Supporter")
            .field("id", &self.id)
            .field("fields_set", &set)
            .finish_non_exhaustive()
    }
}

/// How to find a supporter without its id.
#[derive(Clone, PartialEq, Eq)]
pub enum LookupKey {
    /// By email (any casing, surrounding spaces allowed).
    Email(String),
    /// By phone (any format the phone parser accepts; default region FR).
    Phone(String),
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Email(_) => f.write_str("LookupKey::Email(<redacted>)"),
            Self::Phone(_) => f.write_str("LookupKey::Phone(<redacted>)"),
        }
    }
}

/// A supporter as a read or a write returns it: the fields the caller may see (the
/// purpose's, narrowed by the request's field mask) and which fields those are, so that a
/// field hidden from the caller is told apart from an empty one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The supporter, holding only `fields` (and the id).
    pub supporter: Supporter,
    /// The fields the reply carries; every other field was hidden, not empty.
    pub fields: FieldSet,
}

impl Supporter {
    /// The projection of this supporter to `fields`, saying which they are.
    pub fn shown(&self, fields: FieldSet) -> Shown {
        Shown {
            supporter: self.project(fields),
            fields,
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// The supporter's id (existing or new).
    pub id: String,
    /// Whether a new supporter was created.
    pub created: bool,
    /// Whether anything was written (false when an existing supporter already held it all).
    pub changed: bool,
}

impl Supporter {
    /// The fields that hold a value.
    pub fn present(&self) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|f| match f {
                Field::GivenName => !self.given_name.is_empty(),
                Field::FamilyName => !self.family_name.is_empty(),
                Field::Email => !self.email.is_empty(),
                Field::Phone => !self.phone.is_empty(),
                Field::AddressLine1 => !self.address.line1.is_empty(),
                Field::AddressLine2 => !self.address.line2.is_empty(),
                Field::Postcode => !self.address.postcode.is_empty(),
                Field::City => !self.address.city.is_empty(),
                Field::Country => !self.address.country.is_empty(),
                Field::Tags => !self.tags.is_empty(),
                Field::Custom => !self.custom.is_empty(),
                Field::Source => !self.source.is_empty(),
                Field::CreatedAt => self.created_at_us != 0,
                Field::UpdatedAt => self.updated_at_us != 0,
            })
            .collect()
    }

    /// Normalizes and validates every field (the id and timestamps are the vault's and are
    /// left alone).
    pub fn normalized(&self) -> Result<Self, InvalidInput> {
        let email = if self.email.trim().is_empty() {
            String::new()
        } else {
            normalize::email(&self.email)?
        };
        let phone = if self.phone.trim().is_empty() {
            String::new()
        } else {
            normalize::phone(&self.phone)?
        };
        Ok(Self {
            id: self.id.clone(),
            given_name: normalize::text("given_name", &self.given_name, normalize::MAX_NAME_LEN)?,
            family_name: normalize::text(
                "family_name",
                &self.family_name,
                normalize::MAX_NAME_LEN,
            )?,
            email,
            phone,
            address: Address {
                line1: normalize::text(
                    "address.line1",
                    &self.address.line1,
                    normalize::MAX_ADDRESS_LINE_LEN,
                )?,
                line2: normalize::text(
                    "address.line2",
                    &self.address.line2,
                    normalize::MAX_ADDRESS_LINE_LEN,
                )?,
                postcode: normalize::postcode(&self.address.postcode)?,
                city: normalize::text("address.city", &self.address.city, normalize::MAX_CITY_LEN)?,
                country: normalize::country(&self.address.country)?,
            },
            tags: normalize::tags(self.tags.iter().map(String::as_str))?,
            custom: normalize::custom(self.custom.iter().map(|(k, v)| (k.as_str(), v.as_str())))?,
            source: normalize::text("source", &self.source, normalize::MAX_SOURCE_LEN)?,
            created_at_us: self.created_at_us,
            updated_at_us: self.updated_at_us,
        })
    }

    /// An email or a phone is what dedupe and lookup stand on; a supporter needs one.
    pub fn require_contact(&self) -> Result<(), InvalidInput> {
        if self.email.is_empty() && self.phone.is_empty() {
            return Err(InvalidInput::new(
                "supporter",
                "needs an email or a phone: they identify the person for deduplication",
            ));
        }
        Ok(())
    }

    /// Copies the fields of `set` from `other` into `self`.
    pub fn assign(&mut self, other: &Supporter, set: FieldSet) {
        for field in set.iter() {
            match field {
                Field::GivenName => self.given_name.clone_from(&other.given_name),
                Field::FamilyName => self.family_name.clone_from(&other.family_name),
                Field::Email => self.email.clone_from(&other.email),
                Field::Phone => self.phone.clone_from(&other.phone),
                Field::AddressLine1 => self.address.line1.clone_from(&other.address.line1),
                Field::AddressLine2 => self.address.line2.clone_from(&other.address.line2),
                Field::Postcode => self.address.postcode.clone_from(&other.address.postcode),
                Field::City => self.address.city.clone_from(&other.address.city),
                Field::Country => self.address.country.clone_from(&other.address.country),
                Field::Tags => self.tags.clone_from(&other.tags),
                Field::Custom => self.custom.clone_from(&other.custom),
                Field::Source => self.source.clone_from(&other.source),
                Field::CreatedAt => self.created_at_us = other.created_at_us,
                Field::UpdatedAt => self.updated_at_us = other.updated_at_us,
            }
        }
    }

    /// A copy holding only the id and the fields of `set`.
    pub fn project(&self, set: FieldSet) -> Supporter {
        let mut out = Supporter {
            id: self.id.clone(),
            ..Supporter::default()
        };
        out.assign(self, set);
        out
    }

    /// Merges an upserted (normalized) supporter into this stored one: set scalars
    /// overwrite, tags are added, custom keys overwrite, the original source is kept.
    pub fn merge_upsert(&mut self, incoming: &Supporter) {
        let set: FieldSet = incoming
            .present()
            .into_iter()
            .filter(|f| !matches!(f, Field::Tags | Field::Custom | Field::Source) && f.writable())
            .fold(FieldSet::empty(), FieldSet::with);
        self.assign(incoming, set);
        self.tags.extend(incoming.tags.iter().cloned());
        for (k, v) in &incoming.custom {
            self.custom.insert(k.clone(), v.clone());
        }
        if self.source.is_empty() {
            self.source.clone_from(&incoming.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Supporter {
        Supporter {
            id: "id-1".into(),
            given_name: "Marianne".into(),
            email: "marianne@example.fr".into(),
            phone: "+33612345678".into(),
            ..Supporter::default()
        }
    }

    #[test]
    fn debug_hides_values() {
        let shown = format!("{:?}", sample());
        assert!(shown.contains("id-1") && shown.contains("given_name"));
        assert!(
            !shown.contains("Marianne") && !shown.contains("example.fr") && !shown.contains("612")
        );
    }

    #[test]
    fn projection_keeps_only_the_set() {
        let p = sample().project(FieldSet::empty().with(Field::Email));
        assert_eq!(p.id, "id-1");
        assert_eq!(p.email, "marianne@example.fr");
        assert!(p.given_name.is_empty() && p.phone.is_empty());
    }

    #[test]
    fn merge_adds_tags_and_keeps_source() {
        let mut stored = sample();
        stored.tags.insert("a".into());
        stored.source = "form:one".into();
        let mut incoming = Supporter {
            family_name: "Dupont".into(),
            source: "import:two".into(),
            ..Supporter::default()
        };
        incoming.tags.insert("b".into());
        stored.merge_upsert(&incoming);
        assert_eq!(stored.family_name, "Dupont");
        assert_eq!(stored.given_name, "Marianne");
        assert_eq!(stored.tags.len(), 2);
        assert_eq!(stored.source, "form:one");
    }

    #[test]
    fn contact_required() {
        assert!(Supporter::default().require_contact().is_err());
        assert!(sample().require_contact().is_ok());
    }
}
