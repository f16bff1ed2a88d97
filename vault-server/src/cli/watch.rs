//! `vaultctl watch`: the change feed under `--purpose` (ids and kinds, never personal
//! data), one line per event as it arrives; without `--follow`, stops once caught up and
//! says on stderr where to resume.

use std::time::Duration;

use super::CtlError;
use crate::client::Session;

/// How long without an event means caught up.
const CAUGHT_UP_AFTER: Duration = Duration::from_secs(1);

/// Runs `watch` from `cursor` (default: the oldest retained change).
pub(crate) async fn run(
    session: &Session,
    cursor: Option<String>,
    follow: bool,
    json: bool,
) -> Result<String, CtlError> {
    let mut out = std::io::stdout();
    let seen = session
        .watch(
            cursor.unwrap_or_default(),
            follow,
            CAUGHT_UP_AFTER,
            json,
            &mut out,
        )
        .await?;
    if !follow {
        match &seen.cursor {
            Some(c) => eprintln!(
                "vaultctl: caught up after {} events; resume with --cursor {c}",
                seen.events
            ),
            None => eprintln!("vaultctl: no new events"),
        }
    }
    Ok(String::new())
}
