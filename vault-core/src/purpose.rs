//! Purposes: why personal data is processed, on what legal basis, through which channels,
//! for how long, and which fields each purpose may see.
//!
//! The registry is the source of the record of processing activities (GDPR art. 30) and of
//! every access decision: a call declares its purpose, and the vault returns only that
//! purpose's fields, to clients allowed to use it, about people who have a basis for it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;
use crate::supporter::{Field, FieldSet};

/// The built-in purpose of the data protection officer: answering data-subject requests
/// (GDPR arts. 12 to 22). Only the `dpo` role may use it; it sees every field and needs no
/// consent, since the law obliges the controller to answer.
pub const DPO_PURPOSE: &str = "data-subject-rights";

/// The shortest retention a purpose may have, in days, unless the daemon's configuration
/// raises it (`min_retention_days`): a purpose's retention decides when the sweep
/// crypto-shreds people, so a slip (or a hostile admin) setting it to 0 or 1 would erase
/// the file at the next sweep. The floor leaves a month to notice and undo such a change.
pub const MIN_RETENTION_DAYS: u32 = 30;

/// The highest the floor may be raised to, in days (ten years: the longest retention of
/// the default registry, accounting records).
pub const MAX_RETENTION_FLOOR_DAYS: u32 = 10 * 365;

/// Checks `purpose` keeps data at least `floor_days` (the built-in DPO purpose, which
/// never keeps anything of its own, is exempt).
pub fn check_retention(purpose: &Purpose, floor_days: u32) -> Result<(), InvalidInput> {
    if purpose.id != DPO_PURPOSE && purpose.retention_days < floor_days {
        return Err(InvalidInput::new(
            "purpose.retention_days",
            format!(
                "purpose {}: must be at least {floor_days} days (the retention floor, \
                 min_retention_days): a shorter retention makes the next sweep erase people \
                 before anyone can notice the change",
                purpose.id
            ),
        ));
    }
    Ok(())
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The API name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "must be one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }
    };
}

named_enum! {
    /// A contact channel.
    Channel {
        /// Email.
        Email => "email",
        /// Text messages.
        Sms => "sms",
        /// Phone calls.
        Phone => "phone",
        /// Postal mail.
        Post => "post",
        /// Door to door, events, in person.
        InPerson => "in-person",
    }
}

named_enum! {
    /// Lawful basis of GDPR art. 6(1).
    LawfulBasis {
        /// 6(1)(a): the person's consent.
        Consent => "consent",
        /// 6(1)(b): a contract with the person (membership).
        Contract => "contract",
        /// 6(1)(c): a legal obligation of the controller.
        LegalObligation => "legal-obligation",
        /// 6(1)(d): vital interests.
        VitalInterests => "vital-interests",
        /// 6(1)(e): a task in the public interest.
        PublicTask => "public-task",
        /// 6(1)(f): the controller's legitimate interests.
        LegitimateInterest => "legitimate-interest",
    }
}

named_enum! {
    /// Condition of GDPR art. 9(2) for special-category data (political opinions).
    SpecialCategoryBasis {
        /// 9(2)(a): explicit consent.
        ExplicitConsent => "explicit-consent",
        /// 9(2)(d): members of a political body, in its legitimate activities.
        PoliticalBodyMembers => "political-body-members",
        /// 9(2)(d): people in regular contact with a political body about its aims.
        PoliticalBodyRegularContacts => "political-body-regular-contacts",
        /// 9(2)(e): data manifestly made public by the person.
        MadePublic => "made-public",
        /// 9(2)(f): establishment, exercise or defence of legal claims.
        LegalClaims => "legal-claims",
    }
}

/// A purpose of processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Identifier, sent in `x-vault-purpose` (`a-z 0-9 -`, at most 64 characters).
    pub id: String,
    /// What the purpose is, in words for the record of processing activities.
    pub description: String,
    /// Art. 6 basis.
    pub lawful_basis: LawfulBasis,
    /// Art. 9 basis.
    pub special_category_basis: SpecialCategoryBasis,
    /// Channels the purpose contacts people through.
    pub channels: BTreeSet<Channel>,
    /// Days the data may be kept for this purpose after the last positive contact.
    pub retention_days: u32,
    /// Fields the purpose may see and write (API paths; `address` for all of it).
    #[serde(with = "field_paths")]
    pub fields: FieldSet,
    /// For a purpose that does not rest on consent: other purposes whose people it also
    /// reaches (besides the people collected for it). The documented rule of the default
    /// registry: canvassing, for people in regular contact with the campaign, reaches its
    /// members. Empty for consent-based purposes, which reach only consenting people.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub reaches_collected_for: BTreeSet<String>,
}

