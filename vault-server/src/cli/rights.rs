//! `vaultctl rights ...` (dpo role): export, erasure, restriction, objection, and the rights
//! request tickets. Calls on personal data declare `data-subject-rights` unless `--purpose`
//! says otherwise; the ticket calls declare none.

use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use vault_proto::metadata::DPO_PURPOSE;
use vault_proto::v1 as pb;

use super::CtlError;
use crate::client::Session;
use crate::client::output::{parse_date, receipt, rights_request, rights_requests, subject_state};

#[derive(Debug, Subcommand)]
pub(crate) enum RightsCommand {
    /// The person's whole file as JSON (art. 15 and 20), to stdout or --out.
    Export {
        /// Supporter id.
        #[arg(long, conflicts_with = "email", required_unless_present = "email")]
        id: Option<String>,
        /// Email (any casing).
        #[arg(long)]
        email: Option<String>,
        /// Write the document to this file (created with mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erase the person (art. 17) and print the receipt.
    Erase {
        /// Supporter id.
        #[arg(long)]
        id: String,
        /// The rights request this answers.
        #[arg(long)]
        request_ref: String,
        /// Also refuse any later import or upsert of the person's email and phone.
        #[arg(long)]
        suppress: bool,
    },
    /// Restrict processing (art. 18): data kept, every purpose but the DPO's refused.
    Restrict(RestrictArgs),
    /// Lift a restriction.
    Unrestrict(RestrictArgs),
    /// Record an objection (art. 21), per channel (no --channel: every channel).
    Object {
        /// Supporter id.
        #[arg(long)]
        id: String,
        /// Channel objected to: email, sms, in-person, post (repeatable).
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// The rights request this answers.
        #[arg(long)]
        request_ref: String,
    },
    /// Rights request tickets (art. 12: one month to answer).
    #[command(subcommand)]
    Requests(RequestsCommand),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct RestrictArgs {
    /// Supporter id.
    #[arg(long)]
    id: String,
    /// The rights request this answers.
    #[arg(long)]
    request_ref: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RequestsCommand {
    /// Open a ticket.
    Open {
        /// access, portability, rectification, erasure, restriction or objection.
        #[arg(long)]
        kind: String,
        /// When the request reached you, YYYY-MM-DD (default: today).
        #[arg(long)]
        received: Option<String>,
        /// Supporter id, when known.
        #[arg(long)]
        subject: Option<String>,
        /// Your own reference for the request: a number with an optional prefix word
        /// (REQ-2026-017, "letter 2026-01-31"), never a name: it stays after erasure.
        #[arg(long)]
        reference: String,
    },
    /// List open tickets.
    List {
        /// Only those past their due date.
        #[arg(long)]
        overdue: bool,
        /// Closed ones too.
        #[arg(long)]
        all: bool,
    },
    /// Close a ticket.
    Close {
        /// Ticket id.
        #[arg(long)]
        id: String,
        /// How it was answered, comma-separated codes: answered, exported, erased,
        /// rectified, restricted, unrestricted, objection-recorded, consent-withdrawn,
        /// no-data-held, extended, refused-unfounded, refused-excessive,
        /// refused-identity-unverified, withdrawn-by-person.
        #[arg(long)]
        action: String,
    },
}

/// Runs a `rights` command: personal data under `purpose` (default: the DPO's), tickets
/// under none.
pub(crate) async fn run(
    session: &Session,
    purpose: Option<&str>,
    command: RightsCommand,
    json: bool,
) -> Result<String, CtlError> {
    let personal = session.with_purpose(Some(purpose.unwrap_or(DPO_PURPOSE)));
    let mut client = personal.rights();
    match command {
        RightsCommand::Export { id, email, out } => {
            let subject = match (id, email) {
                (Some(id), _) => pb::export_request::Subject::SubjectId(id),
                (None, Some(e)) => pb::export_request::Subject::Email(e),
                (None, None) => return Err(CtlError::Missing("--id or --email")),
            };
            let r = client
                .export(personal.request(pb::ExportRequest {
                    subject: Some(subject),
                    format: "json".into(),
                })?)
                .await?
                .into_inner();
            match out {
                None => String::from_utf8(r.document)
                    .map(|d| d.trim_end().to_owned())
                    .map_err(|_| CtlError::ExportNotUtf8),
                Some(path) => {
                    write_private(&path, &r.document)?;
                    Ok(if json {
                        serde_json::json!({
                            "out": path.display().to_string(), "bytes": r.document.len(),
                            "subject_id": r.subject_id,
                        })
                        .to_string()
                    } else {
                        format!(
                            "wrote the file of {} to {} ({} bytes)",
                            r.subject_id,
                            path.display(),
                            r.document.len()
                        )
                    })
                }
            }
        }
        RightsCommand::Erase {
            id,
            request_ref,
            suppress,
        } => {
            let r = client
                .erase(personal.request(pb::EraseRequest {
                    subject_id: id,
                    request_ref,
                    suppress,
                })?)
                .await?
                .into_inner();
            Ok(receipt(&r, json))
        }
        RightsCommand::Restrict(a) => restriction(&personal, a, true, json).await,
        RightsCommand::Unrestrict(a) => restriction(&personal, a, false, json).await,
        RightsCommand::Object {
            id,
            channels,
            request_ref,
        } => {
            let r = client
                .object(personal.request(pb::ObjectRequest {
                    subject_id: id,
                    channels,
                    request_ref,
                })?)
                .await?
                .into_inner();
            Ok(subject_state(&r, json))
        }
        RightsCommand::Requests(c) => requests(session, c, json).await,
    }
}

/// Places (`restrict`) or lifts a restriction of processing: the same request either way.
async fn restriction(
    session: &Session,
    a: RestrictArgs,
    restrict: bool,
    json: bool,
) -> Result<String, CtlError> {
    let mut client = session.rights();
    let request = session.request(pb::RestrictRequest {
        subject_id: a.id,
        request_ref: a.request_ref,
    })?;
    let reply = if restrict {
        client.restrict(request).await
    } else {
        client.unrestrict(request).await
    };
    Ok(subject_state(&reply?.into_inner(), json))
}

/// `rights requests ...`: the tickets, under no purpose.
async fn requests(
    session: &Session,
    command: RequestsCommand,
    json: bool,
) -> Result<String, CtlError> {
    let tickets = session.with_purpose(None);
    let mut client = tickets.rights();
    match command {
        RequestsCommand::Open {
            kind,
            received,
            subject,
            reference,
        } => {
            let received_at = received.as_deref().map(parse_date).transpose()?;
            let r = client
                .open_request(tickets.request(pb::OpenRequestRequest {
                    kind,
                    received_at,
                    subject_id: subject.unwrap_or_default(),
                    reference,
                })?)
                .await?
                .into_inner();
            Ok(rights_request(&r, json))
        }
        RequestsCommand::List { overdue, all } => {
            let r = client
                .list_requests(tickets.request(pb::ListRequestsRequest {
                    overdue_only: overdue,
                    include_closed: all,
                    as_of: None,
                })?)
                .await?
                .into_inner();
            Ok(rights_requests(&r.requests, json))
        }
        RequestsCommand::Close { id, action } => {
            let r = client
                .close_request(tickets.request(pb::CloseRequestRequest { id, action })?)
                .await?
                .into_inner();
            Ok(rights_request(&r, json))
        }
    }
}

/// Writes personal data to a file readable by its owner only: a new file of mode 0600
/// replaces any file there (so an existing file's wider mode does not carry over), whole
/// and durably ([`vault_core::fsutil::replace_private`]).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CtlError> {
    Ok(vault_core::fsutil::replace_private(path, bytes)?)
}
