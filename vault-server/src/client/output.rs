//! Output formatting: replies as the JSON or the readable lines `vaultctl` prints
//! (docs/cli.md gives each command's shape), dates and times as they are shown and parsed,
//! and line output that ends quietly when the reader goes away.

use std::io::{self, Write};

use prost_types::Timestamp;
use vault_proto::v1 as pb;

use super::Error;

/// `YYYY-MM-DD` as midnight UTC of that day.
pub fn parse_date(s: &str) -> Result<Timestamp, Error> {
    let t = s.trim();
    let shape_ok = t.len() == 10
        && t.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let bad = || Error::BadDate(s.to_owned());
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
pub fn write_line<W: Write>(out: &mut W, line: &str) -> Result<bool, Error> {
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::Output(e)),
    }
}

/// A consent event as JSON (`consent grant`, `withdraw`, `history`).
pub fn consent_event_json(e: &pb::ConsentEvent) -> serde_json::Value {
    serde_json::json!({
        "subject_id": e.subject_id, "seq": e.seq, "purpose": e.purpose, "channel": e.channel,
        "kind": e.kind, "at_unix": e.at.as_ref().map(|t| t.seconds), "source": e.source,
        "notice_version": e.notice_version, "client_id": e.client_id,
    })
}

/// A person's consent per purpose and channel as JSON (`consent status`).
pub fn consent_status_json(r: &pb::ConsentStatusResponse) -> serde_json::Value {
    let states: Vec<_> = r
        .states
        .iter()
        .map(|s| {
            serde_json::json!({
                "purpose": s.purpose, "channel": s.channel, "active": s.active,
                "last_event_seq": s.last_event_seq,
            })
        })
        .collect();
    serde_json::json!({ "subject_id": r.subject_id, "states": states })
}

/// A client as JSON (`client create`, `list`, `revoke`), never its token.
pub fn client_json(c: &pb::Client) -> serde_json::Value {
    serde_json::json!({
        "id": c.id, "name": c.name, "role": c.role, "purposes": c.purposes,
        "created_at_unix": c.created_at.as_ref().map(|t| t.seconds),
        "revoked_at_unix": c.revoked_at.as_ref().map(|t| t.seconds),
        "cert_sha256": c.cert_sha256,
        "expires_at_unix": c.expires_at.as_ref().map(|t| t.seconds),
    })
}

/// A purpose as JSON, with the keys `purpose put` reads back.
pub fn purpose_json(p: &pb::Purpose) -> serde_json::Value {
    serde_json::json!({
        "id": p.id, "description": p.description, "lawful_basis": p.lawful_basis,
        "special_category_basis": p.special_category_basis, "channels": p.channels,
        "retention_days": p.retention_days, "fields": p.fields,
    })
}

/// A proposal waiting for (or given) a second admin's approval, with its change.
pub fn proposal_json(p: &pb::Proposal) -> serde_json::Value {
    let change = match &p.change {
        Some(pb::proposal::Change::CreateClient(c)) => {
            serde_json::json!({ "create_client": client_json(c) })
        }
        Some(pb::proposal::Change::PutPurpose(new)) => serde_json::json!({
            "put_purpose": purpose_json(new),
            "previous": p.previous_purpose.as_ref().map(purpose_json),
        }),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "id": p.id, "status": p.status, "summary": p.summary, "widens": p.widens,
        "proposed_by": p.proposed_by,
        "proposed_at_unix": p.proposed_at.as_ref().map(|t| t.seconds),
        "expires_at_unix": p.expires_at.as_ref().map(|t| t.seconds),
        "approved_by": (!p.approved_by.is_empty()).then_some(&p.approved_by),
        "approved_at_unix": p.approved_at.as_ref().map(|t| t.seconds),
        "change_sha256": p.change_sha256, "change": change,
    })
}

/// Signed checkpoints as JSON (`audit checkpoints`).
pub fn checkpoints_json(list: &[pb::SignedCheckpoint]) -> serde_json::Value {
    let list: Vec<_> = list
        .iter()
        .map(|c| {
            serde_json::json!({
                "size": c.size, "root": hex::encode(&c.root), "at_us": c.at_us,
                "signature": hex::encode(&c.signature),
            })
        })
        .collect();
    serde_json::Value::from(list)
}