mod field_paths {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::supporter::FieldSet;

    pub fn serialize<S: Serializer>(set: &FieldSet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(set.iter().map(|f| f.path()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FieldSet, D::Error> {
        let paths = Vec::<String>::deserialize(d)?;
        FieldSet::parse("fields", paths.iter().map(String::as_str))
            .map_err(serde::de::Error::custom)
    }
}

impl Purpose {
    /// Whether the person's consent is the basis (then an active consent is required).
    pub fn needs_consent(&self) -> bool {
        self.lawful_basis == LawfulBasis::Consent
            || self.special_category_basis == SpecialCategoryBasis::ExplicitConsent
    }

    /// Checks the purpose is well formed.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_id(&self.id)?;
        if self.description.trim().is_empty() || self.description.chars().count() > 500 {
            return Err(InvalidInput::new(
                "purpose.description",
                "must say what the purpose is, in 1 to 500 characters",
            ));
        }
        if self.channels.is_empty() {
            return Err(InvalidInput::new(
                "purpose.channels",
                "must name at least one channel",
            ));
        }
        if self.fields.is_empty() {
            return Err(InvalidInput::new(
                "purpose.fields",
                "must name at least one field",
            ));
        }
        if self.needs_consent() && !self.reaches_collected_for.is_empty() {
            return Err(InvalidInput::new(
                "purpose.reaches_collected_for",
                "a consent-based purpose reaches only the people who consented to it",
            ));
        }
        for other in &self.reaches_collected_for {
            validate_id(other)?;
        }
        if (self.lawful_basis == LawfulBasis::Consent)
            != (self.special_category_basis == SpecialCategoryBasis::ExplicitConsent)
        {
            return Err(InvalidInput::new(
                "purpose.special_category_basis",
                "a consent-based purpose needs explicit consent under art. 9(2)(a), and explicit \
                 consent needs the consent basis under art. 6(1)(a)",
            ));
        }
        Ok(())
    }
}

/// Checks a purpose id.
pub fn validate_id(id: &str) -> Result<(), InvalidInput> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && id.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "purpose.id",
            "must be 1 to 64 characters of a-z, 0-9 and '-', starting with a letter",
        ))
    }
}

fn fields(list: &[Field]) -> FieldSet {
    list.iter().fold(FieldSet::empty(), |s, f| s.with(*f))
}

const NAMES: [Field; 2] = [Field::GivenName, Field::FamilyName];
const ADDRESS: [Field; 5] = [
    Field::AddressLine1,
    Field::AddressLine2,
    Field::Postcode,
    Field::City,
    Field::Country,
];
/// Three years after the last contact: CNIL's guidance for political communication with
/// supporters and contacts.
const THREE_YEARS: u32 = 3 * 365;

