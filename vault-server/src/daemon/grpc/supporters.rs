//! The `vault.v1.Supporters` service.
//!
//! Each call: take the authenticated caller, convert the request, call the vault, convert
//! the reply or map the error. The library decides and logs the access; nothing here
//! logs a field value.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vault_core::{FieldSet, LookupKey, Rpc, SearchQuery, UpsertOutcome, Vault, WatchSession};
use vault_proto::metadata::NEXT_PAGE_TOKEN;
use vault_proto::v1 as pb;
use vault_proto::v1::supporters_server::Supporters;

use super::{accepted, finish};
use crate::daemon::convert::{consent_change, supporter_from_pb, supporter_to_pb};
use crate::daemon::layers::auth::caller;

/// The Supporters service over a vault.
pub struct SupportersService {
    vault: Arc<Vault>,
    import_rows: u64,
}

impl SupportersService {
    /// The service for `vault`, with the default row cap of an Import stream.
    pub fn new(vault: Arc<Vault>) -> Self {
        Self {
            vault,
            import_rows: MAX_IMPORT_ROWS,
        }
    }

    /// The same service taking at most `rows` rows per Import stream (`[limits]
    /// import_rows_per_call`).
    pub fn with_import_rows(mut self, rows: u64) -> Self {
        self.import_rows = rows.max(1);
        self
    }
}

fn mask(name: &str, mask: Option<prost_types::FieldMask>) -> vault_core::Result<FieldSet> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    Ok(FieldSet::parse(name, paths.iter().map(String::as_str))?)
}

