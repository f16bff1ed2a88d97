//! `vaultctl purpose ...`: the purpose registry (admin): list, and put from a JSON file.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use vault_proto::v1 as pb;

use super::CtlError;
use crate::client::Session;
use crate::client::output::purpose_json;

#[derive(Debug, Subcommand)]
pub(crate) enum PurposeCommand {
    /// List the purpose registry.
    List,
    /// Create or replace a purpose from a JSON file with the keys `list` prints (`-` for
    /// standard input). A change that widens access is refused: use `admin propose-purpose`.
    Put {
        /// The purpose as JSON.
        #[arg(long)]
        file: PathBuf,
    },
}

/// A purpose from a JSON file (or `-`, standard input) with the keys `purpose list` prints.
pub(crate) fn read_purpose(file: &Path) -> Result<pb::Purpose, CtlError> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(CtlError::Stdin)?;
        s
    } else {
        std::fs::read_to_string(file).map_err(CtlError::file("read", file))?
    };
    let p: vault_core::Purpose = serde_json::from_str(&text)
        .map_err(|e| CtlError::bad_file(file, format!("not a purpose: {e}")))?;
    Ok(crate::daemon::convert::purpose_to_pb(p))
}

/// Runs a `purpose` command.
pub(crate) async fn run(session: &Session, command: PurposeCommand) -> Result<String, CtlError> {
    let mut admin = session.admin();
    match command {
        PurposeCommand::Put { file } => {
            let purpose = read_purpose(&file)?;
            let p = admin
                .put_purpose(session.request(pb::PutPurposeRequest {
                    purpose: Some(purpose),
                })?)
                .await?
                .into_inner();
            Ok(purpose_json(&p).to_string())
        }
        PurposeCommand::List => {
            let r = admin
                .list_purposes(session.request(pb::ListPurposesRequest {})?)
                .await?
                .into_inner();
            let list: Vec<_> = r.purposes.iter().map(purpose_json).collect();
            Ok(serde_json::Value::from(list).to_string())
        }
    }
}
