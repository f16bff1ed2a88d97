//! The parts of `vaultctl` beyond argument parsing: call metadata, readable output of the
//! rights, key, backup and retention replies, and the streaming calls (import, search,
//! watch). They live in the library so every build of the `vaultctl` binary reaches them.

use std::io::{self, Read, Write};
use std::time::Duration;

use prost_types::Timestamp;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use vault_proto::metadata;
use vault_proto::v1 as pb;
use vault_proto::v1::supporters_client::SupportersClient;

use crate::csv_import::{CsvRows, ImportSummary, Progress, Row};

/// The purpose the DPO's calls on personal data declare.
pub const RIGHTS_PURPOSE: &str = metadata::DPO_PURPOSE;

/// The metadata key of the next page's token in a `Search` reply.
pub const NEXT_PAGE_TOKEN: &str = metadata::NEXT_PAGE_TOKEN;

/// How to reach the daemon over TLS: the CA that signed its certificate and, for mutual
/// TLS, the client's certificate and key (PEM files).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificate(s) the daemon's certificate must chain to.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Client certificate, for mutual TLS.
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key.
    pub key: Option<std::path::PathBuf>,
    /// Name the daemon's certificate must carry (default: the address's host).
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// Whether any TLS option was given.
    pub fn any(&self) -> bool {
        self.ca_cert.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// The URL of the daemon at `addr`: `http://…` or `https://…` as given, or a bare
/// `host:port` (the form `--listen` takes), which means TLS when TLS options are given.
pub fn daemon_url(addr: &str, tls: &TlsFiles) -> Result<String, String> {
    let a = addr.trim();
    let url = if a.starts_with("http://") || a.starts_with("https://") {
        a.to_owned()
    } else if a.contains("://") {
        return Err(format!(
            "bad address {a}: use http://HOST:PORT, https://HOST:PORT or HOST:PORT"
        ));
    } else if tls.any() {
        format!("https://{a}")
    } else {
        format!("http://{a}")
    };
    if url.starts_with("http://") && tls.any() {
        return Err(format!(
            "TLS options were given but the address {a} is plaintext (http://): use \
             https://HOST:PORT or a bare HOST:PORT"
        ));
    }
    if url.starts_with("https://") && tls.ca_cert.is_none() {
        return Err(format!(
            "{a} is a TLS address: pass --ca-cert FILE (or VAULT_CA_CERT), the CA certificate \
             that signed the daemon's certificate"
        ));
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("mutual TLS needs both --cert and --key (or VAULT_CERT and VAULT_KEY)".into());
    }
    Ok(url)
}

/// An error and its causes, outermost first (`transport error: …: connection refused`).
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Connects to the daemon at `addr` (see [`daemon_url`]), over TLS when `tls` says so.
/// Failures say what failed and what to check.
pub async fn connect(addr: &str, tls: &TlsFiles) -> Result<Channel, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let url = daemon_url(addr, tls)?;
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
    };
    let mut endpoint =
        Endpoint::from_shared(url.clone()).map_err(|e| format!("bad address {addr}: {e}"))?;
    let secure = url.starts_with("https://");
    if secure {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &tls.ca_cert {
            config = config.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            let key = zeroize::Zeroizing::new(read("client key", key)?);
            config = config.identity(Identity::from_pem(
                read("client certificate", cert)?,
                key.as_slice(),
            ));
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("TLS settings: {}", cause_chain(&e)))?;
    }
    endpoint.connect().await.map_err(|e| {
        let hint = if secure {
            "is the daemon running there with TLS on, signed by --ca-cert, for this host name \
             (--tls-server-name)?"
        } else {
            "is the daemon running there? If it serves TLS, use https:// with --ca-cert"
        };
        format!("cannot connect to {url}: {} ({hint})", cause_chain(&e))
    })
}

/// `message` with `authorization: Bearer <token>` and, when given, `x-vault-purpose`. An
/// empty token sends no `authorization` (a client certificate identifies the caller).
pub fn with_token<T>(message: T, token: &str, purpose: Option<&str>) -> Result<Request<T>, String> {
    let mut req = Request::new(message);
    if !token.is_empty() {
        let value = MetadataValue::try_from(metadata::bearer(token))
            .map_err(|_| "the token contains characters that cannot be sent".to_owned())?;
        req.metadata_mut().insert(metadata::AUTHORIZATION, value);
    }
    if let Some(p) = purpose {
        let value = MetadataValue::try_from(p)
            .map_err(|_| "the purpose contains characters that cannot be sent".to_owned())?;
        req.metadata_mut().insert(metadata::PURPOSE, value);
    }
    Ok(req)
}