#[tonic::async_trait]
impl Supporters for SupportersService {
    async fn upsert(
        &self,
        request: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let converted = (|| -> vault_core::Result<_> {
                let supporter = req
                    .supporter
                    .ok_or_else(|| vault_core::InvalidInput::new("supporter", "is required"))?;
                let consents = req
                    .consents
                    .iter()
                    .map(consent_change)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((supporter_from_pb(supporter)?, consents))
            })();
            let (supporter, consents) =
                accepted(&self.vault, &caller, Rpc::SupportersUpsert, converted).await?;
            self.vault.upsert(&caller, &supporter, &consents).await
        }
        .await;
        let out = finish(&caller, "Supporters.Upsert", result)?;
        Ok(Response::new(pb::UpsertResponse {
            id: out.id,
            created: out.created,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let fields = accepted(
                &self.vault,
                &caller,
                Rpc::SupportersGet,
                mask("fields", req.fields),
            )
            .await?;
            self.vault.get(&caller, &req.id, fields).await
        }
        .await;
        finish(&caller, "Supporters.Get", result)
            .map(|s| Response::new(supporter_to_pb(s.supporter, s.fields)))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = match req.key {
                Some(pb::lookup_request::Key::Email(e)) => Ok(LookupKey::Email(e)),
                Some(pb::lookup_request::Key::Phone(p)) => Ok(LookupKey::Phone(p)),
                None => Err(vault_core::InvalidInput::new(
                    "key",
                    "set either email or phone",
                )),
            };
            let key = accepted(&self.vault, &caller, Rpc::SupportersLookup, key).await?;
            self.vault.lookup(&caller, &key).await
        }
        .await;
        finish(&caller, "Supporters.Lookup", result)
            .map(|s| Response::new(supporter_to_pb(s.supporter, s.fields)))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let converted = mask("update_mask", req.update_mask).and_then(|fields| {
                Ok((
                    fields,
                    supporter_from_pb(req.supporter.unwrap_or_default())?,
                ))
            });
            let (fields, patch) =
                accepted(&self.vault, &caller, Rpc::SupportersUpdate, converted).await?;
            self.vault
                .update(&caller, &req.id, &patch, fields, &req.request_ref)
                .await
        }
        .await;
        finish(&caller, "Supporters.Update", result)
            .map(|s| Response::new(supporter_to_pb(s.supporter, s.fields)))
    }

    async fn tag(
        &self,
        request: Request<pb::TagRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.tag(&caller, &req.id, &req.tags).await;
        finish(&caller, "Supporters.Tag", result)
            .map(|s| Response::new(supporter_to_pb(s.supporter, s.fields)))
    }

    async fn untag(
        &self,
        request: Request<pb::UntagRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.untag(&caller, &req.id, &req.tags).await;
        finish(&caller, "Supporters.Untag", result)
            .map(|s| Response::new(supporter_to_pb(s.supporter, s.fields)))
    }

    type SearchStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::Supporter, Status>>>;

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<Self::SearchStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let query = SearchQuery {
                tags_all: req.tags_all,
                tags_any: req.tags_any,
                postcodes: req.postcodes,
                consent_purpose: req.consent_purpose,
                consent_channel: req.consent_channel,
                fields: accepted(
                    &self.vault,
                    &caller,
                    Rpc::SupportersSearch,
                    mask("fields", req.fields),
                )
                .await?,
                page_size: req.page_size,
                page_token: req.page_token,
            };
            self.vault.search(&caller, &query).await
        }
        .await;
        let page = finish(&caller, "Supporters.Search", result)?;
        let fields = page.fields;
        let items: Vec<Result<pb::Supporter, Status>> = page
            .supporters
            .into_iter()
            .map(|s| Ok(supporter_to_pb(s, fields)))
            .collect();
        let mut response = Response::new(tokio_stream::iter(items));
        if let Some(token) = page.next_page_token {
            let value = token
                .parse()
                .map_err(|_| Status::internal("page token is not valid metadata"))?;
            response.metadata_mut().insert(NEXT_PAGE_TOKEN, value);
        }
        Ok(response)
    }

    async fn import(
        &self,
        request: Request<tonic::Streaming<pb::Supporter>>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let caller = Arc::new(caller(&request)?);
        // Role and purpose are the call's, decided (and a refusal logged) before any row.
        finish(
            &caller,
            "Supporters.Import",
            self.vault.import_open(&caller).await,
        )?;
        let mut rows = request.into_inner();
        let mut summary = pb::ImportResponse::default();
        let mut running: JoinSet<(u64, vault_core::Result<UpsertOutcome>)> = JoinSet::new();
        let mut row = 0u64;
        loop {
            // Rows run concurrently (distinct people rarely conflict; the same person twice
            // is serialized by the vault's compare-and-set), IMPORT_IN_FLIGHT at a time.
            while running.len() >= IMPORT_IN_FLIGHT {
                if let Some(done) = running.join_next().await {
                    tally(&mut summary, done)?;
                }
            }
            let Some(next) = rows.message().await? else {
                break;
            };
            if row == self.import_rows {
                // Finish what runs, then say how far the stream got: each row is its own
                // transaction, so the rows before stay imported.
                while let Some(done) = running.join_next().await {
                    tally(&mut summary, done)?;
                }
                let cap = self.import_rows;
                return Err(Status::resource_exhausted(format!(
                    "an Import stream takes at most {cap} rows ([limits] \
                     import_rows_per_call); rows 1 to {cap} were processed ({} created, {} \
                     updated, {} unchanged, {} rejected); send the rest in another call",
                    summary.created, summary.updated, summary.unchanged, summary.rejected_total
                )));
            }
            row += 1;
            let vault = Arc::clone(&self.vault);
            let caller = Arc::clone(&caller);
            running.spawn(async move {
                let result = async {
                    let converted = (|| -> vault_core::Result<_> {
                        let consents = next
                            .consents
                            .iter()
                            .map(consent_change)
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok((supporter_from_pb(next)?, consents))
                    })();
                    let (supporter, consents) =
                        accepted(&vault, &caller, Rpc::SupportersImport, converted).await?;
                    vault.import_row(&caller, &supporter, &consents).await
                }
                .await;
                (row, result)
            });
        }
        while let Some(done) = running.join_next().await {
            tally(&mut summary, done)?;
        }
        summary.rejected.sort_by_key(|r| r.row);
        summary.rejected.truncate(MAX_LISTED_REJECTS);
        tracing::debug!(
            request_id = %caller.request_id,
            client = %caller.client_id,
            rows = row,
            created = summary.created,
            updated = summary.updated,
            unchanged = summary.unchanged,
            rejected = summary.rejected_total,
            "import"
        );
        Ok(Response::new(summary))
    }

    type WatchStream = ReceiverStream<Result<pb::ChangeEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.watch(&caller, &req.cursor).await;
        let cursor = finish(&caller, "Supporters.Watch", result)?;
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let vault = Arc::clone(&self.vault);
        // The vault decides what the caller sees and re-checks its client at every step
        // (`Vault::watch_next`); a caught-up stream steps every WATCH_POLL, so a revocation
        // ends it within that.
        let mut session = WatchSession::new(caller, cursor);
        tokio::spawn(async move {
            loop {
                let batch = match vault.watch_next(&mut session, WATCH_BUFFER).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(crate::daemon::status::to_status(e))).await;
                        return;
                    }
                };
                for e in batch.events {
                    if tx.send(Ok(change_to_pb(e))).await.is_err() {
                        return;
                    }
                }
                if batch.caught_up {
                    // Caught up: poll (the feed is in the store, shared by replicas).
                    tokio::select! {
                        () = tokio::time::sleep(WATCH_POLL) => {}
                        () = tx.closed() => return,
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Rows of one Import stream processed at once.
const IMPORT_IN_FLIGHT: usize = 64;
/// Rows one Import stream may carry by default (vaultctl sends 10,000 per call by default):
/// a caller cannot keep one call, and its summary, growing without end.
pub const MAX_IMPORT_ROWS: u64 = 100_000;
/// Rejected rows an Import reply lists (the lowest row numbers); `rejected_total` counts all.
pub const MAX_LISTED_REJECTS: usize = 1_000;
/// Events read from the feed at a time (and buffered towards the client).
const WATCH_BUFFER: usize = 512;
/// How often a caught-up Watch looks for new events (and checks that its client holds).
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Adds one finished row to the summary. Storage failures end the import (the rows
/// reported so far are in; the client may resend the file, which is idempotent).
fn tally(
    summary: &mut pb::ImportResponse,
    done: Result<(u64, vault_core::Result<UpsertOutcome>), tokio::task::JoinError>,
) -> Result<(), Status> {
    let (row, result) = done.map_err(|e| Status::internal(format!("import row task: {e}")))?;
    match result {
        Ok(o) if o.created => summary.created += 1,
        Ok(o) if o.changed => summary.updated += 1,
        Ok(_) => summary.unchanged += 1,
        Err(e @ (vault_core::Error::Storage(_) | vault_core::Error::Contention(_))) => {
            return Err(crate::daemon::status::to_status(e));
        }
        Err(e) => {
            let field = match &e {
                vault_core::Error::InvalidInput(i) => i.field.clone(),
                _ => String::new(),
            };
            let status = crate::daemon::status::to_status(e);
            summary.rejected_total += 1;
            summary.rejected.push(pb::RejectedRow {
                row,
                reason: status.message().to_owned(),
                code: format!("{:?}", status.code()),
                field,
            });
            // Rows finish out of order: keep the lowest row numbers, in bounded memory.
            if summary.rejected.len() >= 2 * MAX_LISTED_REJECTS {
                summary.rejected.sort_by_key(|r| r.row);
                summary.rejected.truncate(MAX_LISTED_REJECTS);
            }
        }
    }
    Ok(())
}

fn change_to_pb(e: vault_core::changes::ChangeEvent) -> pb::ChangeEvent {
    pb::ChangeEvent {
        cursor: e.cursor.encode(),
        subject_id: e.change.subject_id,
        kind: e.change.kind.as_str().to_owned(),
        at: crate::daemon::convert::timestamp(e.at_us),
        purpose: e.change.purpose.unwrap_or_default(),
        channel: e
            .change
            .channel
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many rows are refused, the reply lists the lowest row numbers, at most
    /// MAX_LISTED_REJECTS, and counts them all; memory stays bounded meanwhile.
    #[test]
    fn rejected_rows_are_counted_all_and_listed_first_n() {
        let mut summary = pb::ImportResponse::default();
        let n = 5 * MAX_LISTED_REJECTS as u64;
        for row in (1..=n).rev() {
            let refused: vault_core::Result<UpsertOutcome> =
                Err(vault_core::InvalidInput::new("email", "bad").into());
            tally(&mut summary, Ok((row, refused))).unwrap();
            assert!(summary.rejected.len() < 2 * MAX_LISTED_REJECTS);
        }
        summary.rejected.sort_by_key(|r| r.row);
        summary.rejected.truncate(MAX_LISTED_REJECTS);
        assert_eq!(summary.rejected_total, n);
        let rows: Vec<u64> = summary.rejected.iter().map(|r| r.row).collect();
        assert_eq!(rows, (1..=MAX_LISTED_REJECTS as u64).collect::<Vec<_>>());
    }
}
