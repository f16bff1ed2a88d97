//! CSV files as supporters, for `vaultctl import`: the mapping of headers to fields
//! ([`Mapping`], the table of names in `headers.rs`, the presets), the rows ([`CsvRows`]),
//! the summary ([`ImportSummary`]), and the upload in batches ([`import`], `upload.rs`).
//!
//! The header row names the columns. Each column maps to a [`Target`]: a supporter field, a
//! tag list, a custom field, a consent box, or nothing. By default the header names of
//! [`HEADERS`] are recognised, case-insensitively and without accents, in English and French
//! (`email`, `courriel`, `prénom`, `code postal`, ...); `custom_<key>` columns fill the custom
//! map and `consent:<purpose>[:<channel>]` columns carry consent (a truthy cell: `1`, `yes`,
//! `oui`, `true`, `x`). A [`Preset`] maps another tool's export first (`--preset
//! nationbuilder`). `--map column=field` overrides any of it. A column nothing maps is
//! refused with the list of them, unless the caller ignores unknown columns or uses a
//! preset: then it is left out and reported by name, with how many of its cells held
//! something ([`ImportSummary::unplaced`]), never dropped silently.
//!
//! Rows are numbered from 1, the first line after the header. A row is imported whole or
//! not at all: a row the file itself gets wrong (wrong number of fields, bytes that are not
//! UTF-8, a consent cell that is neither yes nor no) is rejected here with its number and
//! column and never sent; the server judges the rest, and its refusals name the field,
//! which [`ImportSummary::name_columns`] turns back into the file's column.

mod headers;
mod nationbuilder;
mod upload;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IsTerminal as _, Read};
use std::path::Path;

use vault_proto::v1 as pb;

pub use headers::{HEADERS, normalize_header};
pub use upload::import;

/// Where a column's cells go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `email`.
    Email,
    /// `phone`.
    Phone,
    /// `given_name`.
    GivenName,
    /// `family_name`.
    FamilyName,
    /// `address.line1`.
    Line1,
    /// `address.line2`.
    Line2,
    /// `address.postcode`.
    Postcode,
    /// `address.city`.
    City,
    /// `address.country`.
    Country,
    /// `tags`, separated by `;` or `|` in the cell; several columns may map here.
    Tags,
    /// `tags`, separated by `,` in the cell, a run of spaces inside a tag becoming `-`
    /// (NationBuilder's `tag_list`: `Porte à porte, Bénévole` is `porte-à-porte` and
    /// `bénévole`).
    CommaTags,
    /// A second phone column: the supporter's `phone` when the row's [`Target::Phone`]
    /// column is empty, else kept as `custom.<key>` (unless it is the same number), so
    /// that neither number is lost.
    SecondPhone {
        /// The custom key the number is kept under when the row has another phone.
        custom_key: String,
    },
    /// `source` (art. 14: where the data came from).
    Source,
    /// `custom.<key>`.
    Custom(String),
    /// A consent box: a truthy cell grants consent for the purpose (and channel).
    Consent {
        /// Purpose id.
        purpose: String,
        /// Channel, empty when the purpose has a single one.
        channel: String,
    },
    /// The column is read and dropped (`--map column=ignore`).
    Ignore,
}

impl Target {
    /// The field name, as `--map` takes it.
    pub fn name(&self) -> String {
        match self {
            Self::Email => "email".into(),
            Self::Phone => "phone".into(),
            Self::GivenName => "given_name".into(),
            Self::FamilyName => "family_name".into(),
            Self::Line1 => "line1".into(),
            Self::Line2 => "line2".into(),
            Self::Postcode => "postcode".into(),
            Self::City => "city".into(),
            Self::Country => "country".into(),
            Self::Tags => "tags".into(),
            Self::CommaTags => "tags (comma-separated)".into(),
            Self::SecondPhone { custom_key } => format!("phone, or custom_{custom_key}"),
            Self::Source => "source".into(),
            Self::Custom(k) => format!("custom_{k}"),
            Self::Consent { purpose, channel } if channel.is_empty() => {
                format!("consent:{purpose}")
            }
            Self::Consent { purpose, channel } => format!("consent:{purpose}:{channel}"),
            Self::Ignore => "ignore".into(),
        }
    }