/// A gRPC status as one line: `Code: message`. A status made on this side (the connection
/// failed: it has a cause, a daemon's reply has none) gets its causes and what to check.
pub fn status_line(s: tonic::Status) -> String {
    let mut line = format!("{:?}: {}", s.code(), s.message());
    if let Some(cause) = std::error::Error::source(&s) {
        line.push_str(": ");
        line.push_str(&cause_chain(cause));
        line.push_str(
            " (the connection to the daemon failed: is it running at that address? If it \
             serves TLS, use https:// with --ca-cert)",
        );
    }
    line
}

/// `YYYY-MM-DD` as midnight UTC of that day.
pub fn parse_date(s: &str) -> Result<Timestamp, String> {
    let t = s.trim();
    let shape_ok = t.len() == 10
        && t.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let bad = || format!("{s:?} is not a date: expected YYYY-MM-DD");
    if !shape_ok {
        return Err(bad());
    }
    let parsed: Timestamp = format!("{t}T00:00:00Z").parse().map_err(|_| bad())?;
    // The parser accepts 31 February as 3 March; refuse what does not print back the same.
    if date(Some(&parsed)) != t {
        return Err(bad());
    }
    Ok(parsed)
}

/// A timestamp as RFC 3339 (UTC, whole seconds), `-` when unset.
pub fn time(t: Option<&Timestamp>) -> String {
    match t {
        Some(t) => Timestamp {
            seconds: t.seconds,
            nanos: 0,
        }
        .to_string(),
        None => "-".to_owned(),
    }
}

/// The UTC date of a timestamp, `-` when unset.
pub fn date(t: Option<&Timestamp>) -> String {
    let s = time(t);
    s.get(..10).map_or(s.clone(), str::to_owned)
}

fn unix(t: Option<&Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn joined<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `key: value` lines with the values aligned.
fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A supporter as JSON (the shape `supporter get` prints): the id and the fields the reply
/// carries (`visible_fields`); a field the purpose or the mask hid is absent, never `""`, and
/// `address` only appears with at least one of its parts. A reply without `visible_fields`
/// (an older vault) is printed whole.
pub fn supporter_json(s: &pb::Supporter) -> serde_json::Value {
    use serde_json::Value;
    let shown = |path: &str| {
        s.visible_fields
            .as_ref()
            .is_none_or(|m| m.paths.iter().any(|p| p == path))
    };
    let a = s.address.clone().unwrap_or_default();
    let mut address = serde_json::Map::new();
    for (part, value) in [
        ("line1", a.line1),
        ("line2", a.line2),
        ("postcode", a.postcode),
        ("city", a.city),
        ("country", a.country),
    ] {
        if shown(&format!("address.{part}")) {
            address.insert(part.to_owned(), Value::from(value));
        }
    }
    let mut out = serde_json::Map::new();
    out.insert("id".to_owned(), Value::from(s.id.clone()));
    let fields: [(&str, &str, Value); 10] = [
        ("given_name", "given_name", s.given_name.clone().into()),
        ("family_name", "family_name", s.family_name.clone().into()),
        ("email", "email", s.email.clone().into()),
        ("phone", "phone", s.phone.clone().into()),
        ("tags", "tags", s.tags.clone().into()),
        ("custom", "custom", serde_json::json!(s.custom)),
        ("source", "source", s.source.clone().into()),
        (
            "created_at",
            "created_at_unix",
            unix(s.created_at.as_ref()).into(),
        ),
        (
            "updated_at",
            "updated_at_unix",
            unix(s.updated_at.as_ref()).into(),
        ),
        ("address", "address", Value::Object(address)),
    ];
    for (path, key, value) in fields {
        let carried = match &value {
            Value::Object(parts) if path == "address" => !parts.is_empty(),
            _ => shown(path),
        };
        if carried {
            out.insert(key.to_owned(), value);
        }
    }
    Value::Object(out)
}

/// An erasure receipt.
pub fn receipt(r: &pb::ErasureReceipt, json: bool) -> String {
    if json {
        return serde_json::json!({
            "receipt_id": r.receipt_id, "subject_id": r.subject_id,
            "erased_at": time(r.erased_at.as_ref()), "request_ref": r.request_ref,
            "client_id": r.client_id, "suppressed": r.suppressed,
        })
        .to_string();
    }
    fields(&[
        ("erased", r.subject_id.clone()),
        ("receipt", r.receipt_id.clone()),
        ("at", time(r.erased_at.as_ref())),
        ("request ref", or_dash(&r.request_ref).to_owned()),
        ("by client", or_dash(&r.client_id).to_owned()),
        ("suppressed", yes_no(r.suppressed).to_owned()),
    ])
}

/// A subject's restriction, objection and suppression state.
pub fn subject_state(s: &pb::SubjectState, json: bool) -> String {
    if json {
        return serde_json::json!({
            "subject_id": s.subject_id, "restricted": s.restricted,
            "objected_channels": s.objected_channels, "suppressed": s.suppressed,
        })
        .to_string();
    }
    fields(&[
        ("subject", s.subject_id.clone()),
        ("restricted", yes_no(s.restricted).to_owned()),
        ("objected channels", joined(&s.objected_channels)),
        ("suppressed", yes_no(s.suppressed).to_owned()),
    ])
}

fn request_value(r: &pb::RightsRequest) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "kind": r.kind, "received_at": date(r.received_at.as_ref()),
        "due_at": date(r.due_at.as_ref()), "subject_id": r.subject_id, "status": r.status,
        "closed_at": r.closed_at.as_ref().map(|t| time(Some(t))), "action": r.action,
        "reference": r.reference, "overdue": r.overdue, "opened_by": r.opened_by,
        "closed_by": r.closed_by,
    })
}