/// The registry shipped for a zero-configuration start (API.md, "Default purposes").
pub fn default_registry() -> Vec<Purpose> {
    let all_channels: BTreeSet<Channel> = Channel::ALL.iter().copied().collect();
    let ch = |c: &[Channel]| c.iter().copied().collect::<BTreeSet<_>>();
    let with_meta = |list: &[Field]| fields(list).with(Field::CreatedAt).with(Field::UpdatedAt);
    vec![
        Purpose {
            id: "newsletter".into(),
            description: "Sending the campaign newsletter by email to people who asked for it"
                .into(),
            lawful_basis: LawfulBasis::Consent,
            special_category_basis: SpecialCategoryBasis::ExplicitConsent,
            channels: ch(&[Channel::Email]),
            retention_days: THREE_YEARS,
            fields: with_meta(&[NAMES[0], NAMES[1], Field::Email, Field::Tags]),
            reaches_collected_for: BTreeSet::new(),
        },
        Purpose {
            id: "sms-mobilisation".into(),
            description: "Text messages calling supporters to act (events, canvassing, voting)"
                .into(),
            lawful_basis: LawfulBasis::Consent,
            special_category_basis: SpecialCategoryBasis::ExplicitConsent,
            channels: ch(&[Channel::Sms]),
            retention_days: THREE_YEARS,
            fields: with_meta(&[NAMES[0], NAMES[1], Field::Phone, Field::Tags]),
            reaches_collected_for: BTreeSet::new(),
        },
        Purpose {
            id: "event-invitations".into(),
            description: "Invitations to campaign events near the person".into(),
            lawful_basis: LawfulBasis::Consent,
            special_category_basis: SpecialCategoryBasis::ExplicitConsent,
            channels: ch(&[Channel::Email, Channel::Sms]),
            retention_days: THREE_YEARS,
            fields: with_meta(&[
                NAMES[0],
                NAMES[1],
                Field::Email,
                Field::Phone,
                Field::Postcode,
                Field::Tags,
            ]),
            reaches_collected_for: BTreeSet::new(),
        },
        Purpose {
            id: "canvassing".into(),
            description: "Door-to-door canvassing of people in regular contact with the campaign"
                .into(),
            lawful_basis: LawfulBasis::LegitimateInterest,
            special_category_basis: SpecialCategoryBasis::PoliticalBodyRegularContacts,
            channels: ch(&[Channel::InPerson]),
            retention_days: THREE_YEARS,
            fields: with_meta(&[
                NAMES[0],
                NAMES[1],
                ADDRESS[0],
                ADDRESS[1],
                ADDRESS[2],
                ADDRESS[3],
                ADDRESS[4],
                Field::Tags,
            ]),
            // Members are in regular contact with the campaign (art. 9(2)(d)): canvassing
            // reaches them as well as the people collected for it.
            reaches_collected_for: ["membership".to_owned()].into_iter().collect(),
        },
        Purpose {
            id: "membership".into(),
            description: "Managing the membership of the party's members".into(),
            lawful_basis: LawfulBasis::Contract,
            special_category_basis: SpecialCategoryBasis::PoliticalBodyMembers,
            channels: all_channels.clone(),
            retention_days: THREE_YEARS,
            fields: FieldSet::all(),
            reaches_collected_for: BTreeSet::new(),
        },
        Purpose {
            id: "donations-accounting".into(),
            description: "Keeping the accounts of donations as campaign-finance law requires"
                .into(),
            lawful_basis: LawfulBasis::LegalObligation,
            special_category_basis: SpecialCategoryBasis::PoliticalBodyRegularContacts,
            channels: ch(&[Channel::Post]),
            // Accounting records are kept ten years (French commercial code, art. L123-22).
            retention_days: 10 * 365,
            fields: with_meta(&[
                NAMES[0],
                NAMES[1],
                ADDRESS[0],
                ADDRESS[1],
                ADDRESS[2],
                ADDRESS[3],
                ADDRESS[4],
                Field::Email,
            ]),
            reaches_collected_for: BTreeSet::new(),
        },
        dpo_purpose(),
    ]
}

/// The built-in purpose of [`DPO_PURPOSE`].
pub fn dpo_purpose() -> Purpose {
    Purpose {
        id: DPO_PURPOSE.into(),
        description: "Answering data-subject requests: access, rectification, erasure, \
                      restriction, objection (GDPR arts. 12 to 22). Used by the DPO only."
            .into(),
        lawful_basis: LawfulBasis::LegalObligation,
        special_category_basis: SpecialCategoryBasis::LegalClaims,
        channels: Channel::ALL.iter().copied().collect(),
        // Answering a request never extends how long data is kept.
        retention_days: 0,
        fields: FieldSet::all(),
        reaches_collected_for: BTreeSet::new(),
    }
}

/// The registry a start leaves in the store, given what the store holds (`stored`) and the
/// config file's `[[purposes]]` (`configured`): the stored purposes, or the default registry
/// when the store holds none yet (none of it with `replace_defaults`), each `configured`
/// purpose added or replacing the one with its id, and the built-in DPO purpose. So one
/// `[[purposes]]` entry adds to the defaults instead of dropping them, and the same file
/// gives the same registry on a new store and at every later start. A start never removes a
/// stored purpose: clients and people's collected-for purposes point at it (`replace_defaults`
/// only decides what a new store starts with).
pub fn registry_at_start(
    stored: &Registry,
    configured: &[Purpose],
    replace_defaults: bool,
) -> Registry {
    let base: Vec<Purpose> = if stored.iter().next().is_some() {
        stored.iter().cloned().collect()
    } else if replace_defaults {
        Vec::new()
    } else {
        default_registry()
    };
    Registry::new(
        base.into_iter()
            .chain(configured.iter().cloned())
            .chain(std::iter::once(dpo_purpose())),
    )
}

