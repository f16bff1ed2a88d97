//! `vaultctl consent ...`: grant, withdraw, status and history of a person's consent,
//! under `--purpose`.

use clap::{Args as ClapArgs, Subcommand};
use vault_proto::v1 as pb;

use super::CtlError;
use crate::client::Session;
use crate::client::output::{consent_event_json, consent_status_json};

#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCommand {
    /// Record that the person consents.
    Grant(ConsentArgs),
    /// Record that the person withdraws consent.
    Withdraw(ConsentArgs),
    /// Current consent per purpose and channel.
    Status {
        /// Supporter id.
        id: String,
    },
    /// Every consent event, oldest first.
    History {
        /// Supporter id.
        id: String,
    },
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ConsentArgs {
    /// Supporter id.
    id: String,
    /// Purpose consented to (default: --purpose).
    #[arg(long = "for")]
    for_purpose: Option<String>,
    /// Channel: email, sms, phone, post, in-person (optional when the purpose has one).
    #[arg(long)]
    channel: Option<String>,
    /// Where it was collected: form, import, in-person, phone, email, other.
    #[arg(long, default_value = "other")]
    source: String,
    /// Version of the information notice the person saw.
    #[arg(long, default_value = "")]
    notice_version: String,
    /// The supporter's email the consent came through (grant: this or --contact-phone is
    /// required, the proof that the consent was collected from the person).
    #[arg(long)]
    contact_email: Option<String>,
    /// The supporter's phone the consent came through (see --contact-email).
    #[arg(long)]
    contact_phone: Option<String>,
}

/// Runs a `consent` command under the session's purpose.
pub(crate) async fn run(session: &Session, command: ConsentCommand) -> Result<String, CtlError> {
    let mut client = session.consent();
    let request = |a: ConsentArgs| pb::ConsentRequest {
        subject_id: a.id,
        purpose: a.for_purpose.unwrap_or_default(),
        channel: a.channel.unwrap_or_default(),
        source: a.source,
        notice_version: a.notice_version,
        contact_email: a.contact_email.unwrap_or_default(),
        contact_phone: a.contact_phone.unwrap_or_default(),
    };
    let json = match command {
        ConsentCommand::Grant(a) => consent_event_json(
            &client
                .grant(session.request(request(a))?)
                .await?
                .into_inner(),
        ),
        ConsentCommand::Withdraw(a) => consent_event_json(
            &client
                .withdraw(session.request(request(a))?)
                .await?
                .into_inner(),
        ),
        ConsentCommand::Status { id } => consent_status_json(
            &client
                .status(session.request(pb::ConsentStatusRequest { subject_id: id })?)
                .await?
                .into_inner(),
        ),
        ConsentCommand::History { id } => {
            let r = client
                .history(session.request(pb::ConsentHistoryRequest { subject_id: id })?)
                .await?
                .into_inner();
            let events: Vec<_> = r.events.iter().map(consent_event_json).collect();
            serde_json::json!({ "subject_id": r.subject_id, "events": events })
        }
    };
    Ok(json.to_string())
}
