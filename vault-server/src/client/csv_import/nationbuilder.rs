//! `--preset nationbuilder`: the columns of NationBuilder's people export that have a place
//! in a supporter.
//!
//! Campaigns leaving NationBuilder bring its export as it is: dozens of columns, most with no
//! place in the vault (`sex`, `support_level`, `is_volunteer`, ...). The preset places the
//! ones that have one; the others are left out and listed in the import's summary with how
//! many of their cells held something, so nothing is lost without the user knowing.
//!
//! Two choices are made here. `mobile_number` is the supporter's phone (the number SMS
//! consent, `mobile_opt_in`, is about); `phone_number` is used when the mobile cell is
//! empty, and otherwise kept as `custom.phone_number` unless it is the same number. The two
//! opt-in columns are consent for the call's purpose, on the email and the sms channel.

use super::Target;

/// The custom key a `phone_number` is kept under when the row also has a mobile number.
const SECOND_PHONE_KEY: &str = "phone_number";

/// What a folded NationBuilder header fills, with `purpose` the call's purpose; `None` for
/// a column the preset does not place (the default names then get their turn).
pub(super) fn target(folded: &str, purpose: &str) -> Option<Target> {
    let consent = |channel: &str| Target::Consent {
        purpose: purpose.to_owned(),
        channel: channel.to_owned(),
    };
    Some(match folded {
        "email" => Target::Email,
        "first_name" => Target::GivenName,
        "last_name" => Target::FamilyName,
        "mobile_number" => Target::Phone,
        "phone_number" => Target::SecondPhone {
            custom_key: SECOND_PHONE_KEY.to_owned(),
        },
        "tag_list" => Target::CommaTags,
        "address1" | "primary_address1" => Target::Line1,
        "address2" | "primary_address2" => Target::Line2,
        "city" | "primary_city" => Target::City,
        "zip" | "primary_zip" => Target::Postcode,
        "country_code" | "primary_country_code" => Target::Country,
        "email_opt_in" => consent("email"),
        "mobile_opt_in" => consent("sms"),
        "nationbuilder_id" => Target::Custom("nationbuilder_id".to_owned()),
        "external_id" => Target::Custom("external_id".to_owned()),
        _ => return None,
    })
}