/// One rights request ticket.
pub fn rights_request(r: &pb::RightsRequest, json: bool) -> String {
    if json {
        return request_value(r).to_string();
    }
    let mut rows = vec![
        ("ticket", r.id.clone()),
        ("kind", r.kind.clone()),
        ("received", date(r.received_at.as_ref())),
        (
            "due",
            format!(
                "{}{}",
                date(r.due_at.as_ref()),
                if r.overdue { " (OVERDUE)" } else { "" }
            ),
        ),
        ("status", r.status.clone()),
        ("subject", or_dash(&r.subject_id).to_owned()),
        ("reference", or_dash(&r.reference).to_owned()),
    ];
    if r.closed_at.is_some() || !r.action.is_empty() {
        rows.push(("closed", time(r.closed_at.as_ref())));
        rows.push(("action", or_dash(&r.action).to_owned()));
    }
    fields(&rows)
}

/// A list of tickets: a table, or a JSON array.
pub fn rights_requests(list: &[pb::RightsRequest], json: bool) -> String {
    if json {
        return serde_json::Value::from(list.iter().map(request_value).collect::<Vec<_>>())
            .to_string();
    }
    if list.is_empty() {
        return "no requests".to_owned();
    }
    let mut rows = vec![[
        "ID".to_owned(),
        "KIND".to_owned(),
        "RECEIVED".to_owned(),
        "DUE".to_owned(),
        "STATUS".to_owned(),
        "SUBJECT".to_owned(),
        "REFERENCE".to_owned(),
    ]];
    for r in list {
        let status = if r.overdue {
            format!("{} OVERDUE", r.status)
        } else if r.action.is_empty() {
            r.status.clone()
        } else {
            format!("{} ({})", r.status, r.action)
        };
        rows.push([
            r.id.clone(),
            r.kind.clone(),
            date(r.received_at.as_ref()),
            date(r.due_at.as_ref()),
            status,
            or_dash(&r.subject_id).to_owned(),
            or_dash(&r.reference).to_owned(),
        ]);
    }
    table(&rows)
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                if i + 1 == N {
                    line.push_str(c);
                } else {
                    let pad = w - c.chars().count();
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The reply of a key rotation.
pub fn rotation(r: &pb::RotateKeysResponse, json: bool) -> String {
    if json {
        return serde_json::json!({
            "epoch": r.epoch, "rewrapped": r.rewrapped,
            "destroyed_epochs": r.destroyed_epochs, "epochs": r.epochs,
        })
        .to_string();
    }
    fields(&[
        ("active epoch", r.epoch.to_string()),
        ("keys re-wrapped", r.rewrapped.to_string()),
        ("epochs destroyed", joined(&r.destroyed_epochs)),
        ("epochs held", joined(&r.epochs)),
    ])
}

/// A backup manifest.
pub fn manifest(m: &pb::BackupManifest, json: bool) -> String {
    if json {
        return serde_json::json!({
            "path": m.path, "taken_at": time(m.taken_at.as_ref()),
            "taken_at_unix": unix(m.taken_at.as_ref()), "audit_size": m.audit_size,
            "supporters": m.supporters, "epochs": m.epochs, "format_version": m.format_version,
            "erasures": m.erasures, "root_key_included": false,
        })
        .to_string();
    }
    fields(&[
        ("backup", m.path.clone()),
        ("taken at", time(m.taken_at.as_ref())),
        ("supporters", m.supporters.to_string()),
        ("erasures journaled", m.erasures.to_string()),
        ("access log size", m.audit_size.to_string()),
        ("key epochs", joined(&m.epochs)),
        ("format version", m.format_version.to_string()),
        (
            "root key",
            "not included: keep the root key file apart".to_owned(),
        ),
    ])
}

/// The reply of a retention sweep.
pub fn sweep(r: &pb::RetentionSweepResponse, json: bool) -> String {
    if json {
        return serde_json::json!({
            "dry_run": r.dry_run, "examined": r.examined, "subject_ids": r.subject_ids,
            "kept_restricted": r.kept_restricted,
        })
        .to_string();
    }
    let verb = if r.dry_run { "would erase" } else { "erased" };
    let mut out = format!(
        "{}examined {} supporters, {verb} {}",
        if r.dry_run { "dry run: " } else { "" },
        r.examined,
        r.subject_ids.len()
    );
    for id in &r.subject_ids {
        out.push_str("\n  ");
        out.push_str(id);
    }
    if !r.kept_restricted.is_empty() {
        out.push_str(&format!(
            "\nkept {} past retention because processing is restricted (art. 18):",
            r.kept_restricted.len()
        ));
        for id in &r.kept_restricted {
            out.push_str("\n  ");
            out.push_str(id);
        }
    }
    out
}

/// A change-feed event: one line.
pub fn change(e: &pb::ChangeEvent, json: bool) -> String {
    if json {
        return serde_json::json!({
            "cursor": e.cursor, "subject_id": e.subject_id, "kind": e.kind,
            "at": time(e.at.as_ref()), "purpose": e.purpose, "channel": e.channel,
        })
        .to_string();
    }
    let mut line = format!("{} {:<17} {}", time(e.at.as_ref()), e.kind, e.subject_id);
    if !e.purpose.is_empty() || !e.channel.is_empty() {
        line.push_str(&format!(" {}/{}", or_dash(&e.purpose), or_dash(&e.channel)));
    }
    line.push_str(&format!(" cursor={}", e.cursor));
    line
}

/// Writes `line` and a newline; `Ok(false)` when the reader went away (a closed pipe).
pub fn write_line<W: Write>(out: &mut W, line: &str) -> Result<bool, String> {
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("cannot write the output: {e}")),
    }
}