/// The purposes in force, by id.
#[derive(Debug, Clone, Default)]
pub struct Registry(BTreeMap<String, Purpose>);

impl Registry {
    /// A registry of `purposes`.
    pub fn new(purposes: impl IntoIterator<Item = Purpose>) -> Self {
        Self(purposes.into_iter().map(|p| (p.id.clone(), p)).collect())
    }

    /// The purpose `id`.
    pub fn get(&self, id: &str) -> Option<&Purpose> {
        self.0.get(id)
    }

    /// Every purpose, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Purpose> {
        self.0.values()
    }

    /// The known ids, for error messages.
    pub fn ids(&self) -> String {
        self.0.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_api() {
        let reg = default_registry();
        for p in &reg {
            p.validate().unwrap();
        }
        let ids: Vec<_> = reg.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "newsletter",
                "sms-mobilisation",
                "event-invitations",
                "canvassing",
                "membership",
                "donations-accounting",
                DPO_PURPOSE
            ]
        );
        let r = Registry::new(reg);
        let news = r.get("newsletter").unwrap();
        assert!(news.needs_consent());
        assert!(news.fields.contains(Field::Email) && !news.fields.contains(Field::Phone));
        assert!(!r.get("canvassing").unwrap().needs_consent());
        assert!(r.get("canvassing").unwrap().fields.contains(Field::City));
        assert_eq!(
            r.get("membership").unwrap().channels.len(),
            Channel::ALL.len()
        );
    }

    fn flash() -> Purpose {
        Purpose {
            id: "flash".into(),
            retention_days: 60,
            ..default_registry()[3].clone()
        }
    }

    fn ids(r: &Registry) -> Vec<&str> {
        r.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn one_configured_purpose_keeps_the_other_defaults() {
        let defaults: Vec<String> = default_registry().into_iter().map(|p| p.id).collect();
        let mut newsletter = default_registry()[0].clone();
        newsletter.retention_days = 365;
        let first = registry_at_start(&Registry::default(), &[newsletter.clone(), flash()], false);
        let mut want: Vec<&str> = defaults.iter().map(String::as_str).collect();
        want.push("flash");
        want.sort_unstable();
        assert_eq!(ids(&first), want);
        assert_eq!(
            first.get("newsletter"),
            Some(&newsletter),
            "the file's wins"
        );
        // A later start with the same file leaves the same registry.
        let later = registry_at_start(&first, &[newsletter, flash()], false);
        assert_eq!(ids(&later), ids(&first));
        assert_eq!(later.get("newsletter"), first.get("newsletter"));
    }

    #[test]
    fn replace_defaults_starts_a_new_store_with_the_file_alone() {
        let first = registry_at_start(&Registry::default(), &[flash()], true);
        assert_eq!(ids(&first), ["data-subject-rights", "flash"]);
        // A start never removes a stored purpose.
        let seeded = registry_at_start(&Registry::default(), &[], false);
        let later = registry_at_start(&seeded, &[flash()], true);
        assert_eq!(later.iter().count(), seeded.iter().count() + 1);
        // The built-in DPO purpose is always there.
        assert!(
            registry_at_start(&Registry::default(), &[], true)
                .get(DPO_PURPOSE)
                .is_some()
        );
    }

    #[test]
    fn serde_uses_api_names() {
        let p = &default_registry()[0];
        let json = serde_json::to_string(p).unwrap();
        assert!(json.contains("\"lawful_basis\":\"consent\""), "{json}");
        assert!(json.contains("\"channels\":[\"email\"]"), "{json}");
        let back: Purpose = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, p);
        let bad = json.replace("\"email\"]", "\"pigeon\"]");
        let err = serde_json::from_str::<Purpose>(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be one of"), "{err}");
    }

    #[test]
    fn validation_names_the_rule() {
        let mut p = default_registry()[0].clone();
        p.id = "Bad Id".into();
        assert_eq!(p.validate().unwrap_err().field, "purpose.id");
        let mut p = default_registry()[0].clone();
        p.special_category_basis = SpecialCategoryBasis::PoliticalBodyMembers;
        assert_eq!(
            p.validate().unwrap_err().field,
            "purpose.special_category_basis"
        );
        let mut p = default_registry()[0].clone();
        p.channels.clear();
        assert!(p.validate().is_err());
    }
}
