//! The change feed (Supporters.Watch) and bulk import (Supporters.Import), the two
//! streaming calls of campaign tools.

use crate::access::{Caller, Rpc};
use crate::changes::{self, ChangeEvent, Cursor};
use crate::consent::ledger::ConsentChange;
use crate::error::Result;
use crate::storage::Table;
use crate::supporter::{Supporter, UpsertOutcome};

use super::Vault;

impl Vault {
    /// Decides and logs a caller's subscription to the change feed (one entry per call,
    /// whatever it then reads); parses its cursor.
    pub async fn watch(&self, caller: &Caller, cursor: &str) -> Result<Option<Cursor>> {
        let mut log = self.record(caller, Rpc::SupportersWatch);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::SupportersWatch,
                &registry,
                None,
                None,
            )?;
            match cursor.trim() {
                "" => Ok(None),
                c => Cursor::parse(c).map(Some),
            }
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Up to `limit` changes after `after` (from the oldest without), oldest first.
    pub async fn changes_after(
        &self,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<ChangeEvent>> {
        let start = after.map_or_else(Vec::new, Cursor::after_key);
        let rows = self
            .store
            .scan_range(Table::Changes, &start, None, limit)
            .await?;
        rows.iter()
            .map(|(k, v)| {
                changes::decode(k, v).ok_or(crate::error::Error::Integrity(
                    crate::error::IntegrityObject::Metadata("change feed"),
                ))
            })
            .collect()
    }

    /// One row of a bulk import: an upsert (deduplicated by email and phone), logged as
    /// `Supporters.Import`. Consents already active are not recorded again, so re-importing
    /// a file changes nothing.
    pub async fn import_row(
        &self,
        caller: &Caller,
        input: &Supporter,
        consents: &[ConsentChange],
    ) -> Result<UpsertOutcome> {
        let mut log = self.record(caller, Rpc::SupportersImport);
        let result = self
            .upsert_inner(&mut log, caller, Rpc::SupportersImport, input, consents)
            .await;
        log.finish(&self.audit, result).await
    }
}