/// What a search printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchOutcome {
    /// Supporters printed.
    pub supporters: u64,
    /// Pages read.
    pub pages: u64,
    /// The token of the page after the last one read (only when not reading every page).
    pub next_page_token: Option<String>,
}

/// `Supporters.Search`, one JSON line per supporter on `out`; with `all_pages`, follows the
/// `x-vault-next-page-token` of each page until the last.
pub async fn search<W: Write>(
    client: &mut SupportersClient<Channel>,
    token: &str,
    purpose: Option<&str>,
    mut request: pb::SearchRequest,
    all_pages: bool,
    out: &mut W,
) -> Result<SearchOutcome, String> {
    let mut outcome = SearchOutcome::default();
    loop {
        let reply = client
            .search(with_token(request.clone(), token, purpose)?)
            .await
            .map_err(status_line)?;
        let next = reply
            .metadata()
            .get(NEXT_PAGE_TOKEN)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let mut stream = reply.into_inner();
        outcome.pages += 1;
        while let Some(s) = stream.message().await.map_err(status_line)? {
            if !write_line(out, &supporter_json(&s).to_string())? {
                return Ok(outcome);
            }
            outcome.supporters += 1;
        }
        match next {
            Some(t) if all_pages => request.page_token = t,
            next => {
                outcome.next_page_token = next;
                return Ok(outcome);
            }
        }
    }
}

/// What a watch saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOutcome {
    /// Events printed.
    pub events: u64,
    /// The cursor of the last event printed (resume from it).
    pub cursor: Option<String>,
}