    /// The API field paths the column writes, as the server names them in its refusals
    /// (`phone`, `address.postcode`, `custom.<key>`, `consents`).
    fn paths(&self) -> Vec<String> {
        let one = |p: &str| vec![p.to_owned()];
        match self {
            Self::Email => one("email"),
            Self::Phone => one("phone"),
            Self::GivenName => one("given_name"),
            Self::FamilyName => one("family_name"),
            Self::Line1 => one("address.line1"),
            Self::Line2 => one("address.line2"),
            Self::Postcode => one("address.postcode"),
            Self::City => one("address.city"),
            Self::Country => one("address.country"),
            Self::Tags | Self::CommaTags => one("tags"),
            Self::SecondPhone { custom_key } => {
                vec!["phone".into(), format!("custom.{custom_key}")]
            }
            Self::Source => one("source"),
            Self::Custom(k) => vec![format!("custom.{k}")],
            // A consent row's own refusals name its `purpose` or `channel`.
            Self::Consent { .. } => vec!["consents".into(), "purpose".into(), "channel".into()],
            Self::Ignore => Vec::new(),
        }
    }

    /// A `--map` field: a field name (`email`, `address.postcode`, `custom_<key>`,
    /// `custom.<key>`, `consent:<purpose>[:<channel>]`, `ignore`), or any header name the
    /// default mapping recognises (`courriel`, `prénom`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let s = spec.trim();
        if matches!(s.to_lowercase().as_str(), "ignore" | "skip" | "-" | "none") {
            return Ok(Self::Ignore);
        }
        default_target(s).ok_or_else(|| {
            format!(
                "unknown field {s:?}: use email, phone, given_name, family_name, line1, line2, \
                 postcode, city, country, tags, source, custom_<key>, \
                 consent:<purpose>[:<channel>] or ignore"
            )
        })
    }
}

/// Whether a refusal about API field `field` is about a column writing `path`: the same
/// path, or one inside the other (`consents.purpose` and `consents`; `custom` and
/// `custom.<key>`).
fn path_matches(path: &str, field: &str) -> bool {
    let inside = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|rest| rest.starts_with('.'));
    path == field || inside(field, path) || inside(path, field)
}

/// What the default mapping makes of a header, or `None` for an unknown column.
pub fn default_target(header: &str) -> Option<Target> {
    let raw = header.trim_start_matches('\u{feff}').trim();
    if let Some(rest) = strip_prefix_ignore_case(raw, "consent:") {
        let mut parts = rest.split(':').map(|p| p.trim().to_lowercase());
        let purpose = parts.next().unwrap_or_default();
        let channel = parts.next().unwrap_or_default();
        if purpose.is_empty() || parts.next().is_some() {
            return None;
        }
        return Some(Target::Consent { purpose, channel });
    }
    let h = normalize_header(raw);
    if let Some(t) = headers::known(&h) {
        return Some(t.clone());
    }
    let key = h
        .strip_prefix("custom_")
        .or_else(|| h.strip_prefix("custom:"))?;
    (!key.is_empty()).then(|| Target::Custom(key.to_owned()))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Another tool's export format, mapped before the default names (`--preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// NationBuilder's people export (`nationbuilder_id`, `first_name`, `tag_list`,
    /// `email_opt_in`, `mobile_opt_in`, ...).
    Nationbuilder,
}

impl Preset {
    /// The target of a folded header under this preset, with `purpose` the call's purpose
    /// (opt-in columns become its consents); `None` when the preset does not name it.
    fn target(self, folded: &str, purpose: &str) -> Option<Target> {
        match self {
            Self::Nationbuilder => nationbuilder::target(folded, purpose),
        }
    }
}

/// How the header maps: a preset, `--map` overrides and what to do with unknown columns.
#[derive(Debug, Clone, Default)]
pub struct MappingOptions {
    /// `(column, field)` pairs from `--map column=field`.
    pub overrides: Vec<(String, String)>,
    /// Leave unknown columns out (reported in the summary) instead of refusing the file.
    pub ignore_unknown: bool,
    /// Another tool's export format; its unknown columns are left out and reported.
    pub preset: Option<Preset>,
    /// The call's purpose: a preset's opt-in columns record consent for it.
    pub purpose: String,
}

/// Values every row gets.
#[derive(Debug, Clone, Default)]
pub struct RowDefaults {
    /// The supporter's `source` when the row has none.
    pub source: String,
    /// Notice version of the consents the file carries.
    pub notice_version: String,
}

/// A cell the mapping refuses: the column (as the header names it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// The column, quoted as [`Mapping`] names columns (`"Téléphone"`, `#3 (no name)`).
    pub column: Option<String>,
    /// Why.
    pub reason: String,
}

