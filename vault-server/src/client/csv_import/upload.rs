//! The upload side of an import: the file is read on its own thread and streamed to
//! `Supporters.Import`, one call per batch of rows; the replies are added up into the
//! file's [`ImportSummary`], with the server's rejections put back on their file rows.

use std::io::Read;

use vault_proto::v1 as pb;

use super::{CsvRows, ImportSummary, Progress, Row};
use crate::client::{Error, Session};

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
    session: &Session,
    rows: CsvRows<R>,
    batch: usize,
    progress: Progress,
) -> Result<ImportSummary, Error> {
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
        .map_err(Error::ReaderStart)?;

    let mut client = session
        .supporters()
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let mut replies = ImportSummary::default();
    let mut first_call_row = None;
    while let Some(b) = batch_rx.recv().await {
        let first_call = *first_call_row.get_or_insert(b.first_row) == b.first_row;
        let stream = tokio_stream::wrappers::ReceiverStream::new(b.rows);
        let reply = client.import(session.request(stream)?).await;
        match reply {
            Ok(r) => {
                let file_rows = b.file_rows.await.unwrap_or_default();
                replies.add_response(&r.into_inner(), &file_rows);
            }
            Err(status) if first_call => {
                progress.finish();
                return Err(Error::ImportFailed(status));
            }
            Err(status) => {
                progress.finish();
                return Err(Error::ImportStopped {
                    first_row: b.first_row,
                    created: replies.created,
                    updated: replies.updated,
                    unchanged: replies.unchanged,
                    status,
                });
            }
        }
    }
    let read = read_rx.await.map_err(|_| Error::ReaderStopped)?;
    progress.finish();
    if let Some(reason) = read.fatal {
        return Err(Error::ImportFile {
            reason,
            rows: read.summary.rows,
        });
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