/// `Supporters.Watch` from `cursor`, one line per event on `out`. With `follow`, runs until
/// the stream ends; otherwise stops once caught up: no event for `idle`.
#[allow(clippy::too_many_arguments)]
pub async fn watch<W: Write>(
    client: &mut SupportersClient<Channel>,
    token: &str,
    purpose: Option<&str>,
    cursor: String,
    follow: bool,
    idle: Duration,
    json: bool,
    out: &mut W,
) -> Result<WatchOutcome, String> {
    let mut stream = client
        .watch(with_token(pb::WatchRequest { cursor }, token, purpose)?)
        .await
        .map_err(status_line)?
        .into_inner();
    let mut outcome = WatchOutcome::default();
    loop {
        let next = if follow {
            stream.message().await
        } else {
            match tokio::time::timeout(idle, stream.message()).await {
                Ok(next) => next,
                Err(_) => return Ok(outcome),
            }
        };
        match next.map_err(status_line)? {
            Some(e) => {
                if !write_line(out, &change(&e, json))? {
                    return Ok(outcome);
                }
                outcome.events += 1;
                outcome.cursor = Some(e.cursor);
            }
            None => return Ok(outcome),
        }
    }
}

/// One `Import` call's rows: where they go, the file row of the first, and (once they are
/// all sent) their file row numbers by stream position.
struct Batch {
    rows: tokio::sync::mpsc::Receiver<pb::Supporter>,
    first_row: u64,
    file_rows: tokio::sync::oneshot::Receiver<Vec<u64>>,
}

/// What the reading side found.
struct ReadOutcome {
    summary: ImportSummary,
    fatal: Option<String>,
}

type OpenBatch = (
    tokio::sync::mpsc::Sender<pb::Supporter>,
    Vec<u64>,
    tokio::sync::oneshot::Sender<Vec<u64>>,
);

fn close_batch(open: &mut Option<OpenBatch>) {
    if let Some((tx, file_rows, done)) = open.take() {
        drop(tx);
        let _ = done.send(file_rows);
    }
}

/// Reads every row on its own thread (the file is read synchronously), hands out batches.
fn read_rows<R: Read>(
    mut rows: CsvRows<R>,
    batch: usize,
    batches: &tokio::sync::mpsc::Sender<Batch>,
    progress: &Progress,
) -> ReadOutcome {
    let mut summary = ImportSummary::default();
    let mut fatal = None;
    let mut open: Option<OpenBatch> = None;
    while let Some(next) = rows.next_row() {
        progress.update(rows.bytes_read(), rows.rows_read());
        match next {
            Err(e) => {
                fatal = Some(e);
                break;
            }
            Ok(Row::Rejected {
                row,
                column,
                reason,
            }) => summary.reject_locally(row, column, reason),
            Ok(Row::Parsed { row, supporter }) => {
                if open.is_none() {
                    let (tx, rx) = tokio::sync::mpsc::channel(256);
                    let (done, file_rows) = tokio::sync::oneshot::channel();
                    let start = Batch {
                        rows: rx,
                        first_row: row,
                        file_rows,
                    };
                    if batches.blocking_send(start).is_err() {
                        break;
                    }
                    open = Some((tx, Vec::with_capacity(batch.min(65_536)), done));
                }
                let Some((tx, file_rows, _)) = open.as_mut() else {
                    break;
                };
                file_rows.push(row);
                let full = file_rows.len() >= batch;
                if tx.blocking_send(*supporter).is_err() {
                    break;
                }
                if full {
                    close_batch(&mut open);
                }
            }
        }
    }
    close_batch(&mut open);
    summary.rows = rows.rows_read();
    summary.unplaced = rows.unplaced();
    ReadOutcome { summary, fatal }
}