/// The header, mapped: one target per column.
#[derive(Debug, Clone)]
pub struct Mapping {
    headers: Vec<String>,
    targets: Vec<Target>,
    /// Columns nothing maps, left out (with `--ignore-unknown` or a preset).
    unplaced: Vec<usize>,
}

impl Mapping {
    /// Maps `headers`. Fails with every unknown column listed (unless they are ignored or a
    /// preset is used), on a `--map` column the header lacks, and when two columns would
    /// fill the same field.
    pub fn new(headers: &[String], options: &MappingOptions) -> Result<Self, String> {
        let mut targets: Vec<Option<Target>> = headers
            .iter()
            .map(|h| {
                options
                    .preset
                    .and_then(|p| p.target(&normalize_header(h), &options.purpose))
                    .or_else(|| default_target(h))
            })
            .collect();
        for (column, field) in &options.overrides {
            let target =
                Target::parse(field).map_err(|e| format!("--map {column}={field}: {e}"))?;
            let wanted = normalize_header(column);
            let mut found = false;
            for (i, h) in headers.iter().enumerate() {
                if h.trim() == column.trim() || normalize_header(h) == wanted {
                    targets[i] = Some(target.clone());
                    found = true;
                }
            }
            if !found {
                return Err(format!(
                    "--map {column}={field}: the header has no column {column:?} (columns: {})",
                    list(headers)
                ));
            }
        }
        let unplaced: Vec<usize> = (0..headers.len())
            .filter(|&i| targets[i].is_none())
            .collect();
        if !unplaced.is_empty() && !options.ignore_unknown && options.preset.is_none() {
            let unknown: Vec<String> = unplaced
                .iter()
                .map(|&i| column_name(i, &headers[i]))
                .collect();
            return Err(format!(
                "unknown column{} {}: map {} with --map column=field (field: email, phone, \
                 given_name, family_name, line1, line2, postcode, city, country, tags, source, \
                 custom_<key>, consent:<purpose>[:<channel>], ignore) or pass --ignore-unknown",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                if unknown.len() > 1 { "them" } else { "it" },
            ));
        }
        let targets: Vec<Target> = targets
            .into_iter()
            .map(|t| t.unwrap_or(Target::Ignore))
            .collect();
        let mut seen: BTreeMap<&Target, usize> = BTreeMap::new();
        for (i, t) in targets.iter().enumerate() {
            if matches!(t, Target::Tags | Target::CommaTags | Target::Ignore) {
                continue;
            }
            if let Some(first) = seen.insert(t, i) {
                return Err(format!(
                    "columns {} and {} both map to {}: map one of them elsewhere, e.g. \
                     --map '{}=ignore'",
                    column_name(first, &headers[first]),
                    column_name(i, &headers[i]),
                    t.name(),
                    headers[i].trim(),
                ));
            }
        }
        if !targets.iter().any(|t| {
            matches!(
                t,
                Target::Email | Target::Phone | Target::SecondPhone { .. }
            )
        }) {
            return Err(format!(
                "no column holds an email or a phone, and the vault needs one of them per \
                 supporter (columns: {}); name it with --map column=email",
                list(headers)
            ));
        }
        Ok(Self {
            headers: headers.to_vec(),
            targets,
            unplaced,
        })
    }

    /// The target of each column, in header order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The header as read.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The columns nothing maps, left out of the import, by index.
    pub fn unplaced(&self) -> &[usize] {
        &self.unplaced
    }

