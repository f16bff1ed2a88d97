//! `vaultctl report processing`: the record of processing activities (GDPR art. 30),
//! admin and dpo roles.

use clap::Subcommand;
use vault_proto::v1 as pb;

use super::CtlError;
use crate::client::Session;

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// The record of processing activities (GDPR art. 30).
    Processing {
        /// markdown (the default) or json; --json means json.
        #[arg(long)]
        format: Option<String>,
    },
}

/// Runs a `report` command; `--json` means the json format.
pub(crate) async fn run(
    session: &Session,
    command: ReportCommand,
    json: bool,
) -> Result<String, CtlError> {
    let ReportCommand::Processing { format } = command;
    let format = match (format, json) {
        (None, false) => "markdown".to_owned(),
        (None, true) => "json".to_owned(),
        (Some(f), true) if !f.trim().eq_ignore_ascii_case("json") => {
            return Err(CtlError::FormatAndJson { format: f });
        }
        (Some(f), _) => f,
    };
    let r = session
        .admin()
        .processing_report(session.request(pb::ProcessingReportRequest { format })?)
        .await?
        .into_inner();
    Ok(String::from_utf8_lossy(&r.document).trim_end().to_owned())
}
