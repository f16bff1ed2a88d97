//! CSV files as supporters, for `vaultctl import`.
//!
//! The header row names the columns. Each column maps to a [`Target`]: a supporter field, a
//! tag list, a custom field, a consent box, or nothing. By default common header names are
//! recognised, case-insensitively and without accents, in English and French (`email`,
//! `courriel`, `prénom`, `code postal`, ...); `custom_<key>` columns fill the custom map and
//! `consent:<purpose>[:<channel>]` columns carry consent (a truthy cell: `1`, `yes`, `oui`,
//! `true`, `x`). `--map column=field` overrides any of it. A column nothing maps is refused
//! with the list of them, unless the caller ignores unknown columns.
//!
//! Rows are numbered from 1, the first line after the header. A row the file itself gets
//! wrong (wrong number of fields, bytes that are not UTF-8, a consent cell that is neither
//! yes nor no) is rejected here with its number and never sent; the server judges the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IsTerminal as _, Read};
use std::path::Path;

use vault_proto::v1 as pb;

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
    /// The column is read and dropped.
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
            Self::Source => "source".into(),
            Self::Custom(k) => format!("custom_{k}"),
            Self::Consent { purpose, channel } if channel.is_empty() => {
                format!("consent:{purpose}")
            }
            Self::Consent { purpose, channel } => format!("consent:{purpose}:{channel}"),
            Self::Ignore => "ignore".into(),
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
    let target = match h.as_str() {
        "email" | "e_mail" | "mail" | "courriel" | "email_address" | "adresse_email"
        | "adresse_e_mail" | "adresse_mail" | "adresse_courriel" => Target::Email,
        "phone"
        | "phone_number"
        | "telephone"
        | "tel"
        | "mobile"
        | "portable"
        | "numero_de_telephone"
        | "numero" => Target::Phone,
        "given_name" | "first_name" | "firstname" | "forename" | "prenom" => Target::GivenName,
        "family_name" | "last_name" | "lastname" | "surname" | "nom" | "nom_de_famille" => {
            Target::FamilyName
        }
        "line1" | "line_1" | "address" | "address_line1" | "address_line_1" | "address1"
        | "adresse" | "adresse1" | "adresse_1" | "rue" => Target::Line1,
        "line2"
        | "line_2"
        | "address_line2"
        | "address_line_2"
        | "address2"
        | "adresse2"
        | "adresse_2"
        | "complement"
        | "complement_d_adresse"
        | "complement_adresse" => Target::Line2,
        "postcode" | "post_code" | "postal_code" | "zip" | "zip_code" | "zipcode"
        | "address_postcode" | "code_postal" | "codepostal" | "cp" => Target::Postcode,
        "city" | "town" | "address_city" | "ville" | "commune" => Target::City,
        "country" | "country_code" | "address_country" | "pays" => Target::Country,
        "tags" | "tag" | "etiquettes" | "etiquette" => Target::Tags,
        "source" | "origine" | "provenance" => Target::Source,
        _ => {
            let key = h
                .strip_prefix("custom_")
                .or_else(|| h.strip_prefix("custom:"))?;
            if key.is_empty() {
                return None;
            }
            Target::Custom(key.to_owned())
        }
    };
    Some(target)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// How the header maps: `--map` overrides and what to do with unknown columns.
#[derive(Debug, Clone, Default)]
pub struct MappingOptions {
    /// `(column, field)` pairs from `--map column=field`.
    pub overrides: Vec<(String, String)>,
    /// Drop unknown columns instead of refusing the file.
    pub ignore_unknown: bool,
}

/// Values every row gets.
#[derive(Debug, Clone, Default)]
pub struct RowDefaults {
    /// The supporter's `source` when the row has none.
    pub source: String,
    /// Notice version of the consents the file carries.
    pub notice_version: String,
}

/// The header, mapped: one target per column.
#[derive(Debug, Clone)]
pub struct Mapping {
    headers: Vec<String>,
    targets: Vec<Target>,
}