    /// The columns (named as in messages) that write API field `field`: what a server
    /// refusal about that field is about.
    pub fn columns_of(&self, field: &str) -> Vec<String> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.paths().iter().any(|p| path_matches(p, field)))
            .map(|(i, _)| column_name(i, &self.headers[i]))
            .collect()
    }

    /// Whether a column carries consent.
    pub fn has_consent_columns(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, Target::Consent { .. }))
    }

    /// One data row as a supporter to stream, or the cell that keeps the row from being
    /// sent (the row is then refused whole).
    pub fn supporter(
        &self,
        cells: &[&str],
        defaults: &RowDefaults,
    ) -> Result<pb::Supporter, CellError> {
        if cells.len() != self.targets.len() {
            return Err(CellError {
                column: None,
                reason: format!(
                    "expected {} fields, found {}",
                    self.targets.len(),
                    cells.len()
                ),
            });
        }
        let mut s = pb::Supporter::default();
        let mut address = pb::Address::default();
        let mut tags: BTreeSet<String> = BTreeSet::new();
        let mut second_phone: Option<(&str, &str)> = None;
        for (i, (target, cell)) in self.targets.iter().zip(cells).enumerate() {
            let value = cell.trim();
            let set = |slot: &mut String| value.clone_into(slot);
            match target {
                Target::Email => set(&mut s.email),
                Target::Phone => set(&mut s.phone),
                Target::GivenName => set(&mut s.given_name),
                Target::FamilyName => set(&mut s.family_name),
                Target::Line1 => set(&mut address.line1),
                Target::Line2 => set(&mut address.line2),
                Target::Postcode => set(&mut address.postcode),
                Target::City => set(&mut address.city),
                Target::Country => set(&mut address.country),
                Target::Source => set(&mut s.source),
                Target::Tags => tags.extend(
                    value
                        .split([';', '|'])
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                ),
                Target::CommaTags => tags.extend(
                    value
                        .split(',')
                        .map(|t| t.split_whitespace().collect::<Vec<_>>().join("-"))
                        .filter(|t| !t.is_empty()),
                ),
                Target::SecondPhone { custom_key } => {
                    if !value.is_empty() {
                        second_phone = Some((custom_key, value));
                    }
                }
                Target::Custom(key) => {
                    if !value.is_empty() {
                        s.custom.insert(key.clone(), value.to_owned());
                    }
                }
                Target::Consent { purpose, channel } => match truthy(value) {
                    Some(true) => s.consents.push(pb::ConsentRequest {
                        subject_id: String::new(),
                        purpose: purpose.clone(),
                        channel: channel.clone(),
                        source: "import".into(),
                        notice_version: defaults.notice_version.clone(),
                        ..Default::default()
                    }),
                    Some(false) => {}
                    None => {
                        return Err(CellError {
                            column: Some(column_name(i, &self.headers[i])),
                            reason: format!(
                                "{:?} is neither yes ({}) nor no (empty, {})",
                                shorten(value),
                                YES.join(", "),
                                NO[1..].join(", "),
                            ),
                        });
                    }
                },
                Target::Ignore => {}
            }
        }
        if let Some((key, number)) = second_phone {
            if s.phone.is_empty() {
                number.clone_into(&mut s.phone);
            } else if !same_phone(&s.phone, number) {
                s.custom.insert(key.to_owned(), number.to_owned());
            }
        }
        s.tags = tags.into_iter().collect();
        if address != pb::Address::default() {
            s.address = Some(address);
        }
        if s.source.is_empty() {
            s.source.clone_from(&defaults.source);
        }
        Ok(s)
    }
}

