//! Field names and field sets.
//!
//! A [`FieldSet`] says which fields of a supporter a reply may carry (a Get's field mask,
//! later a purpose's visible fields) or which fields an Update changes. Paths are the API's
//! field names; a parent path (`address`) stands for all its children.

use crate::error::InvalidInput;

/// One field of a supporter that can be masked or updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `given_name`
    GivenName,
    /// `family_name`
    FamilyName,
    /// `email`
    Email,
    /// `phone`
    Phone,
    /// `address.line1`
    AddressLine1,
    /// `address.line2`
    AddressLine2,
    /// `address.postcode`
    Postcode,
    /// `address.city`
    City,
    /// `address.country`
    Country,
    /// `tags`
    Tags,
    /// `custom`
    Custom,
    /// `source`
    Source,
    /// `created_at` (read-only)
    CreatedAt,
    /// `updated_at` (read-only)
    UpdatedAt,
}

impl Field {
    /// Every field.
    pub const ALL: [Field; 14] = [
        Field::GivenName,
        Field::FamilyName,
        Field::Email,
        Field::Phone,
        Field::AddressLine1,
        Field::AddressLine2,
        Field::Postcode,
        Field::City,
        Field::Country,
        Field::Tags,
        Field::Custom,
        Field::Source,
        Field::CreatedAt,
        Field::UpdatedAt,
    ];

    const ADDRESS: [Field; 5] = [
        Field::AddressLine1,
        Field::AddressLine2,
        Field::Postcode,
        Field::City,
        Field::Country,
    ];

    /// The API path of the field.
    pub fn path(self) -> &'static str {
        match self {
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::AddressLine1 => "address.line1",
            Field::AddressLine2 => "address.line2",
            Field::Postcode => "address.postcode",
            Field::City => "address.city",
            Field::Country => "address.country",
            Field::Tags => "tags",
            Field::Custom => "custom",
            Field::Source => "source",
            Field::CreatedAt => "created_at",
            Field::UpdatedAt => "updated_at",
        }
    }

    /// Whether callers may write the field.
    pub fn writable(self) -> bool {
        !matches!(self, Field::CreatedAt | Field::UpdatedAt)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldSet(u32);

const KNOWN_PATHS: &str = "given_name, family_name, email, phone, address, address.line1, \
    address.line2, address.postcode, address.city, address.country, tags, custom, source, \
    created_at, updated_at";

impl FieldSet {
    /// No field.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Every field.
    pub fn all() -> Self {
        Field::ALL.iter().fold(Self::empty(), |s, f| s.with(*f))
    }

    /// This set plus `field`.
    pub fn with(self, field: Field) -> Self {
        Self(self.0 | field.bit())
    }

    /// Whether `field` is in the set.
    pub fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Fields in both sets.
    pub fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The fields, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Parses a field mask's paths; `id` is accepted and ignored (always returned).
    /// `mask_name` names the request field in errors (`fields`, `update_mask`).
    pub fn parse<'a>(
        mask_name: &str,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, InvalidInput> {
        let mut set = Self::empty();
        for path in paths {
            let path = path.trim();
            if path == "id" {
                continue;
            }
            if path == "address" {
                set = Field::ADDRESS.iter().fold(set, |s, f| s.with(*f));
                continue;
            }
            match Field::ALL.iter().find(|f| f.path() == path) {
                Some(f) => set = set.with(*f),
                None => {
                    let shown: String = path.chars().take(64).collect();
                    return Err(InvalidInput::new(
                        mask_name,
                        format!("unknown field path {shown:?}; known paths: {KNOWN_PATHS}"),
                    ));
                }
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_paths() -> Result<(), InvalidInput> {
        let s = FieldSet::parse("fields", ["email", "address", "id"])?;
        assert!(s.contains(Field::Email));
        assert!(s.contains(Field::Postcode) && s.contains(Field::Country));
        assert!(!s.contains(Field::Phone));
        assert_eq!(
            FieldSet::parse("fields", ["address.city"])?.iter().count(),
            1
        );
        Ok(())
    }

    #[test]
    fn unknown_path_is_named() {
        let e = FieldSet::parse("update_mask", ["emial"]).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.starts_with("update_mask: unknown field path \"emial\""),
            "{msg}"
        );
    }

    #[test]
    fn all_contains_every_field() {
        let all = FieldSet::all();
        assert!(Field::ALL.iter().all(|f| all.contains(*f)));
        assert_eq!(all.intersect(FieldSet::empty()), FieldSet::empty());
    }
}