impl Mapping {
    /// Maps `headers`. Fails with every unknown column listed, on a `--map` column the
    /// header lacks, and when two columns would fill the same field.
    pub fn new(headers: &[String], options: &MappingOptions) -> Result<Self, String> {
        let mut targets: Vec<Option<Target>> = headers.iter().map(|h| default_target(h)).collect();
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
        let unknown: Vec<String> = headers
            .iter()
            .zip(&targets)
            .enumerate()
            .filter(|(_, (_, t))| t.is_none())
            .map(|(i, (h, _))| column_name(i, h))
            .collect();
        if !unknown.is_empty() && !options.ignore_unknown {
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
            if matches!(t, Target::Tags | Target::Ignore) {
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
        if !targets
            .iter()
            .any(|t| matches!(t, Target::Email | Target::Phone))
        {
            return Err(format!(
                "no column holds an email or a phone, and the vault needs one of them per \
                 supporter (columns: {}); name it with --map column=email",
                list(headers)
            ));
        }
        Ok(Self {
            headers: headers.to_vec(),
            targets,
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

    /// Whether a column carries consent.
    pub fn has_consent_columns(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, Target::Consent { .. }))
    }

    /// One data row as a supporter to stream, or why the row cannot be sent.
    pub fn supporter(
        &self,
        cells: &[&str],
        defaults: &RowDefaults,
    ) -> Result<pb::Supporter, String> {
        if cells.len() != self.targets.len() {
            return Err(format!(
                "expected {} fields, found {}",
                self.targets.len(),
                cells.len()
            ));
        }
        let mut s = pb::Supporter::default();
        let mut address = pb::Address::default();
        let mut tags: BTreeSet<String> = BTreeSet::new();
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
                        return Err(format!(
                            "column {}: {:?} is neither yes (1, yes, oui, true, x) nor no \
                             (empty, 0, no, non, false)",
                            column_name(i, &self.headers[i]),
                            shorten(value),
                        ));
                    }
                },
                Target::Ignore => {}
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

/// A consent cell: `Some(true)` for yes, `Some(false)` for no or empty, `None` otherwise.
pub fn truthy(cell: &str) -> Option<bool> {
    match cell.trim().to_lowercase().as_str() {
        "1" | "yes" | "y" | "oui" | "o" | "true" | "vrai" | "x" => Some(true),
        "" | "0" | "no" | "n" | "non" | "false" | "faux" => Some(false),
        _ => None,
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

    /// The next data row; `None` at the end; `Err` when the input cannot be read at all.
    pub fn next_row(&mut self) -> Option<Result<Row, String>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.row += 1;
                let row = self.row;
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
                                reason: format!(
                                    "column {column}: not valid UTF-8 (save the file as UTF-8)"
                                ),
                            }));
                        }
                    }
                }
                Some(Ok(match self.mapping.supporter(&cells, &self.defaults) {
                    Ok(supporter) => Row::Parsed {
                        row,
                        supporter: Box::new(supporter),
                    },
                    Err(reason) => Row::Rejected { row, reason },
                }))
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => Some(Err(format!("cannot read: {e}"))),
                _ => {
                    self.row += 1;
                    Some(Ok(Row::Rejected {
                        row: self.row,
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
    /// Why.
    pub reason: String,
    /// The gRPC code name the server gave (empty when the CLI refused the row itself).
    pub code: String,
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
                    reason: r.reason.clone(),
                    code: r.code.clone(),
                },
                None => Rejection {
                    row: 0,
                    reason: format!("stream position {}: {}", r.row, r.reason),
                    code: r.code.clone(),
                },
            });
        }
    }

    /// Adds a row the CLI refused itself.
    pub fn reject_locally(&mut self, row: u64, reason: String) {
        self.rejected.push(Rejection {
            row,
            reason,
            code: String::new(),
        });
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
            self.rejected.len() as u64 + self.unlisted_rejected
        );
        for r in &self.rejected {
            let code = if r.code.is_empty() {
                String::new()
            } else {
                format!(" [{}]", r.code)
            };
            out.push_str(&format!("\n  row {}: {}{code}", r.row, r.reason));
        }
        if self.unlisted_rejected > 0 {
            out.push_str(&format!(
                "\n  … and {} more rejected rows not listed (the server lists the first 1000 \
                 of each call)",
                self.unlisted_rejected
            ));
        }
        out
    }

    /// As JSON.
    pub fn json(&self, file: &str) -> serde_json::Value {
        let rejected: Vec<_> = self
            .rejected
            .iter()
            .map(|r| serde_json::json!({ "row": r.row, "reason": r.reason, "code": r.code }))
            .collect();
        serde_json::json!({
            "file": file,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": rejected,
            "rejected_unlisted": self.unlisted_rejected,
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| (*s).to_owned()).collect()
    }

    fn read_all(data: &[u8], options: &ReadOptions) -> Result<Vec<Row>, String> {
        let mut rows = CsvRows::new(data, options)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next_row() {
            out.push(r?);
        }
        Ok(out)
    }

    fn consent_options() -> ReadOptions {
        ReadOptions {
            defaults: RowDefaults {
                source: "import:test.csv".into(),
                notice_version: "2026-01".into(),
            },
            ..ReadOptions::default()
        }
    }

    #[test]
    fn french_headers_map_to_fields() {
        let h = headers(&[
            "Courriel",
            "Téléphone",
            "Prénom",
            "NOM",
            "Adresse",
            "Code postal",
            "Ville",
            "Pays",
            "Étiquettes",
            "custom_Bureau de vote",
            "consent:newsletter",
            "Consent:SMS-Mobilisation:SMS",
        ]);
        let m = Mapping::new(&h, &MappingOptions::default()).unwrap();
        assert_eq!(
            m.targets(),
            &[
                Target::Email,
                Target::Phone,
                Target::GivenName,
                Target::FamilyName,
                Target::Line1,
                Target::Postcode,
                Target::City,
                Target::Country,
                Target::Tags,
                Target::Custom("bureau_de_vote".into()),
                Target::Consent {
                    purpose: "newsletter".into(),
                    channel: String::new()
                },
                Target::Consent {
                    purpose: "sms-mobilisation".into(),
                    channel: "sms".into()
                },
            ]
        );
    }

    #[test]
    fn english_aliases_and_field_paths() {
        for (h, t) in [
            ("E-mail", Target::Email),
            ("first_name", Target::GivenName),
            ("Last Name", Target::FamilyName),
            ("mobile", Target::Phone),
            ("portable", Target::Phone),
            ("address.postcode", Target::Postcode),
            ("CP", Target::Postcode),
            ("commune", Target::City),
            ("line2", Target::Line2),
            ("Source", Target::Source),
            ("custom.shirt-size", Target::Custom("shirt_size".into())),
        ] {
            assert_eq!(default_target(h), Some(t), "{h}");
        }
        assert_eq!(default_target("favourite colour"), None);
        assert_eq!(default_target("custom_"), None);
        assert_eq!(default_target("consent:"), None);
        assert_eq!(default_target("consent:a:b:c"), None);
    }

    #[test]
    fn decomposed_accents_fold_too() {
        assert_eq!(normalize_header("Pre\u{301}nom"), "prenom");
        assert_eq!(normalize_header("  Code  Postal "), "code_postal");
        assert_eq!(normalize_header("\u{feff}Email"), "email");
    }

    #[test]
    fn unknown_columns_are_listed_unless_ignored() {
        let h = headers(&["email", "shoe size", "", "hat"]);
        let e = Mapping::new(&h, &MappingOptions::default()).unwrap_err();
        assert!(e.contains("\"shoe size\""), "{e}");
        assert!(e.contains("#3 (no name)"), "{e}");
        assert!(e.contains("\"hat\""), "{e}");
        let m = Mapping::new(
            &h,
            &MappingOptions {
                ignore_unknown: true,
                ..MappingOptions::default()
            },
        )
        .unwrap();
        assert_eq!(m.targets()[1], Target::Ignore);
    }

    #[test]
    fn map_overrides_and_validates() {
        let h = headers(&["Mail perso", "Tel", "Mail pro"]);
        let m = Mapping::new(
            &h,
            &MappingOptions {
                overrides: vec![
                    ("mail perso".into(), "email".into()),
                    ("Mail pro".into(), "custom_work_email".into()),
                ],
                ignore_unknown: false,
            },
        )
        .unwrap();
        assert_eq!(
            m.targets(),
            &[
                Target::Email,
                Target::Phone,
                Target::Custom("work_email".into())
            ]
        );
        let e = Mapping::new(
            &h,
            &MappingOptions {
                overrides: vec![("missing".into(), "email".into())],
                ignore_unknown: true,
            },
        )
        .unwrap_err();
        assert!(e.contains("no column \"missing\""), "{e}");
        let e = Mapping::new(
            &h,
            &MappingOptions {
                overrides: vec![("Tel".into(), "shoe".into())],
                ignore_unknown: true,
            },
        )
        .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn duplicate_targets_and_missing_contact_are_refused() {
        let e =
            Mapping::new(&headers(&["email", "courriel"]), &MappingOptions::default()).unwrap_err();
        assert!(e.contains("both map to email"), "{e}");
        let e = Mapping::new(&headers(&["prenom", "nom"]), &MappingOptions::default()).unwrap_err();
        assert!(e.contains("no column holds an email or a phone"), "{e}");
        // Several tag columns are fine.
        Mapping::new(
            &headers(&["email", "tags", "tag"]),
            &MappingOptions::default(),
        )
        .unwrap();
    }

    #[test]
    fn rows_become_supporters() {
        let data = "email;prénom;tags;cp;consent:newsletter;consent:sms-mobilisation;custom_ville_natale\n\
                    a@b.fr;Anne;militant|quartier-nord; paris-5 ;Oui;0;Lyon\n\
                    c@d.fr;;;;;;\n";
        let rows = read_all(data.as_bytes(), &consent_options()).unwrap();
        assert_eq!(rows.len(), 2);
        let Row::Parsed { row, supporter } = &rows[0] else {
            panic!("{:?}", rows[0])
        };
        assert_eq!(*row, 1);
        assert_eq!(supporter.email, "a@b.fr");
        assert_eq!(supporter.given_name, "Anne");
        assert_eq!(supporter.tags, vec!["militant", "quartier-nord"]);
        assert_eq!(supporter.address.as_ref().unwrap().postcode, "paris-5");
        assert_eq!(supporter.custom.get("ville_natale").unwrap(), "Lyon");
        assert_eq!(supporter.source, "import:test.csv");
        assert_eq!(supporter.consents.len(), 1);
        assert_eq!(supporter.consents[0].purpose, "newsletter");
        assert_eq!(supporter.consents[0].source, "import");
        assert_eq!(supporter.consents[0].notice_version, "2026-01");
        let Row::Parsed { row, supporter } = &rows[1] else {
            panic!("{:?}", rows[1])
        };
        assert_eq!(*row, 2);
        assert!(supporter.address.is_none());
        assert!(supporter.tags.is_empty() && supporter.consents.is_empty());
    }

    #[test]
    fn bad_rows_are_rejected_with_file_row_numbers() {
        let mut data = b"email,given_name,consent:newsletter\n".to_vec();
        data.extend_from_slice(b"a@b.fr,Anne,yes\n");
        data.extend_from_slice(b"b@b.fr,Too,many,fields\n");
        data.extend_from_slice(b"c@b.fr,\xff\xfe,1\n");
        data.extend_from_slice(b"d@b.fr,Dan,maybe\n");
        data.extend_from_slice(b"\"e@b.fr\",\"multi\nline\",x\n");
        data.extend_from_slice(b"f@b.fr,Fay\n");
        let rows = read_all(&data, &consent_options()).unwrap();
        let summary: Vec<(u64, bool)> = rows
            .iter()
            .map(|r| match r {
                Row::Parsed { row, .. } => (*row, true),
                Row::Rejected { row, .. } => (*row, false),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, true),
                (2, false),
                (3, false),
                (4, false),
                (5, true),
                (6, false)
            ]
        );
        let Row::Rejected { reason, .. } = &rows[1] else {
            panic!()
        };
        assert_eq!(reason, "expected 3 fields, found 4");
        let Row::Rejected { reason, .. } = &rows[2] else {
            panic!()
        };
        assert!(reason.contains("not valid UTF-8"), "{reason}");
        let Row::Rejected { reason, .. } = &rows[3] else {
            panic!()
        };
        assert!(reason.contains("\"maybe\""), "{reason}");
    }

    #[test]
    fn consent_columns_need_a_notice_version() {
        let e = read_all(
            b"email,consent:newsletter\na@b.fr,1\n",
            &ReadOptions::default(),
        )
        .unwrap_err();
        assert!(e.contains("--notice-version"), "{e}");
    }

    #[test]
    fn delimiter_is_sniffed_from_the_header_line() {
        assert_eq!(sniff_delimiter(b"email;nom;prenom\na,b,c,d,e\n"), b';');
        assert_eq!(sniff_delimiter(b"email,nom\n"), b',');
        assert_eq!(sniff_delimiter(b"email\tnom\n"), b'\t');
        assert_eq!(sniff_delimiter(b"\"a;b;c\",email\n"), b',');
        assert_eq!(sniff_delimiter(b""), b',');
        let rows = read_all(
            b"\xef\xbb\xbfEmail\tVille\na@b.fr\tParis\n",
            &ReadOptions::default(),
        )
        .unwrap();
        let Row::Parsed { supporter, .. } = &rows[0] else {
            panic!()
        };
        assert_eq!(supporter.address.as_ref().unwrap().city, "Paris");
    }

    #[test]
    fn empty_file_is_refused() {
        assert!(read_all(b"", &ReadOptions::default()).is_err());
    }

    #[test]
    fn server_rejections_get_file_row_numbers() {
        let mut s = ImportSummary {
            rows: 10,
            ..ImportSummary::default()
        };
        s.reject_locally(4, "expected 3 fields, found 2".into());
        s.add_response(
            &pb::ImportResponse {
                created: 5,
                updated: 1,
                unchanged: 1,
                rejected: vec![
                    pb::RejectedRow {
                        row: 2,
                        reason: "email: not an email address".into(),
                        code: "InvalidArgument".into(),
                    },
                    pb::RejectedRow {
                        row: 99,
                        reason: "odd".into(),
                        code: "Internal".into(),
                    },
                ],
                // Two more the server refused without listing them.
                rejected_total: 4,
            },
            // Stream positions 1..=8 carried file rows 1, 2, 3, 5, 6, 7, 8, 9.
            &[1, 2, 3, 5, 6, 7, 8, 9],
        );
        s.sort();
        assert_eq!(
            s.rejected.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![0, 2, 4]
        );
        assert!(s.rejected[0].reason.starts_with("stream position 99"));
        let text = s.lines("f.csv");
        assert!(text.starts_with("f.csv: 10 rows: 5 created, 1 updated, 1 unchanged, 5 rejected"));
        assert!(text.contains("and 2 more rejected rows not listed"));
        assert_eq!(s.json("f.csv")["rejected_unlisted"], 2);
        assert!(text.contains("row 2: email: not an email address [InvalidArgument]"));
        assert_eq!(s.json("f.csv")["rejected"][1]["row"], 2);
    }

    const KNOWN: &[(&str, &str)] = &[
        ("email", "email"),
        ("téléphone", "phone"),
        ("prénom", "given_name"),
        ("nom", "family_name"),
        ("adresse", "line1"),
        ("line2", "line2"),
        ("code_postal", "postcode"),
        ("ville", "city"),
        ("pays", "country"),
        ("tags", "tags"),
        ("source", "source"),
        ("custom_bureau", "custom_bureau"),
        ("consent:newsletter:email", "consent:newsletter:email"),
    ];

    fn recase(s: &str, mask: &[bool]) -> String {
        s.chars()
            .zip(mask.iter().cycle())
            .map(|(c, up)| {
                if *up {
                    c.to_uppercase().collect::<String>()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    proptest! {
        /// Any order and casing of known headers maps each column to the same field, and a
        /// row built by field yields the same supporter whatever the order.
        #[test]
        fn header_order_and_case_do_not_matter(
            order in Just((0..KNOWN.len()).collect::<Vec<_>>()).prop_shuffle(),
            mask in proptest::collection::vec(any::<bool>(), 1..16),
            pad in "[ ]{0,2}",
        ) {
            let hs: Vec<String> = order
                .iter()
                .map(|&i| format!("{pad}{}{pad}", recase(KNOWN[i].0, &mask)))
                .collect();
            let m = Mapping::new(&hs, &MappingOptions::default()).unwrap();
            for (col, &i) in order.iter().enumerate() {
                prop_assert_eq!(m.targets()[col].name(), KNOWN[i].1);
            }
            let cells: Vec<String> = order.iter().map(|&i| match KNOWN[i].1 {
                "email" => "x@y.fr".to_owned(),
                "tags" => "a;b".to_owned(),
                f if f.starts_with("consent") => "oui".to_owned(),
                f => format!("v-{f}"),
            }).collect();
            let cell_refs: Vec<&str> = cells.iter().map(String::as_str).collect();
            let defaults = RowDefaults { source: "d".into(), notice_version: "n1".into() };
            let got = m.supporter(&cell_refs, &defaults).unwrap();
            let canonical_headers: Vec<String> = KNOWN.iter().map(|(h, _)| (*h).to_owned()).collect();
            let canonical = Mapping::new(&canonical_headers, &MappingOptions::default()).unwrap();
            let mut by_field = vec![""; KNOWN.len()];
            for (col, &i) in order.iter().enumerate() {
                by_field[i] = cell_refs[col];
            }
            prop_assert_eq!(got, canonical.supporter(&by_field, &defaults).unwrap());
        }

        /// Arbitrary cell text never panics: each row is a supporter or a rejection.
        #[test]
        fn arbitrary_cells_never_panic(cells in proptest::collection::vec(".{0,24}", KNOWN.len())) {
            let hs: Vec<String> = KNOWN.iter().map(|(h, _)| (*h).to_owned()).collect();
            let m = Mapping::new(&hs, &MappingOptions::default()).unwrap();
            let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
            let _ = m.supporter(&refs, &RowDefaults::default());
        }

        /// Arbitrary bytes as a file never panic either.
        #[test]
        fn arbitrary_files_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut data = b"email,tags,consent:newsletter,custom_x\n".to_vec();
            data.extend_from_slice(&body);
            let options = ReadOptions {
                defaults: RowDefaults { source: String::new(), notice_version: "v".into() },
                ..ReadOptions::default()
            };
            if let Ok(mut rows) = CsvRows::new(&data[..], &options) {
                while let Some(r) = rows.next_row() {
                    prop_assert!(r.is_ok());
                }
            }
        }
    }
}