/// Whether two phone cells hold the same number (as the vault would store it, or the same
/// text when either is not a number the vault takes).
fn same_phone(a: &str, b: &str) -> bool {
    use vault_core::supporter::normalize::phone;
    match (phone(a), phone(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The consent cells read as yes, lower-cased.
pub const YES: &[&str] = &["1", "yes", "y", "oui", "o", "true", "vrai", "x"];
/// The consent cells read as no, lower-cased (the empty cell first).
pub const NO: &[&str] = &["", "0", "no", "n", "non", "false", "faux"];

/// A consent cell: `Some(true)` for yes, `Some(false)` for no or empty, `None` otherwise.
pub fn truthy(cell: &str) -> Option<bool> {
    let cell = cell.trim().to_lowercase();
    if YES.contains(&cell.as_str()) {
        Some(true)
    } else if NO.contains(&cell.as_str()) {
        Some(false)
    } else {
        None
    }
}

fn column_name(i: usize, header: &str) -> String {
    let h = header.trim_start_matches('\u{feff}').trim();
    if h.is_empty() {
        format!("#{} (no name)", i + 1)
    } else {
        format!("{:?}", shorten(h))
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

fn list(headers: &[String]) -> String {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| column_name(i, h))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The field delimiter of a file whose first line is `line`: the most frequent of `,`, `;`
/// and tab outside double quotes (`,` when none occurs). Spreadsheets in French locales
/// write `;`.
pub fn sniff_delimiter(sample: &[u8]) -> u8 {
    let line = sample.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for b in line {
        if *b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(c) = counts.iter_mut().find(|(d, _)| d == b) {
            c.1 += 1;
        }
    }
    let best = counts
        .iter()
        .fold((b',', 0), |best, c| if c.1 > best.1 { *c } else { best });
    best.0
}

/// One data row of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A row to stream to the server.
    Parsed {
        /// Row number in the file, from 1 (the first line after the header).
        row: u64,
        /// The supporter it holds.
        supporter: Box<pb::Supporter>,
    },
    /// A row the file gets wrong: not sent.
    Rejected {
        /// Row number in the file, from 1.
        row: u64,
        /// The column at fault, when one is.
        column: Option<String>,
        /// Why.
        reason: String,
    },
}

/// Reading options of [`CsvRows`].
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The header's mapping options.
    pub mapping: MappingOptions,
    /// Values every row gets.
    pub defaults: RowDefaults,
    /// Field delimiter; sniffed from the header line when `None`.
    pub delimiter: Option<u8>,
}

/// The rows of a CSV file, mapped to supporters one by one (the file is never held whole).
pub struct CsvRows<R: Read> {
    reader: csv::Reader<io::Chain<io::Cursor<Vec<u8>>, R>>,
    mapping: Mapping,
    defaults: RowDefaults,
    record: csv::ByteRecord,
    row: u64,
    /// Non-empty cells read so far in each of the mapping's unplaced columns.
    unplaced_cells: Vec<u64>,
}

impl<R: Read> std::fmt::Debug for CsvRows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRows")
            .field("mapping", &self.mapping)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

impl CsvRows<std::fs::File> {
    /// Opens `path` and maps its header.
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Self, String> {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::new(file, options).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl<R: Read> CsvRows<R> {
    /// Reads the header from `input` and maps it.
    pub fn new(mut input: R, options: &ReadOptions) -> Result<Self, String> {
        // The first bytes, to sniff the delimiter from the header line.
        let mut sample = Vec::with_capacity(64 * 1024);
        (&mut input)
            .take(64 * 1024)
            .read_to_end(&mut sample)
            .map_err(|e| format!("cannot read: {e}"))?;
        let delimiter = options
            .delimiter
            .unwrap_or_else(|| sniff_delimiter(&sample));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(io::Cursor::new(sample).chain(input));
        let header = reader
            .byte_headers()
            .map_err(|e| format!("cannot read the header: {e}"))?
            .clone();
        if header.is_empty() {
            return Err("the file is empty: it needs a header line naming the columns".into());
        }
        let headers = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                std::str::from_utf8(h).map(str::to_owned).map_err(|_| {
                    format!(
                        "header column #{}: not UTF-8 (save the file as UTF-8)",
                        i + 1
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mapping = Mapping::new(&headers, &options.mapping)?;
        if mapping.has_consent_columns() && options.defaults.notice_version.trim().is_empty() {
            return Err(
                "the file has consent columns: pass --notice-version with the version of the \
                 information notice these people saw (the consent ledger records it)"
                    .into(),
            );
        }
        Ok(Self {
            reader,
            unplaced_cells: vec![0; mapping.unplaced.len()],
            mapping,
            defaults: options.defaults.clone(),
            record: csv::ByteRecord::new(),
            row: 0,
        })
    }

    /// The header's mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Bytes of the input consumed so far (for a progress bar).
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.row
    }

    /// The columns left out of the import (unknown to the mapping, with `--ignore-unknown`
    /// or a preset), each with how many cells read so far held something.
    pub fn unplaced(&self) -> Vec<Unplaced> {
        self.mapping
            .unplaced
            .iter()
            .zip(&self.unplaced_cells)
            .map(|(&i, &cells)| Unplaced {
                column: column_name(i, &self.mapping.headers[i]),
                cells,
            })
            .collect()
    }

    /// The next data row; `None` at the end; `Err` when the input cannot be read at all.
    pub fn next_row(&mut self) -> Option<Result<Row, String>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.row += 1;
                let row = self.row;
                for (count, &i) in self.unplaced_cells.iter_mut().zip(&self.mapping.unplaced) {
                    if self
                        .record
                        .get(i)
                        .is_some_and(|c| !c.trim_ascii().is_empty())
                    {
                        *count += 1;
                    }
                }
                let mut cells = Vec::with_capacity(self.record.len());
                for (i, field) in self.record.iter().enumerate() {
                    match std::str::from_utf8(field) {
                        Ok(s) => cells.push(s),
                        Err(_) => {
                            let column = self
                                .mapping
                                .headers
                                .get(i)
                                .map_or_else(|| format!("#{}", i + 1), |h| column_name(i, h));
                            return Some(Ok(Row::Rejected {
                                row,
                                column: Some(column),
                                reason: "not valid UTF-8 (save the file as UTF-8)".into(),
                            }));
                        }
                    }
                }
                Some(Ok(match self.mapping.supporter(&cells, &self.defaults) {
                    Ok(supporter) => Row::Parsed {
                        row,
                        supporter: Box::new(supporter),
                    },
                    Err(CellError { column, reason }) => Row::Rejected {
                        row,
                        column,
                        reason,
                    },
                }))
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => Some(Err(format!("cannot read: {e}"))),
                _ => {
                    self.row += 1;
                    Some(Ok(Row::Rejected {
                        row: self.row,
                        column: None,
                        reason: e.to_string(),
                    }))
                }
            },
        }
    }
}

/// A refused row in the final summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Row number in the file, from 1 (0 when the server named a row it was never sent).
    pub row: u64,
    /// The file's column(s) at fault, as messages name them, when known.
    pub column: Option<String>,
    /// The API field the server named (empty when it named none or the CLI refused the row).
    pub field: String,
    /// Why.
    pub reason: String,
    /// The gRPC code name the server gave (empty when the CLI refused the row itself).
    pub code: String,
}

/// A column left out of the import, and how many of its cells held something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// The column, as messages name it.
    pub column: String,
    /// Its non-empty cells.
    pub cells: u64,
}

/// Totals of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Data rows read from the file.
    pub rows: u64,
    /// Rows that created a supporter.
    pub created: u64,
    /// Rows that changed an existing supporter.
    pub updated: u64,
    /// Rows that matched an existing supporter and changed nothing.
    pub unchanged: u64,
    /// Refused rows, by file row number.
    pub rejected: Vec<Rejection>,
    /// Rows the server refused beyond those it listed (it lists the first 1,000 per call).
    pub unlisted_rejected: u64,
    /// Columns left out of the import, with their non-empty cells.
    pub unplaced: Vec<Unplaced>,
}

impl ImportSummary {
    /// Adds one `Import` call's reply. `file_rows[i]` is the file row streamed at position
    /// `i + 1` of that call.
    pub fn add_response(&mut self, reply: &pb::ImportResponse, file_rows: &[u64]) {
        self.created += reply.created;
        self.updated += reply.updated;
        self.unchanged += reply.unchanged;
        self.unlisted_rejected += reply
            .rejected_total
            .saturating_sub(reply.rejected.len() as u64);
        for r in &reply.rejected {
            let row = usize::try_from(r.row)
                .ok()
                .and_then(|p| p.checked_sub(1))
                .and_then(|i| file_rows.get(i).copied());
            self.rejected.push(match row {
                Some(row) => Rejection {
                    row,
                    column: None,
                    field: r.field.clone(),
                    reason: r.reason.clone(),
                    code: r.code.clone(),
                },
                None => Rejection {
                    row: 0,
                    column: None,
                    field: r.field.clone(),
                    reason: format!("stream position {}: {}", r.row, r.reason),
                    code: r.code.clone(),
                },
            });
        }
    }

    /// Adds a row the CLI refused itself.
    pub fn reject_locally(&mut self, row: u64, column: Option<String>, reason: String) {
        self.rejected.push(Rejection {
            row,
            column,
            field: String::new(),
            reason,
            code: String::new(),
        });
    }

    /// Names the file's column of each server refusal that names a field.
    pub fn name_columns(&mut self, mapping: &Mapping) {
        for r in &mut self.rejected {
            if r.column.is_none() && !r.field.is_empty() {
                let columns = mapping.columns_of(&r.field);
                r.column = (!columns.is_empty()).then(|| columns.join(" or "));
            }
        }
    }

    /// Every refused row, listed or not.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.len() as u64 + self.unlisted_rejected
    }

    /// Sorts refused rows by row number.
    pub fn sort(&mut self) {
        self.rejected.sort_by_key(|r| r.row);
    }

    /// Readable lines.
    pub fn lines(&self, file: &str) -> String {
        let mut out = format!(
            "{file}: {} rows: {} created, {} updated, {} unchanged, {} rejected",
            self.rows,
            self.created,
            self.updated,
            self.unchanged,
            self.rejected_total()
        );
        for r in &self.rejected {
            let code = if r.code.is_empty() {
                String::new()
            } else {
                format!(" [{}]", r.code)
            };
            let column = r
                .column
                .as_ref()
                .map(|c| format!(", column {c}"))
                .unwrap_or_default();
            out.push_str(&format!("\n  row {}{column}: {}{code}", r.row, r.reason));
        }
        if self.unlisted_rejected > 0 {
            out.push_str(&format!(
                "\n  … and {} more rejected rows not listed (the server lists the first 1000 \
                 of each call)",
                self.unlisted_rejected
            ));
        }
        if !self.unplaced.is_empty() {
            out.push_str(&format!(
                "\n  {} column{} not imported (no place in a supporter; --map column=field \
                 places one):",
                self.unplaced.len(),
                if self.unplaced.len() > 1 { "s" } else { "" }
            ));
            for u in &self.unplaced {
                out.push_str(&format!("\n    {}: {} non-empty cells", u.column, u.cells));
            }
        }
        out
    }

    /// As JSON.
    pub fn json(&self, file: &str) -> serde_json::Value {
        let rejected: Vec<_> = self
            .rejected
            .iter()
            .map(|r| {
                serde_json::json!({
                    "row": r.row,
                    "column": r.column,
                    "field": r.field,
                    "reason": r.reason,
                    "code": r.code,
                })
            })
            .collect();
        let unplaced: Vec<_> = self
            .unplaced
            .iter()
            .map(|u| serde_json::json!({ "column": u.column, "cells": u.cells }))
            .collect();
        serde_json::json!({
            "file": file,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": rejected,
            "rejected_unlisted": self.unlisted_rejected,
            "unplaced": unplaced,
        })
    }
}

/// The import's progress bar on stderr, hidden when stderr is not a terminal.
#[derive(Debug, Clone)]
pub struct Progress(indicatif::ProgressBar);

impl Progress {
    /// A bar over `total_bytes` of input.
    pub fn new(total_bytes: u64) -> Self {
        if !io::stderr().is_terminal() {
            return Self(indicatif::ProgressBar::hidden());
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total_bytes),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}",
        ) {
            bar.set_style(style);
        }
        Self(bar)
    }

    /// Records how far the reader is.
    pub fn update(&self, bytes: u64, rows: u64) {
        self.0.set_position(bytes);
        if rows.is_multiple_of(256) {
            self.0.set_message(format!("{rows} rows"));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests;