/// Streams the rows of `rows` to `Supporters.Import`, `batch` rows per call, and adds up the
/// replies. Rows the file gets wrong are counted as rejected and never sent; the server's
/// rejections are reported by file row. Fails only when the file cannot be read or a call
/// fails as a whole.
pub async fn import<R: Read + Send + 'static>(
    channel: Channel,
    token: &str,
    purpose: &str,
    rows: CsvRows<R>,
    batch: usize,
    progress: Progress,
) -> Result<ImportSummary, String> {
    let batch = batch.max(1);
    let mapping = rows.mapping().clone();
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Batch>(1);
    let (read_tx, read_rx) = tokio::sync::oneshot::channel();
    let reader_progress = progress.clone();
    // A plain thread, not `spawn_blocking`: if a call fails, the command ends without
    // waiting for the reader, which stops at its next send.
    std::thread::Builder::new()
        .name("csv-reader".into())
        .spawn(move || {
            let outcome = read_rows(rows, batch, &batch_tx, &reader_progress);
            let _ = read_tx.send(outcome);
        })
        .map_err(|e| format!("cannot start the file reader: {e}"))?;

    let mut client = SupportersClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let mut replies = ImportSummary::default();
    let mut first_call_row = None;
    while let Some(b) = batch_rx.recv().await {
        let first_call = *first_call_row.get_or_insert(b.first_row) == b.first_row;
        let stream = tokio_stream::wrappers::ReceiverStream::new(b.rows);
        let reply = client
            .import(with_token(stream, token, Some(purpose))?)
            .await
            .map_err(status_line);
        match reply {
            Ok(r) => {
                let file_rows = b.file_rows.await.unwrap_or_default();
                replies.add_response(&r.into_inner(), &file_rows);
            }
            Err(e) if first_call => {
                progress.finish();
                return Err(format!(
                    "import failed: {e} (re-running the file is safe: rows already imported \
                     change nothing)"
                ));
            }
            Err(e) => {
                progress.finish();
                return Err(format!(
                    "import stopped at the call starting with file row {}: {e}. Rows before \
                     it were imported ({} created, {} updated, {} unchanged); rows from it on \
                     may be partly imported. Re-running the file is safe: rows already \
                     imported change nothing",
                    b.first_row, replies.created, replies.updated, replies.unchanged
                ));
            }
        }
    }
    let read = read_rx
        .await
        .map_err(|_| "the file reader stopped unexpectedly".to_owned())?;
    progress.finish();
    if let Some(f) = read.fatal {
        return Err(format!(
            "{f} (after {} rows; the rows before were imported)",
            read.summary.rows
        ));
    }
    let mut summary = read.summary;
    summary.created = replies.created;
    summary.updated = replies.updated;
    summary.unchanged = replies.unchanged;
    summary.rejected.extend(replies.rejected);
    summary.unlisted_rejected = replies.unlisted_rejected;
    summary.name_columns(&mapping);
    summary.sort();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_every_form_and_tls_options_must_agree() {
        let none = TlsFiles::default();
        let ca = TlsFiles {
            ca_cert: Some("ca.pem".into()),
            ..TlsFiles::default()
        };
        assert_eq!(
            daemon_url("127.0.0.1:50051", &none).unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(daemon_url(" http://h:1 ", &none).unwrap(), "http://h:1");
        assert_eq!(daemon_url("h:1", &ca).unwrap(), "https://h:1");
        assert_eq!(daemon_url("https://h:1", &ca).unwrap(), "https://h:1");
        let err = |addr: &str, tls: &TlsFiles| daemon_url(addr, tls).unwrap_err();
        assert!(err("https://h:1", &none).contains("--ca-cert"));
        assert!(err("http://h:1", &ca).contains("plaintext"));
        assert!(err("ftp://h:1", &none).contains("HOST:PORT"));
        let half = TlsFiles {
            cert: Some("c.pem".into()),
            ..ca.clone()
        };
        assert!(err("h:1", &half).contains("--cert and --key"));
    }

    #[test]
    fn dates_parse_strictly() {
        let t = parse_date("2026-01-31").unwrap();
        assert_eq!(t.seconds, 1_769_817_600);
        assert_eq!(date(Some(&t)), "2026-01-31");
        assert_eq!(time(Some(&t)), "2026-01-31T00:00:00Z");
        for bad in [
            "2026-02-31",
            "2026-1-31",
            "31/01/2026",
            "",
            "2026-01-31T00:00:00Z",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(time(None), "-");
    }

    #[test]
    fn readable_and_json_output() {
        let r = pb::ErasureReceipt {
            receipt_id: "r1".into(),
            subject_id: "s1".into(),
            erased_at: Some(Timestamp {
                seconds: 1_769_817_600,
                nanos: 5,
            }),
            request_ref: "LETTER-7".into(),
            client_id: "dpo".into(),
            suppressed: true,
        };
        let text = receipt(&r, false);
        assert!(text.contains("erased       s1"), "{text}");
        assert!(text.contains("at           2026-01-31T00:00:00Z"), "{text}");
        assert!(text.contains("suppressed   yes"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&receipt(&r, true)).unwrap();
        assert_eq!(v["request_ref"], "LETTER-7");

        let t = pb::RightsRequest {
            id: "t1".into(),
            kind: "erasure".into(),
            received_at: Some(parse_date("2026-01-31").unwrap()),
            due_at: Some(parse_date("2026-02-28").unwrap()),
            status: "open".into(),
            overdue: true,
            ..Default::default()
        };
        let table = rights_requests(std::slice::from_ref(&t), false);
        let mut lines = table.lines();
        assert!(lines.next().unwrap().starts_with("ID  KIND"));
        let line = lines.next().unwrap();
        assert!(
            line.contains("2026-01-31  2026-02-28  open OVERDUE"),
            "{line}"
        );
        assert!(rights_request(&t, false).contains("due        2026-02-28 (OVERDUE)"));
        assert_eq!(rights_requests(&[], false), "no requests");
        let v: serde_json::Value = serde_json::from_str(&rights_requests(&[t], true)).unwrap();
        assert_eq!(v[0]["due_at"], "2026-02-28");

        let s = sweep(
            &pb::RetentionSweepResponse {
                dry_run: true,
                subject_ids: vec!["a".into(), "b".into()],
                examined: 10,
                kept_restricted: vec!["r".into()],
            },
            false,
        );
        assert_eq!(
            s,
            "dry run: examined 10 supporters, would erase 2\n  a\n  b\nkept 1 past retention \
             because processing is restricted (art. 18):\n  r"
        );
        let c = change(
            &pb::ChangeEvent {
                cursor: "c9".into(),
                subject_id: "s1".into(),
                kind: "consent-granted".into(),
                at: None,
                purpose: "newsletter".into(),
                channel: "email".into(),
            },
            false,
        );
        assert_eq!(c, "- consent-granted   s1 newsletter/email cursor=c9");
        let m = manifest(
            &pb::BackupManifest {
                path: "/b".into(),
                epochs: vec![1, 2],
                ..Default::default()
            },
            false,
        );
        assert!(m.contains("key epochs          1, 2"), "{m}");
        let k = rotation(&pb::RotateKeysResponse::default(), false);
        assert!(k.contains("epochs destroyed  -"), "{k}");
    }

    /// A Supporters service that implements only the streaming calls, as the client needs.
    mod mock {
        use std::sync::{Arc, Mutex};

        use tonic::{Request, Response, Status};
        use vault_proto::metadata;
use vault_proto::v1 as pb;
        use vault_proto::v1::supporters_server::{Supporters, SupportersServer};

        type Feed = tokio::sync::mpsc::Sender<Result<pb::ChangeEvent, Status>>;

        #[derive(Default)]
        pub struct Mock {
            pub batches: Arc<Mutex<Vec<usize>>>,
            pub purposes: Arc<Mutex<Vec<String>>>,
            pub feeds: Arc<Mutex<Vec<Feed>>>,
        }

        fn no<T>() -> Result<T, Status> {
            Err(Status::unimplemented("mock"))
        }

        #[tonic::async_trait]
        impl Supporters for Mock {
            async fn upsert(
                &self,
                _: Request<pb::UpsertRequest>,
            ) -> Result<Response<pb::UpsertResponse>, Status> {
                no()
            }
            async fn get(
                &self,
                _: Request<pb::GetRequest>,
            ) -> Result<Response<pb::Supporter>, Status> {
                no()
            }
            async fn lookup(
                &self,
                _: Request<pb::LookupRequest>,
            ) -> Result<Response<pb::Supporter>, Status> {
                no()
            }
            async fn update(
                &self,
                _: Request<pb::UpdateRequest>,
            ) -> Result<Response<pb::Supporter>, Status> {
                no()
            }
            async fn tag(
                &self,
                _: Request<pb::TagRequest>,
            ) -> Result<Response<pb::Supporter>, Status> {
                no()
            }
            async fn untag(
                &self,
                _: Request<pb::UntagRequest>,
            ) -> Result<Response<pb::Supporter>, Status> {
                no()
            }

            type SearchStream =
                tokio_stream::Iter<std::vec::IntoIter<Result<pb::Supporter, Status>>>;

            async fn search(
                &self,
                request: Request<pb::SearchRequest>,
            ) -> Result<Response<Self::SearchStream>, Status> {
                let page = request.into_inner().page_token;
                let person = |id: &str| {
                    Ok(pb::Supporter {
                        id: id.into(),
                        ..Default::default()
                    })
                };
                let (items, next) = match page.as_str() {
                    "" => (vec![person("a"), person("b")], Some("p2")),
                    "p2" => (vec![person("c")], None),
                    _ => return Err(Status::invalid_argument("bad page token")),
                };
                let mut reply = Response::new(tokio_stream::iter(items));
                if let Some(n) = next {
                    reply.metadata_mut().insert(
                        super::NEXT_PAGE_TOKEN,
                        tonic::metadata::MetadataValue::from_static(n),
                    );
                }
                Ok(reply)
            }

            async fn import(
                &self,
                request: Request<tonic::Streaming<pb::Supporter>>,
            ) -> Result<Response<pb::ImportResponse>, Status> {
                let purpose = request
                    .metadata()
                    .get(vault_proto::metadata::PURPOSE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                self.purposes.lock().unwrap().push(purpose);
                let mut stream = request.into_inner();
                let mut reply = pb::ImportResponse::default();
                let mut n = 0u64;
                while let Some(s) = stream.message().await? {
                    n += 1;
                    if s.email.starts_with("bad") {
                        reply.rejected.push(pb::RejectedRow {
                            row: n,
                            reason: "email: refused".into(),
                            code: "InvalidArgument".into(),
                            field: "email".into(),
                        });
                    } else {
                        reply.created += 1;
                    }
                }
                self.batches
                    .lock()
                    .unwrap()
                    .push(usize::try_from(n).unwrap());
                Ok(Response::new(reply))
            }

            type WatchStream =
                tokio_stream::wrappers::ReceiverStream<Result<pb::ChangeEvent, Status>>;

            async fn watch(
                &self,
                _: Request<pb::WatchRequest>,
            ) -> Result<Response<Self::WatchStream>, Status> {
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                for i in 1..=3 {
                    let e = pb::ChangeEvent {
                        cursor: format!("c{i}"),
                        subject_id: format!("s{i}"),
                        kind: "created".into(),
                        ..Default::default()
                    };
                    tx.send(Ok(e)).await.unwrap();
                }
                // Kept open: the feed is live.
                self.feeds.lock().unwrap().push(tx);
                Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
                    rx,
                )))
            }
        }

        /// Serves `mock` on 127.0.0.1 and returns a channel to it.
        pub async fn serve(mock: Mock) -> tonic::transport::Channel {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(SupportersServer::new(mock))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn import_streams_in_batches_and_reports_file_rows() {
        let mock = mock::Mock::default();
        let (batches, purposes) = (mock.batches.clone(), mock.purposes.clone());
        let channel = mock::serve(mock).await;
        let csv = "email,prenom\n\
                   ok1@x.fr,A\n\
                   bad2@x.fr,B\n\
                   three,fields,here\n\
                   ok4@x.fr,D\n\
                   bad5@x.fr,E\n\
                   ok6@x.fr,F\n";
        let rows = CsvRows::new(
            io::Cursor::new(csv.as_bytes().to_vec()),
            &Default::default(),
        )
        .unwrap();
        let summary = import(channel, "t", "membership", rows, 2, Progress::new(0))
            .await
            .unwrap();
        assert_eq!(*batches.lock().unwrap(), vec![2, 2, 1]);
        assert_eq!(*purposes.lock().unwrap(), vec!["membership"; 3]);
        assert_eq!(summary.rows, 6);
        assert_eq!(summary.created, 3);
        let rejected: Vec<(u64, &str)> = summary
            .rejected
            .iter()
            .map(|r| (r.row, r.code.as_str()))
            .collect();
        assert_eq!(
            rejected,
            vec![(2, "InvalidArgument"), (3, ""), (5, "InvalidArgument")]
        );
    }

    #[tokio::test]
    async fn search_follows_page_tokens_and_watch_stops_when_caught_up() {
        let channel = mock::serve(mock::Mock::default()).await;
        let mut client = SupportersClient::new(channel);
        let mut out = Vec::new();
        let all = search(
            &mut client,
            "t",
            Some("newsletter"),
            Default::default(),
            true,
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(
            (all.supporters, all.pages, all.next_page_token),
            (3, 2, None)
        );
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
        let mut out = Vec::new();
        let one = search(&mut client, "t", None, Default::default(), false, &mut out)
            .await
            .unwrap();
        assert_eq!(one.next_page_token.as_deref(), Some("p2"));
        assert_eq!(one.supporters, 2);

        let mut out = Vec::new();
        let started = std::time::Instant::now();
        let seen = watch(
            &mut client,
            "t",
            Some("newsletter"),
            String::new(),
            false,
            Duration::from_millis(200),
            false,
            &mut out,
        )
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(seen.events, 3);
        assert_eq!(seen.cursor.as_deref(), Some("c3"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().all(|l| l.contains("created")), "{text}");
    }

    #[test]
    fn a_closed_pipe_ends_the_output_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert_eq!(write_line(&mut Closed, "x"), Ok(false));
        let mut v = Vec::new();
        assert_eq!(write_line(&mut v, "x"), Ok(true));
        assert_eq!(v, b"x\n");
    }
}
