//! CSV import parsing and mapping (`vault_server::client::csv_import`, what `vaultctl import` runs
//! before anything reaches the server).
//!
//! Properties: reading a file held in memory never fails as a whole (an I/O error is the only
//! `Err`), rows are numbered 1, 2, 3... with one result per record; a parsed supporter holds
//! trimmed values, tags that are trimmed, non-empty and free of separators, the default
//! source when the row has none, and consents only for the file's consent columns; the
//! header mapping is stable (`Target::parse(target.name())` gives the target back, which
//! `--map` relies on) and header folding is idempotent.

use std::collections::BTreeSet;

use vault_server::client::csv_import::{
    CsvRows, MappingOptions, ReadOptions, Row, RowDefaults, Target, normalize_header,
};

/// Rows read per input at most: bounds the time one input takes.
const MAX_ROWS: u64 = 10_000;

/// Reads `data` as a CSV file. The first byte picks the options (delimiter, unknown
/// columns, notice version, default source); the rest is the file.
pub fn check(data: &[u8]) {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let options = ReadOptions {
        mapping: MappingOptions {
            overrides: Vec::new(),
            ignore_unknown: flags & 1 != 0,
            ..MappingOptions::default()
        },
        defaults: RowDefaults {
            source: if flags & 2 != 0 {
                "fuzz-source".into()
            } else {
                String::new()
            },
            notice_version: if flags & 4 != 0 {
                "notice-v1".into()
            } else {
                String::new()
            },
        },
        delimiter: match (flags >> 3) & 3 {
            0 => None,
            1 => Some(b','),
            2 => Some(b';'),
            _ => Some(b'\t'),
        },
    };

    let mut rows = match CsvRows::new(file, &options) {
        Ok(rows) => rows,
        Err(_) => return, // a header the mapping refuses, with its reason
    };
    let mapping = rows.mapping().clone();
    for target in mapping.targets() {
        assert_eq!(
            Target::parse(&target.name()).as_ref(),
            Ok(target),
            "--map cannot name the target a header mapped to"
        );
    }
    for header in mapping.headers() {
        let once = normalize_header(header);
        assert_eq!(
            normalize_header(&once),
            once,
            "header folding is not idempotent"
        );
    }
    let consent_columns: BTreeSet<(&str, &str)> = mapping
        .targets()
        .iter()
        .filter_map(|t| match t {
            Target::Consent { purpose, channel } => Some((purpose.as_str(), channel.as_str())),
            _ => None,
        })
        .collect();

    let mut expected_row = 0u64;
    while let Some(next) = rows.next_row() {
        let row = next.expect("a file in memory cannot fail to be read");
        expected_row += 1;
        match row {
            Row::Rejected { row, reason, .. } => {
                assert_eq!(row, expected_row, "rows are numbered in order");
                assert!(!reason.is_empty(), "a rejected row says why");
            }
            Row::Parsed { row, supporter: s } => {
                assert_eq!(row, expected_row, "rows are numbered in order");
                let address = s.address.clone().unwrap_or_default();
                for value in [
                    &s.email,
                    &s.phone,
                    &s.given_name,
                    &s.family_name,
                    &address.line1,
                    &address.line2,
                    &address.postcode,
                    &address.city,
                    &address.country,
                ] {
                    assert_eq!(value.as_str(), value.trim(), "a cell is sent untrimmed");
                }
                for tag in &s.tags {
                    assert!(!tag.is_empty() && tag.as_str() == tag.trim());
                    assert!(!tag.contains([';', '|']), "a tag still holds a separator");
                }
                assert!(
                    s.tags.windows(2).all(|w| w[0] < w[1]),
                    "tags sorted, unique"
                );
                for value in s.custom.values() {
                    assert!(!value.is_empty() && value.as_str() == value.trim());
                }
                if s.source.is_empty() {
                    assert!(
                        options.defaults.source.is_empty(),
                        "the default source is lost"
                    );
                }
                for c in &s.consents {
                    assert!(
                        consent_columns.contains(&(c.purpose.as_str(), c.channel.as_str())),
                        "a consent no column carries"
                    );
                    assert_eq!(c.notice_version, options.defaults.notice_version);
                }
            }
        }
        assert_eq!(rows.rows_read(), expected_row);
        if expected_row >= MAX_ROWS {
            break;
        }
    }
}
