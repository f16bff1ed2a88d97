//! `vaultctl import FILE.csv`: the file's rows streamed to `Supporters.Import` under
//! `--purpose`, with a progress bar and a summary. Exit status 0 when every row was
//! imported (or `--allow-rejects`), [`EXIT_REJECTED_ROWS`](super::EXIT_REJECTED_ROWS) when the import finished with
//! rejected rows, 1 when it failed; the summary goes to stdout either way, so a script tells
//! "some rows need fixing" from "nothing could be done".

use std::path::PathBuf;

use clap::Args as ClapArgs;

use super::CtlError;
use crate::client::Session;
use crate::client::csv_import::{
    CsvRows, MappingOptions, Preset, Progress, ReadOptions, RowDefaults, import,
};
use crate::client::output::write_line;

#[derive(Debug, ClapArgs)]
pub(crate) struct ImportArgs {
    /// The CSV file: a header line, then one supporter per line. Headers are recognised in
    /// English and French (email/courriel, prénom, code postal, ...), custom_<key> columns
    /// fill custom fields, consent:<purpose>[:<channel>] columns carry consent (yes: 1, yes,
    /// y, oui, o, true, vrai, x; no: empty, 0, no, n, non, false, faux). Every header:
    /// docs/import.md. A row is imported whole or refused whole, with its row number,
    /// column and reason. Exit status: 0 when every row was imported, 3 when the import
    /// finished with rejected rows (unless --allow-rejects), 1 when it failed.
    file: PathBuf,
    /// Another tool's export: nationbuilder maps NationBuilder's people export (its columns
    /// without a place in a supporter are listed in the summary, with their non-empty
    /// cells, and the import goes on).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// The supporters' source when a row has none (default: import:<file name>).
    #[arg(long)]
    source: Option<String>,
    /// Map a column: column=field (field: email, phone, given_name, family_name, line1,
    /// line2, postcode, city, country, tags, source, custom_<key>,
    /// consent:<purpose>[:<channel>], ignore). Repeatable.
    #[arg(long = "map", value_parser = parse_column_map)]
    map: Vec<(String, String)>,
    /// Rows per Import call.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// Version of the information notice the people saw (needed with consent columns).
    #[arg(long)]
    notice_version: Option<String>,
    /// Leave out columns nothing maps instead of refusing the file (they are listed in the
    /// summary, with their non-empty cells).
    #[arg(long)]
    ignore_unknown: bool,
    /// Exit 0 even when rows were rejected (they are still listed in the summary).
    #[arg(long, conflicts_with = "strict")]
    allow_rejects: bool,
    /// Fail (exit status 3) when any row was rejected: the default; kept for scripts that
    /// pass it.
    #[arg(long)]
    strict: bool,
    /// Field delimiter (default: sniffed from the header line among , ; and tab).
    #[arg(long, value_parser = parse_delimiter)]
    delimiter: Option<u8>,
}

fn parse_column_map(s: &str) -> Result<(String, String), &'static str> {
    s.rsplit_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
        .ok_or("expected column=field")
}

fn parse_delimiter(s: &str) -> Result<u8, &'static str> {
    match s {
        "\\t" | "tab" => Ok(b'\t'),
        _ => match s.as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' => Ok(*b),
            _ => Err("expected one ASCII character, or tab"),
        },
    }
}

/// Runs `import` under `purpose` (required).
pub(crate) async fn run(
    session: &Session,
    purpose: Option<&str>,
    a: ImportArgs,
    json: bool,
) -> Result<String, CtlError> {
    let purpose = purpose.ok_or(CtlError::NoImportPurpose)?;
    let file_name = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.file.display().to_string());
    let options = ReadOptions {
        mapping: MappingOptions {
            overrides: a.map,
            ignore_unknown: a.ignore_unknown,
            preset: a.preset,
            purpose: purpose.to_owned(),
        },
        defaults: RowDefaults {
            source: a.source.unwrap_or_else(|| format!("import:{file_name}")),
            notice_version: a.notice_version.unwrap_or_default(),
        },
        delimiter: a.delimiter,
    };
    let rows = CsvRows::open(&a.file, &options).map_err(crate::client::Error::Csv)?;
    let total = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    let batch = usize::try_from(a.batch).unwrap_or(usize::MAX);
    let session = session.with_purpose(Some(purpose));
    let summary = import(&session, rows, batch, Progress::new(total)).await?;
    let shown = a.file.display().to_string();
    let text = if json {
        summary.json(&shown).to_string()
    } else {
        summary.lines(&shown)
    };
    let rejected = summary.rejected_total();
    if rejected == 0 || a.allow_rejects {
        return Ok(text);
    }
    // The summary first, on stdout; then the failure, which sets the exit status.
    write_line(&mut std::io::stdout(), &text)?;
    Err(CtlError::RejectedRows {
        rejected,
        rows: summary.rows,
    })
}
