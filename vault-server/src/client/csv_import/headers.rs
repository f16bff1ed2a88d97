//! The header names the default mapping recognises, in English and French, and how a header
//! is folded before it is looked up.
//!
//! [`HEADERS`] is the one table of them: [`super::default_target`] reads it, and
//! docs/import.md lists the same names (a test compares the two, so neither can drift).

use super::Target;

/// Every header the default mapping recognises, folded as [`normalize_header`] folds it, with
/// the field it fills. `custom_<key>` and `consent:<purpose>[:<channel>]` columns are
/// patterns, not names, and are not in it.
pub const HEADERS: &[(&str, Target)] = &[
    ("email", Target::Email),
    ("e_mail", Target::Email),
    ("mail", Target::Email),
    ("courriel", Target::Email),
    ("email_address", Target::Email),
    ("adresse_email", Target::Email),
    ("adresse_e_mail", Target::Email),
    ("adresse_mail", Target::Email),
    ("adresse_courriel", Target::Email),
    ("phone", Target::Phone),
    ("phone_number", Target::Phone),
    ("telephone", Target::Phone),
    ("tel", Target::Phone),
    ("mobile", Target::Phone),
    ("portable", Target::Phone),
    ("numero_de_telephone", Target::Phone),
    ("numero", Target::Phone),
    ("given_name", Target::GivenName),
    ("first_name", Target::GivenName),
    ("firstname", Target::GivenName),
    ("forename", Target::GivenName),
    ("prenom", Target::GivenName),
    ("family_name", Target::FamilyName),
    ("last_name", Target::FamilyName),
    ("lastname", Target::FamilyName),
    ("surname", Target::FamilyName),
    ("nom", Target::FamilyName),
    ("nom_de_famille", Target::FamilyName),
    ("line1", Target::Line1),
    ("line_1", Target::Line1),
    ("address", Target::Line1),
    ("address_line1", Target::Line1),
    ("address_line_1", Target::Line1),
    ("address1", Target::Line1),
    ("adresse", Target::Line1),
    ("adresse1", Target::Line1),
    ("adresse_1", Target::Line1),
    ("rue", Target::Line1),
    ("line2", Target::Line2),
    ("line_2", Target::Line2),
    ("address_line2", Target::Line2),
    ("address_line_2", Target::Line2),
    ("address2", Target::Line2),
    ("adresse2", Target::Line2),
    ("adresse_2", Target::Line2),
    ("complement", Target::Line2),
    ("complement_d_adresse", Target::Line2),
    ("complement_adresse", Target::Line2),
    ("postcode", Target::Postcode),
    ("post_code", Target::Postcode),
    ("postal_code", Target::Postcode),
    ("zip", Target::Postcode),
    ("zip_code", Target::Postcode),
    ("zipcode", Target::Postcode),
    ("address_postcode", Target::Postcode),
    ("code_postal", Target::Postcode),
    ("codepostal", Target::Postcode),
    ("cp", Target::Postcode),
    ("city", Target::City),
    ("town", Target::City),
    ("address_city", Target::City),
    ("ville", Target::City),
    ("commune", Target::City),
    ("country", Target::Country),
    ("country_code", Target::Country),
    ("address_country", Target::Country),
    ("pays", Target::Country),
    ("tags", Target::Tags),
    ("tag", Target::Tags),
    ("etiquettes", Target::Tags),
    ("etiquette", Target::Tags),
    ("source", Target::Source),
    ("origine", Target::Source),
    ("provenance", Target::Source),
];

/// The field of a folded header name, from [`HEADERS`].
pub fn known(folded: &str) -> Option<&'static Target> {
    HEADERS.iter().find(|(h, _)| *h == folded).map(|(_, t)| t)
}

/// Folds a header for comparison: trimmed, lower-case, without accents, with spaces,
/// hyphens, dots, apostrophes and slashes as single underscores.
pub fn normalize_header(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    for c in header.trim_start_matches('\u{feff}').trim().chars() {
        for c in c.to_lowercase() {
            let folded = match c {
                'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
                'ç' => "c",
                'è' | 'é' | 'ê' | 'ë' => "e",
                'ì' | 'í' | 'î' | 'ï' => "i",
                'ñ' => "n",
                'ò' | 'ó' | 'ô' | 'õ' | 'ö' => "o",
                'ù' | 'ú' | 'û' | 'ü' => "u",
                'ý' | 'ÿ' => "y",
                'œ' => "oe",
                'æ' => "ae",
                // Combining marks left by a decomposed accent (e + U+0301).
                '\u{300}'..='\u{36f}' => "",
                c if c.is_whitespace() || matches!(c, '-' | '.' | '\'' | '’' | '/') => "_",
                _ => {
                    out.push(c);
                    continue;
                }
            };
            for f in folded.chars() {
                if f == '_' && (out.is_empty() || out.ends_with('_')) {
                    continue;
                }
                out.push(f);
            }
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// docs/import.md, read at test time.
    fn doc() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/import.md");
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The rows of the doc's header table (between `<!-- headers -->` and
    /// `<!-- /headers -->`): `| field | header, header, ... |`, each name in backquotes.
    fn documented() -> BTreeMap<String, BTreeSet<String>> {
        let doc = doc();
        let start = doc
            .find("<!-- headers -->")
            .expect("docs/import.md: <!-- headers -->");
        let end = doc
            .find("<!-- /headers -->")
            .expect("docs/import.md: <!-- /headers -->");
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in doc[start..end].lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let [field, names, ..] = cells[..] else {
                panic!("a header row needs a field and its names: {line}");
            };
            let names = names
                .split(',')
                .map(|n| normalize_header(n.trim().trim_matches('`')));
            out.entry(field.trim_matches('`').to_owned())
                .or_default()
                .extend(names);
        }
        out
    }

    #[test]
    fn the_doc_lists_exactly_the_headers_the_code_accepts() {
        let mut code: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (h, t) in HEADERS {
            code.entry(t.name()).or_default().insert((*h).to_owned());
        }
        assert_eq!(
            documented(),
            code,
            "docs/import.md's header table and csv_import::HEADERS differ"
        );
    }

    #[test]
    fn every_table_entry_is_folded_and_unique() {
        let mut seen = BTreeSet::new();
        for (h, _) in HEADERS {
            assert_eq!(
                normalize_header(h),
                *h,
                "{h} is not folded: it can never match"
            );
            assert!(seen.insert(*h), "{h} is listed twice");
        }
    }
}
