//! The offline audit-log file (format version 1) and its verifier.
//!
//! The file is UTF-8 text, one JSON value per line, each line ending in `\n`:
//!
//! 1. a header: `{"format":"vault-audit-log","version":1,"start":{..},"end":{..}}`, where
//!    `end` is the signed checkpoint the file runs up to and `start` is either empty (the log
//!    starts at entry 0) or a signed anchor checkpoint with the Merkle frontier at that size
//!    (after retention pruned older entries);
//! 2. the entries, in sequence order, each line being the entry's stored bytes verbatim;
//! 3. interleaved with them, `{"checkpoint":{..}}` lines, each right after the entry that
//!    brings the log to the checkpoint's size;
//! 4. only when witnesses cosigned the end checkpoint, after the last entry,
//!    `{"witnessed":{"size":..,"note":".."}}` lines: the end checkpoint as a C2SP signed note
//!    (see [`super::witness`]) with the log's signature and the witnesses' cosignatures. A file
//!    without cosignatures has no such line and is byte for byte what earlier builds wrote.
//!
//! [`verify`] needs only the file and the Ed25519 public key. It reports the first problem
//! with its line and sequence number: an edited entry (located by the hash chain and the
//! signed roots), missing or reordered entries, a truncated file, a bad signature.
//! [`verify_witnessed`] also requires the signed end to carry valid cosignatures from at
//! least k of the witnesses given. See `docs/audit-log-format.md`.
//!
//! Verification streams: [`StreamVerifier`] takes the file in pieces of any size and holds
//! one line, one not-yet-judged item and the Merkle frontier, never the whole file, so an
//! auditor's machine ([`verify_reader`], what `vaultctl audit verify` runs) and the daemon
//! (`AuditLog::verify`, fed by the paged export) verify a log of any length in bounded
//! memory. [`verify`] and its variants over a byte slice are the same verifier.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, SignedCheckpoint, SignedCut};
use super::entry::{AuditEntry, entry_hash, zero_hash};
use super::merkle::{Frontier, Hash};
use super::witness::{Cosigner, NoteProblem, open_note};

/// The `format` of the header.
pub const FORMAT: &str = "vault-audit-log";
/// The file format version written by this build. Version 2 adds the retention cut to the
/// start (`start.cut`); version 1 files, which have none, verify as they always did.
pub const VERSION: u32 = 2;
/// The oldest version the verifier reads.
const OLDEST_VERSION: u32 = 1;

/// Where an exported log starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The signed checkpoint at the first exported entry's sequence number; absent when the
    /// file starts at entry 0.
    pub checkpoint: Option<SignedCheckpoint>,
    /// The Merkle frontier at that size (hex of `Frontier::to_bytes`), checked against the
    /// checkpoint's signed root.
    pub frontier: Option<String>,
    /// The log's signed statement of its retention cut, when retention has removed a prefix
    /// (version 2). The file starts at or after the cut; at the cut exactly for a file that
    /// holds the whole retained log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<SignedCut>,
}

/// What the verifier requires beyond a file that is internally sound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirements {
    /// The file holds the whole retained log: it starts at entry 0, or exactly at the
    /// log's signed retention cut. Refuses a file whose prefix was dropped (or a range
    /// export).
    pub whole: bool,
    /// A checkpoint the auditor kept (its signature already verified): the file's log must
    /// extend it, its Merkle root at the checkpoint's size being the checkpoint's root. A
    /// log rewritten, or restored from an older copy, fails even when signed with the same
    /// key. The file must reach that size and start no later than it.
    pub since: Option<Checkpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    start: Start,
    end: SignedCheckpoint,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: SignedCheckpoint,
}

const CHECKPOINT_PREFIX: &[u8] = b"{\"checkpoint\":";

/// The end checkpoint as a C2SP note with cosignatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witnessed {
    /// Tree size of the checkpoint (the file's signed end).
    pub size: u64,
    /// The signed note: checkpoint body, blank line, the log's signature line, then one
    /// cosignature line per witness.
    pub note: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessedLine {
    witnessed: Witnessed,
}

const WITNESSED_PREFIX: &[u8] = b"{\"witnessed\":";

/// A witnessed line.
pub fn witnessed_line(witnessed: &Witnessed) -> Vec<u8> {
    let mut line = serde_json::to_vec(&WitnessedLine {
        witnessed: witnessed.clone(),
    })
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// The signed end named by a file's header, without verifying anything.
pub fn signed_end(file: &[u8]) -> Option<SignedCheckpoint> {
    let first = file.split(|b| *b == b'\n').next()?;
    serde_json::from_slice::<Header>(first).ok().map(|h| h.end)
}

/// The header line.
pub fn header_line(start: &Start, end: &SignedCheckpoint) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        start: start.clone(),
        end: end.clone(),
    })
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// An entry line (the stored bytes).
pub fn entry_line(stored: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(stored.len() + 1);
    line.extend_from_slice(stored);
    line.push(b'\n');
    line
}

/// A checkpoint line.
pub fn checkpoint_line(cp: &SignedCheckpoint) -> Vec<u8> {
    let mut line = serde_json::to_vec(&CheckpointLine {
        checkpoint: cp.clone(),
    })
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// What is wrong with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A line is not what the format allows (broken JSON, unknown header).
    Malformed,
    /// A checkpoint's signature does not verify with the public key.
    BadSignature,
    /// An entry's content differs from what was logged and signed.
    Edited,
    /// Entries are missing.
    Missing,
    /// Entries are out of order.
    Reordered,
    /// The file ends before its signed end.
    Truncated,
    /// The signed end lacks the cosignatures required.
    Unwitnessed,
    /// The log does not extend the checkpoint the auditor kept ([`Requirements::since`]).
    Diverged,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Malformed => "malformed",
            Problem::BadSignature => "bad signature",
            Problem::Edited => "edited",
            Problem::Missing => "missing",
            Problem::Reordered => "reordered",
            Problem::Truncated => "truncated",
            Problem::Unwitnessed => "not witnessed",
            Problem::Diverged => "does not extend the kept checkpoint",
        })
    }
}

/// The first problem found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// 1-based line of the file.
    pub line: usize,
    /// The entry concerned, when there is one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
    /// Details, in words.
    pub detail: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(
                f,
                "line {}, entry {}: {}: {}",
                self.line, seq, self.problem, self.detail
            ),
            None => write!(f, "line {}: {}: {}", self.line, self.problem, self.detail),
        }
    }
}

impl std::error::Error for VerifyError {}

/// A file that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Sequence number of the first entry in the file.
    pub first_seq: u64,
    /// Number of entries in the file.
    pub entries: u64,
    /// Checkpoints verified, the end one included.
    pub checkpoints: usize,
    /// The signed end: size and root an auditor can compare with later checkpoints.
    pub end: Checkpoint,
    /// The log's signed retention cut, if the file carries one (its signature verified).
    pub cut: Option<SignedCut>,
    /// The given witnesses whose cosignature of the signed end verified (key names,
    /// sorted); empty when no witness was given.
    pub witnessed_by: Vec<String>,
}

enum Item {
    Entry {
        line: usize,
        entry: Box<AuditEntry>,
        hash: Hash,
    },
    Checkpoint {
        line: usize,
        cp: SignedCheckpoint,
    },
}

fn err(line: usize, seq: Option<u64>, problem: Problem, detail: impl Into<String>) -> VerifyError {
    VerifyError {
        line,
        seq,
        problem,
        detail: detail.into(),
    }
}

/// When `frontier` has the kept checkpoint's size, its root must be the kept one.
fn check_since(
    kept: &Checkpoint,
    frontier: &Frontier,
    line: usize,
    seq: Option<u64>,
) -> Result<(), VerifyError> {
    if frontier.size() != kept.size || frontier.root() == kept.root {
        return Ok(());
    }
    Err(err(
        line,
        seq,
        Problem::Diverged,
        format!(
            "the log's root at size {} differs from the kept checkpoint's: the log was rewritten \
             (or restored from another copy) since that checkpoint was signed",
            kept.size
        ),
    ))
}

fn parse_hash(s: &str) -> Option<Hash> {
    super::checkpoint::hash_from_hex(s)
}

/// Verifies an exported log with the log's Ed25519 public key (32 raw bytes).
pub fn verify(file: &[u8], public_key: &[u8]) -> Result<Verified, VerifyError> {
    verify_full(file, public_key, Requirements::default(), &[], 0)
}

/// [`verify`], and the file meets `required` (see [`Requirements`]).
pub fn verify_with(
    file: &[u8],
    public_key: &[u8],
    required: Requirements,
) -> Result<Verified, VerifyError> {
    verify_full(file, public_key, required, &[], 0)
}

/// As [`verify`], and requires the file's signed end to carry valid cosignatures from at
/// least `required` distinct witnesses among `witnesses`. The end is the checkpoint that
/// covers every entry of the file, so all of them are then vouched for by witnesses that
/// saw this log grow consistently. Witnessed lines are checked whatever `required` is: each
/// must be the signed end, signed by the log under the origin it names; a cosignature by one
/// of `witnesses` that does not verify is an error (it was altered), those of other keys
/// are ignored.
pub fn verify_witnessed(
    file: &[u8],
    public_key: &[u8],
    witnesses: &[Cosigner],
    required: usize,
) -> Result<Verified, VerifyError> {
    verify_full(
        file,
        public_key,
        Requirements::default(),
        witnesses,
        required,
    )
}

/// Every check at once: [`verify_with`]'s `requirements` and [`verify_witnessed`]'s
/// `required` cosignatures among `witnesses`.
pub fn verify_full(
    file: &[u8],
    public_key: &[u8],
    requirements: Requirements,
    witnesses: &[Cosigner],
    required: usize,
) -> Result<Verified, VerifyError> {
    let mut verifier = StreamVerifier::new(public_key, requirements, witnesses, required);
    verifier.push(file)?;
    verifier.finish()
}

/// [`verify_full`] of a file read from `reader` a piece at a time, in memory bounded by the
/// longest line (plus the witnessed lines), whatever the file's length.
///
/// # Errors
///
/// The outer error is a failed read; the inner result is the verification's.
pub fn verify_reader(
    mut reader: impl std::io::Read,
    public_key: &[u8],
    requirements: Requirements,
    witnesses: &[Cosigner],
    required: usize,
) -> std::io::Result<Result<Verified, VerifyError>> {
    let mut verifier = StreamVerifier::new(public_key, requirements, witnesses, required);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Err(e) = verifier.push(&buf[..n]) {
            return Ok(Err(e));
        }
    }
    Ok(verifier.finish())
}

/// Bytes read at a time by [`verify_reader`].
const READ_BUFFER: usize = 64 * 1024;
/// The longest line the verifier takes: far above any entry the vault writes, and a bound
/// on what a hostile file without newlines makes it hold.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// The verifier of [`verify_full`], fed the file in pieces of any size ([`StreamVerifier::push`])
/// and then told it ended ([`StreamVerifier::finish`]). It holds the line being read, the
/// one entry or checkpoint it has not judged yet (an edit is blamed on the entry whose hash
/// the *next* link contradicts, so each item is judged once its successor is known), the
/// Merkle frontier (O(log n) hashes) and the witnessed lines: memory independent of the
/// number of entries. It finds what [`verify_full`] always found, at the same line; of a
/// file with several problems it reports the first in file order.
pub struct StreamVerifier<'w> {
    public_key: Vec<u8>,
    requirements: Requirements,
    witnesses: &'w [Cosigner],
    required: usize,
    /// The bytes of a line whose newline has not arrived yet.
    tail: Vec<u8>,
    /// Complete lines seen.
    lines: usize,
    /// Line 1 was complete and empty: the file `"\n"` is empty, anything longer has a
    /// malformed header.
    first_empty: bool,
    body: Option<Body>,
    /// The first problem found; every later call returns it.
    failed: Option<VerifyError>,
}

/// What the verifier knows once the header is read.
struct Body {
    end: Checkpoint,
    cut: Option<SignedCut>,
    frontier: Frontier,
    prev: Hash,
    first_seq: u64,
    entries_seen: u64,
    pending: Option<Item>,
    last_entry: Option<(usize, u64)>,
    checkpoints: usize,
    witnessed: Vec<(usize, Witnessed)>,
    /// The first entry line claiming the end's size (where added entries are reported).
    extra_line: Option<usize>,
}

impl<'w> StreamVerifier<'w> {
    /// A verifier with the log's Ed25519 public key (32 raw bytes) and what it requires
    /// beyond soundness (as [`verify_full`]).
    pub fn new(
        public_key: &[u8],
        requirements: Requirements,
        witnesses: &'w [Cosigner],
        required: usize,
    ) -> Self {
        Self {
            public_key: public_key.to_vec(),
            requirements,
            witnesses,
            required,
            tail: Vec::new(),
            lines: 0,
            first_empty: false,
            body: None,
            failed: None,
        }
    }

    /// Takes the next bytes of the file.
    ///
    /// # Errors
    ///
    /// The first problem found so far (then again on every later call).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), VerifyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while let Some(at) = bytes.iter().position(|b| *b == b'\n') {
            let (line, rest) = bytes.split_at(at);
            bytes = &rest[1..];
            let result = if self.tail.is_empty() {
                self.line(line, false)
            } else {
                let mut whole = std::mem::take(&mut self.tail);
                whole.extend_from_slice(line);
                self.line(&whole, false)
            };
            self.fail_on(result)?;
        }
        if self.tail.len() + bytes.len() > MAX_LINE {
            let e = err(
                self.lines + 1,
                None,
                Problem::Malformed,
                format!("line {} is longer than {MAX_LINE} bytes", self.lines + 1),
            );
            return self.fail_on(Err(e));
        }
        self.tail.extend_from_slice(bytes);
        Ok(())
    }

    fn fail_on(&mut self, result: Result<(), VerifyError>) -> Result<(), VerifyError> {
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// The file ended: judges what is left and the file as a whole.
    ///
    /// # Errors
    ///
    /// The first problem of the file.
    pub fn finish(mut self) -> Result<Verified, VerifyError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let ends_clean = self.tail.is_empty();
        if !ends_clean {
            let tail = std::mem::take(&mut self.tail);
            self.line(&tail, true)?;
        }
        let last_line = self.lines;
        if last_line == 0 || (self.first_empty && last_line == 1) {
            return Err(err(1, None, Problem::Truncated, "the file is empty"));
        }
        let Some(mut body) = self.body.take() else {
            // Only a header line can leave no body, and it is judged as it arrives.
            return Err(err(1, None, Problem::Malformed, "the header is missing"));
        };
        if let Some(item) = body.pending.take() {
            self.judge(&mut body, &item, None)?;
        }
        if !ends_clean {
            return Err(err(
                last_line,
                None,
                Problem::Truncated,
                "the file does not end with a newline: its last line was cut",
            ));
        }
        let after = last_line + 1;
        let end = body.end;
        let frontier = &body.frontier;
        if frontier.size() < end.size {
            return Err(err(
                after,
                Some(frontier.size()),
                Problem::Truncated,
                format!(
                    "the file ends after {} entries but its signed end is at size {}",
                    frontier.size(),
                    end.size
                ),
            ));
        }
        if frontier.size() > end.size {
            return Err(err(
                body.extra_line.unwrap_or(after),
                Some(end.size),
                Problem::Edited,
                "entries were added after the signed end",
            ));
        }
        check_against(
            &end,
            frontier,
            body.prev,
            body.last_entry,
            after,
            "signed end",
        )?;
        let witnessed_by =
            check_witnessed(&body.witnessed, &end, &self.public_key, self.witnesses)?;
        let required = self.required;
        if witnessed_by.len() < required {
            let witnesses = self.witnesses;
            let given = if witnesses.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} of the {} given: {})",
                    witnessed_by.len(),
                    witnesses.len(),
                    if witnessed_by.is_empty() {
                        "none".to_owned()
                    } else {
                        witnessed_by.join(", ")
                    }
                )
            };
            return Err(err(
                after,
                None,
                Problem::Unwitnessed,
                format!(
                    "the signed end (size {}) carries valid cosignatures from {} witnesses{given}, \
                     {required} required; export the log up to a cosigned checkpoint (vaultctl \
                     audit export --min-cosignatures {required}), or wait until the witnesses have \
                     cosigned",
                    end.size,
                    witnessed_by.len()
                ),
            ));
        }
        Ok(Verified {
            first_seq: body.first_seq,
            entries: frontier.size() - body.first_seq,
            checkpoints: body.checkpoints,
            end,
            cut: body.cut,
            witnessed_by,
        })
    }

    /// One line (without its newline); `partial`: the file's last line, cut before its
    /// newline.
    fn line(&mut self, bytes: &[u8], partial: bool) -> Result<(), VerifyError> {
        self.lines += 1;
        let line = self.lines;
        if line == 1 {
            if bytes.is_empty() && !partial {
                // Judged by what follows: `"\n"` alone is an empty file.
                self.first_empty = true;
                return Ok(());
            }
            self.body = Some(self.header(bytes, partial)?);
            return Ok(());
        }
        if self.first_empty {
            self.first_empty = false;
            self.body = Some(self.header(b"", false)?);
        }
        let Some(mut body) = self.body.take() else {
            return Err(err(1, None, Problem::Malformed, "the header is missing"));
        };
        let result = self.body_line(&mut body, bytes, line, partial);
        self.body = Some(body);
        result
    }

    fn header(&self, first: &[u8], partial: bool) -> Result<Body, VerifyError> {
        let public_key = self.public_key.as_slice();
        let header: Header = match serde_json::from_slice(first) {
            Ok(h) => h,
            Err(_) if partial => {
                return Err(err(
                    1,
                    None,
                    Problem::Truncated,
                    "the file ends inside its header",
                ));
            }
            Err(e) => {
                return Err(err(
                    1,
                    None,
                    Problem::Malformed,
                    format!("the header is not valid: {e}"),
                ));
            }
        };
        if header.format != FORMAT || !(OLDEST_VERSION..=VERSION).contains(&header.version) {
            return Err(err(
                1,
                None,
                Problem::Malformed,
                format!(
                    "not a {FORMAT} file of version {OLDEST_VERSION} to {VERSION} (format {:?}, \
                     version {})",
                    header.format, header.version
                ),
            ));
        }
        if header.version < 2 && header.start.cut.is_some() {
            return Err(err(
                1,
                None,
                Problem::Malformed,
                "a version 1 file has no retention cut",
            ));
        }
        let end = header.end.verify(public_key).ok_or_else(|| {
            err(
                1,
                None,
                Problem::BadSignature,
                "the signature of the end checkpoint does not verify",
            )
        })?;
        let (frontier, prev) = match (&header.start.checkpoint, &header.start.frontier) {
            (None, None) => (Frontier::new(), zero_hash()),
            (Some(cp), Some(fr)) => {
                let anchor = cp.verify(public_key).ok_or_else(|| {
                    err(
                        1,
                        None,
                        Problem::BadSignature,
                        "the signature of the start anchor does not verify",
                    )
                })?;
                let frontier = super::checkpoint::lower_hex(fr)
                    .and_then(|b| Frontier::from_bytes(&b).ok())
                    .ok_or_else(|| {
                        err(
                            1,
                            None,
                            Problem::Malformed,
                            "the start frontier is not valid",
                        )
                    })?;
                if frontier.size() != anchor.size || frontier.root() != anchor.root {
                    return Err(err(
                        1,
                        None,
                        Problem::Edited,
                        "the start frontier does not match the anchor's signed root",
                    ));
                }
                (frontier, anchor.last_leaf)
            }
            _ => {
                return Err(err(
                    1,
                    None,
                    Problem::Malformed,
                    "the start needs both a checkpoint and a frontier, or neither",
                ));
            }
        };
        let first_seq = frontier.size();
        check_cut(&header.start, first_seq, public_key, self.requirements)?;
        if let Some(kept) = self.requirements.since {
            if kept.size < first_seq {
                return Err(err(
                    1,
                    None,
                    Problem::Diverged,
                    format!(
                        "the file starts at entry {first_seq}, after the kept checkpoint (size {}): \
                         export from an earlier entry (audit export --from-seq {})",
                        kept.size,
                        kept.size.saturating_sub(1)
                    ),
                ));
            }
            if kept.size > end.size {
                return Err(err(
                    1,
                    None,
                    Problem::Diverged,
                    format!(
                        "the file's log ends at size {}, before the kept checkpoint (size {}): the \
                         log was cut or replaced, or the file is older than the checkpoint",
                        end.size, kept.size
                    ),
                ));
            }
            check_since(&kept, &frontier, 1, None)?;
        }
        Ok(Body {
            end,
            cut: header.start.cut,
            frontier,
            prev,
            first_seq,
            entries_seen: 0,
            pending: None,
            last_entry: None,
            checkpoints: 1,
            witnessed: Vec::new(),
            extra_line: None,
        })
    }

    fn body_line(
        &self,
        body: &mut Body,
        bytes: &[u8],
        line: usize,
        partial: bool,
    ) -> Result<(), VerifyError> {
        if bytes.starts_with(WITNESSED_PREFIX) {
            match serde_json::from_slice::<WitnessedLine>(bytes) {
                Ok(w) => body.witnessed.push((line, w.witnessed)),
                Err(_) if partial => {
                    return Err(err(
                        line,
                        None,
                        Problem::Truncated,
                        "the file ends inside a witnessed line",
                    ));
                }
                Err(_) => {
                    return Err(err(
                        line,
                        None,
                        Problem::Malformed,
                        "a witnessed line is not valid",
                    ));
                }
            }
            return Ok(());
        }
        if let Some((wline, _)) = body.witnessed.first() {
            return Err(err(
                line,
                None,
                Problem::Malformed,
                format!(
                    "witnessed lines come last, but line {line} follows the one on line {wline}"
                ),
            ));
        }
        let item = if bytes.starts_with(CHECKPOINT_PREFIX) {
            match serde_json::from_slice::<CheckpointLine>(bytes) {
                Ok(c) => Item::Checkpoint {
                    line,
                    cp: c.checkpoint,
                },
                Err(_) if partial => {
                    return Err(err(
                        line,
                        None,
                        Problem::Truncated,
                        "the file ends inside a checkpoint",
                    ));
                }
                Err(_) => {
                    return Err(err(
                        line,
                        None,
                        Problem::Malformed,
                        "a checkpoint line is not valid",
                    ));
                }
            }
        } else {
            let expected_seq = body.first_seq + body.entries_seen;
            body.entries_seen += 1;
            match AuditEntry::decode(bytes) {
                Some(entry) => {
                    if entry.seq == body.end.size && body.extra_line.is_none() {
                        body.extra_line = Some(line);
                    }
                    Item::Entry {
                        line,
                        hash: entry_hash(bytes),
                        entry: Box::new(entry),
                    }
                }
                None if partial => {
                    return Err(err(
                        line,
                        Some(expected_seq),
                        Problem::Truncated,
                        "the file ends inside an entry",
                    ));
                }
                None => {
                    return Err(err(
                        line,
                        Some(expected_seq),
                        Problem::Edited,
                        "the entry is not a valid entry any more: it was edited or corrupted",
                    ));
                }
            }
        };
        if let Some(before) = body.pending.take() {
            self.judge(body, &before, Some(&item))?;
        }
        body.pending = Some(item);
        Ok(())
    }

    /// Judges `item` knowing the one after it (`None`: it is the last before the end).
    fn judge(&self, body: &mut Body, item: &Item, next: Option<&Item>) -> Result<(), VerifyError> {
        // The link that vouches for the item's hash: the next entry's `prev`, the next
        // checkpoint's last leaf, or the end's.
        let next_link = match next {
            Some(Item::Entry { entry, .. }) => parse_hash(&entry.prev),
            Some(Item::Checkpoint { cp, .. }) => parse_hash(&cp.last_leaf),
            None => Some(body.end.last_leaf),
        };
        match item {
            Item::Entry {
                line, entry, hash, ..
            } => {
                let line = *line;
                let expected = body.frontier.size();
                if entry.seq != expected {
                    if entry.seq < expected {
                        return Err(err(
                            line,
                            Some(entry.seq),
                            Problem::Reordered,
                            format!(
                                "entry {} comes after entry {}",
                                entry.seq,
                                expected.saturating_sub(1)
                            ),
                        ));
                    }
                    let swapped = matches!(next, Some(Item::Entry { entry: next, .. }) if next.seq == expected);
                    return Err(if swapped {
                        err(
                            line,
                            Some(expected),
                            Problem::Reordered,
                            format!("entry {} comes before entry {expected}", entry.seq),
                        )
                    } else {
                        err(
                            line,
                            Some(expected),
                            Problem::Missing,
                            format!("entries {expected} to {} are missing", entry.seq - 1),
                        )
                    });
                }
                if parse_hash(&entry.prev) != Some(body.prev) {
                    let intact = next_link == Some(*hash);
                    return Err(match (intact, body.last_entry) {
                        (true, Some((prev_line, prev_seq))) => err(
                            prev_line,
                            Some(prev_seq),
                            Problem::Edited,
                            format!(
                                "entry {prev_seq} was edited: its hash no longer matches the link recorded in entry {}",
                                entry.seq
                            ),
                        ),
                        _ => err(
                            line,
                            Some(entry.seq),
                            Problem::Edited,
                            "entry was edited: its link to the previous entry does not match",
                        ),
                    });
                }
                body.prev = *hash;
                body.frontier.push(*hash).map_err(|_| {
                    err(
                        line,
                        Some(entry.seq),
                        Problem::Malformed,
                        "the log is too large",
                    )
                })?;
                if let Some(kept) = &self.requirements.since {
                    check_since(kept, &body.frontier, line, Some(entry.seq))?;
                }
                body.last_entry = Some((line, entry.seq));
            }
            Item::Checkpoint { line, cp } => {
                let line = *line;
                let cp = cp.verify(&self.public_key).ok_or_else(|| {
                    err(
                        line,
                        None,
                        Problem::BadSignature,
                        "the checkpoint's signature does not verify",
                    )
                })?;
                check_against(
                    &cp,
                    &body.frontier,
                    body.prev,
                    body.last_entry,
                    line,
                    "checkpoint",
                )?;
                body.checkpoints += 1;
            }
        }
        Ok(())
    }
}

/// The retention cut's checks: signed; the file starts at or after it, on the same root when
/// exactly at it; made after the anchor it names, with a retention; and, when the whole
/// retained log is required, the file starts at entry 0 or at the cut.
fn check_cut(
    start: &Start,
    first_seq: u64,
    public_key: &[u8],
    required: Requirements,
) -> Result<(), VerifyError> {
    let bad = |detail: &str| Err(err(1, None, Problem::Edited, detail));
    if let Some(cut) = &start.cut {
        let Some(root) = cut.verify(public_key) else {
            return Err(err(
                1,
                None,
                Problem::BadSignature,
                "the signature of the retention cut does not verify",
            ));
        };
        if cut.size == 0 || cut.retention_us <= 0 {
            return bad("the retention cut removes nothing or names no retention");
        }
        if first_seq < cut.size {
            return bad("the file starts before the log's retention cut: entries the cut removed");
        }
        if first_seq == cut.size {
            let anchor = start
                .checkpoint
                .as_ref()
                .and_then(SignedCheckpoint::checkpoint);
            match anchor {
                Some(a) if a.root == root && a.at_us <= cut.cut_at_us => {}
                _ => return bad("the start anchor is not the checkpoint the retention cut names"),
            }
        }
    }
    if required.whole && first_seq > 0 && start.cut.as_ref().map(|c| c.size) != Some(first_seq) {
        return Err(err(
            1,
            Some(first_seq),
            Problem::Missing,
            format!(
                "the file starts at entry {first_seq}, which is neither the beginning of the log \
                 nor its signed retention cut: entries before it are missing (or this is the \
                 export of a range)"
            ),
        ));
    }
    Ok(())
}

/// Checks the witnessed lines against the verified signed `end`; returns the names of the
/// `witnesses` whose cosignature of it verified, each once.
fn check_witnessed(
    witnessed: &[(usize, Witnessed)],
    end: &Checkpoint,
    public_key: &[u8],
    witnesses: &[Cosigner],
) -> Result<Vec<String>, VerifyError> {
    let mut by: Vec<(String, u32)> = Vec::new();
    if witnessed.is_empty() {
        return Ok(Vec::new());
    }
    let key: [u8; 32] = public_key.try_into().map_err(|_| {
        err(
            1,
            None,
            Problem::BadSignature,
            "the public key is not 32 bytes",
        )
    })?;
    for (line, w) in witnessed {
        let line = *line;
        if w.size != end.size {
            return Err(err(
                line,
                None,
                Problem::Malformed,
                format!(
                    "a witnessed line for size {}, but the file's signed end is at size {}",
                    w.size, end.size
                ),
            ));
        }
        let opened = open_note(w.note.as_bytes(), &key, witnesses).map_err(|e| match e {
            NoteProblem::Malformed(_) | NoteProblem::NotCheckpoint => err(
                line,
                None,
                Problem::Malformed,
                format!("witnessed line: {e}"),
            ),
            NoteProblem::BadLogSignature | NoteProblem::BadCosignature(_) => err(
                line,
                None,
                Problem::BadSignature,
                format!("witnessed line: {e}"),
            ),
        })?;
        if opened.size != end.size || opened.root != end.root {
            return Err(err(
                line,
                None,
                Problem::Edited,
                format!(
                    "the witnessed note is for size {}, root {}, not the signed end",
                    opened.size,
                    hex::encode(opened.root)
                ),
            ));
        }
        for c in opened.cosigned {
            if !by.contains(&(c.name.clone(), c.key_id)) {
                by.push((c.name, c.key_id));
            }
        }
    }
    let mut names: Vec<String> = by.into_iter().map(|(name, _)| name).collect();
    names.sort();
    Ok(names)
}

fn check_against(
    cp: &Checkpoint,
    frontier: &Frontier,
    prev: Hash,
    last_entry: Option<(usize, u64)>,
    line: usize,
    what: &str,
) -> Result<(), VerifyError> {
    if cp.size > frontier.size() {
        return Err(err(
            line,
            Some(frontier.size()),
            Problem::Missing,
            format!(
                "the {what} covers {} entries but only {} precede it",
                cp.size,
                frontier.size()
            ),
        ));
    }
    if cp.size < frontier.size() {
        return Err(err(
            line,
            Some(cp.size),
            Problem::Reordered,
            format!(
                "the {what} for size {} comes after entry {}",
                cp.size,
                frontier.size() - 1
            ),
        ));
    }
    if cp.last_leaf != prev {
        let (l, seq) = last_entry.unwrap_or((line, cp.size.saturating_sub(1)));
        return Err(err(
            l,
            Some(seq),
            Problem::Edited,
            format!("entry {seq} was edited: it no longer matches the {what}"),
        ));
    }
    if cp.root != frontier.root() {
        return Err(err(
            line,
            None,
            Problem::Edited,
            format!("the entries before this {what} do not match its signed root"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::SigningKey;
    use crate::audit::entry::ENTRY_VERSION;
    use crate::crypto::{Key256, RootKey};
    use proptest::prelude::*;

    struct Log {
        file: Vec<u8>,
        public: [u8; 32],
        /// (line, seq) of every entry.
        entry_lines: Vec<(usize, u64)>,
        key: SigningKey,
        end: SignedCheckpoint,
    }

    fn build(n: u64, every: u64, key_byte: u8) -> Log {
        let root = RootKey::from_key(Key256::from_bytes(&[key_byte; 32]));
        let (key, _) = SigningKey::generate(&root).unwrap();
        let mut frontier = Frontier::new();
        let mut prev = zero_hash();
        let mut body = Vec::new();
        let mut line = 1usize;
        let mut entry_lines = Vec::new();
        for seq in 0..n {
            let e = AuditEntry {
                v: ENTRY_VERSION,
                seq,
                prev: hex::encode(prev),
                at_us: 1_700_000_000_000_000 + seq as i64,
                request_id: format!("req-{seq}"),
                client: "c1".into(),
                role: "campaign-tool".into(),
                rpc: "Supporters.Get".into(),
                purpose: Some("newsletter".into()),
                subjects: vec![format!("subject-{}", seq % 7)],
                fields: vec!["email".into()],
                outcome: if seq % 5 == 0 { "denied" } else { "allowed" }.into(),
                reason: (seq % 5 == 0).then(|| "no-consent".into()),
                request_ref: None,
            };
            let bytes = e.encode().unwrap();
            prev = entry_hash(&bytes);
            frontier.push(prev).unwrap();
            body.extend(entry_line(&bytes));
            line += 1;
            entry_lines.push((line, seq));
            if (seq + 1) % every == 0 && seq + 1 < n {
                let cp = key.sign(&Checkpoint {
                    size: seq + 1,
                    root: frontier.root(),
                    last_leaf: prev,
                    at_us: 5,
                });
                body.extend(checkpoint_line(&cp));
                line += 1;
            }
        }
        let end = key.sign(&Checkpoint {
            size: n,
            root: frontier.root(),
            last_leaf: prev,
            at_us: 6,
        });
        let mut file = header_line(&Start::default(), &end);
        file.extend(body);
        Log {
            file,
            public: key.public_key(),
            entry_lines,
            key,
            end,
        }
    }

    fn witness(name: &str) -> (ring::signature::Ed25519KeyPair, Cosigner) {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        (pair, Cosigner::new(name, public).unwrap())
    }

    /// `log`'s end as a note under `origin`, cosigned by `by`.
    fn witnessed(
        log: &Log,
        origin: &str,
        by: &[&(ring::signature::Ed25519KeyPair, Cosigner)],
    ) -> Vec<u8> {
        let cp = log.end.checkpoint().unwrap();
        let mut note =
            crate::audit::witness::sign_note(&log.key, origin, cp.size, &cp.root).unwrap();
        let body = crate::audit::witness::checkpoint_body(origin, cp.size, &cp.root);
        for (pair, c) in by {
            let ts = 1_700_000_000u64;
            let sig = pair.sign(&Cosigner::message(ts, body.as_bytes()));
            let mut bytes = ts.to_be_bytes().to_vec();
            bytes.extend_from_slice(sig.as_ref());
            note.push_str(&crate::audit::witness::signature_line(
                c.name(),
                c.key_id(),
                &bytes,
            ));
        }
        witnessed_line(&Witnessed {
            size: cp.size,
            note,
        })
    }

    #[test]
    fn the_signed_end_must_carry_the_required_cosignatures() {
        let log = build(9, 4, 7);
        let (w1, w2, w3) = (
            witness("w1.example"),
            witness("w2.example"),
            witness("w3.example"),
        );
        let given = [w1.1.clone(), w2.1.clone()];
        // No witnessed line: verifies as before, fails once cosignatures are required.
        let v = verify_witnessed(&log.file, &log.public, &given, 0).unwrap();
        assert!(v.witnessed_by.is_empty());
        let e = verify_witnessed(&log.file, &log.public, &given, 1).unwrap_err();
        assert_eq!(e.problem, Problem::Unwitnessed, "{e}");
        // Cosigned by w1 and w3 (w3 not given: ignored).
        let mut file = log.file.clone();
        file.extend(witnessed(&log, "o.example", &[&w1, &w3]));
        assert_eq!(verify(&file, &log.public).unwrap().entries, 9);
        let v = verify_witnessed(&file, &log.public, &given, 1).unwrap();
        assert_eq!(v.witnessed_by, vec!["w1.example".to_owned()]);
        let e = verify_witnessed(&file, &log.public, &given, 2).unwrap_err();
        assert_eq!(e.problem, Problem::Unwitnessed, "{e}");
        // A second line under another origin adds w2.
        file.extend(witnessed(&log, "other.example", &[&w2, &w1]));
        let v = verify_witnessed(&file, &log.public, &given, 2).unwrap();
        assert_eq!(v.witnessed_by.len(), 2);
        // An altered cosignature of a given witness is an error, not ignored.
        let text = String::from_utf8(file.clone()).unwrap();
        let last_line = text.lines().last().unwrap().to_owned();
        let sig_at = last_line.rfind("w1.example ").unwrap() + "w1.example ".len() + 20;
        let mut altered_line = last_line.clone().into_bytes();
        altered_line[sig_at] = if altered_line[sig_at] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let altered = text.replace(&last_line, &String::from_utf8(altered_line).unwrap());
        let e = verify_witnessed(altered.as_bytes(), &log.public, &given, 1).unwrap_err();
        assert_eq!(e.problem, Problem::BadSignature, "{e}");
        // A note for another root, or by another log key, is refused.
        let other = build(9, 4, 8);
        let mut file = log.file.clone();
        file.extend(witnessed(&other, "o.example", &[&w1]));
        let e = verify_witnessed(&file, &log.public, &given, 1).unwrap_err();
        assert_eq!(e.problem, Problem::BadSignature, "{e}");
        // Witnessed lines come last.
        let mut ls = lines(&log.file);
        ls.insert(
            3,
            witnessed(&log, "o.example", &[&w1])
                .trim_ascii_end()
                .to_vec(),
        );
        let e = verify_witnessed(&join(&ls), &log.public, &given, 0).unwrap_err();
        assert_eq!(e.problem, Problem::Malformed, "{e}");
    }

    fn lines(file: &[u8]) -> Vec<Vec<u8>> {
        let body = &file[..file.len() - 1];
        body.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
    }

    fn join(lines: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn untouched_logs_verify() {
        for (n, every) in [(0, 3), (1, 3), (10, 3), (10, 5), (25, 1)] {
            let log = build(n, every, 1);
            let v = verify(&log.file, &log.public).unwrap();
            assert_eq!(v.entries, n);
            assert_eq!(v.end.size, n);
        }
    }

    #[test]
    fn a_kept_checkpoint_must_be_extended() {
        let log = build(10, 3, 1);
        let since = |kept: Checkpoint| Requirements {
            since: Some(kept),
            ..Requirements::default()
        };
        // The same log, six entries long: its end is a checkpoint the longer log extends.
        let prefix = build(6, 3, 1);
        let kept = prefix.end.verify(&prefix.public).unwrap();
        let v = verify_full(&log.file, &log.public, since(kept), &[], 0).unwrap();
        assert_eq!(v.end.size, 10);
        // Kept at size 0 and at the end itself: extended too.
        let none = build(0, 3, 1);
        let empty = none.end.verify(&none.public).unwrap();
        verify_full(&log.file, &log.public, since(empty), &[], 0).unwrap();
        let end = log.end.verify(&log.public).unwrap();
        verify_full(&log.file, &log.public, since(end), &[], 0).unwrap();
        // Another root at size 6: the log was rewritten; blamed on entry 5's line.
        let rewritten = Checkpoint {
            root: [9; 32],
            ..kept
        };
        let e = verify_full(&log.file, &log.public, since(rewritten), &[], 0).unwrap_err();
        assert_eq!(e.problem, Problem::Diverged, "{e}");
        assert_eq!((e.line, e.seq), (log.entry_lines[5].0, Some(5)), "{e}");
        assert!(e.to_string().contains("root at size 6 differs"), "{e}");
        // A kept checkpoint beyond the file's end: the log was cut (or the file is older).
        let longer = build(11, 3, 1);
        let beyond = longer.end.verify(&longer.public).unwrap();
        let e = verify_full(&log.file, &log.public, since(beyond), &[], 0).unwrap_err();
        assert_eq!((e.line, e.problem), (1, Problem::Diverged), "{e}");
        assert!(
            e.to_string()
                .contains("before the kept checkpoint (size 11)"),
            "{e}"
        );
    }

    #[test]
    fn wrong_key_is_a_bad_signature() {
        let log = build(5, 2, 1);
        let other = build(1, 1, 2);
        let e = verify(&log.file, &other.public).unwrap_err();
        assert_eq!((e.line, e.problem), (1, Problem::BadSignature));
    }

    #[test]
    fn deleted_swapped_and_truncated_are_named() {
        let log = build(12, 4, 1);
        let ls = lines(&log.file);
        let (line3, _) = log.entry_lines[3];
        // Deleted entry 3.
        let mut del = ls.clone();
        del.remove(line3 - 1);
        let e = verify(&join(&del), &log.public).unwrap_err();
        assert_eq!((e.problem, e.seq), (Problem::Missing, Some(3)), "{e}");
        // Entries 5 and 6 swapped.
        let (l5, _) = log.entry_lines[5];
        let (l6, _) = log.entry_lines[6];
        let mut sw = ls.clone();
        sw.swap(l5 - 1, l6 - 1);
        let e = verify(&join(&sw), &log.public).unwrap_err();
        assert_eq!(
            (e.problem, e.seq, e.line),
            (Problem::Reordered, Some(5), l5),
            "{e}"
        );
        // Last two lines dropped.
        let cut = join(&ls[..ls.len() - 2]);
        let e = verify(&cut, &log.public).unwrap_err();
        assert_eq!(e.problem, Problem::Truncated, "{e}");
        // Edited subject id in entry 7 (still valid JSON).
        let (l7, _) = log.entry_lines[7];
        let mut ed = ls.clone();
        let text = String::from_utf8(ed[l7 - 1].clone())
            .unwrap()
            .replace("subject-0", "subject-9");
        ed[l7 - 1] = text.into_bytes();
        let e = verify(&join(&ed), &log.public).unwrap_err();
        assert_eq!(
            (e.problem, e.seq, e.line),
            (Problem::Edited, Some(7), l7),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_single_byte_change_is_found_on_its_line(
            n in 1u64..30, every in 1u64..8, pos in any::<proptest::sample::Index>(), flip in 1u8..=255
        ) {
            let log = build(n, every, 3);
            let mut file = log.file.clone();
            let i = pos.index(file.len());
            file[i] ^= flip;
            let e = verify(&file, &log.public);
            prop_assert!(e.is_err(), "a change at byte {i} went unnoticed");
            let e = e.unwrap_err();
            // The line the changed byte is on (a changed newline belongs to its line).
            let line = log.file[..i].iter().filter(|b| **b == b'\n').count() + 1;
            let total_lines = log.file.iter().filter(|b| **b == b'\n').count();
            if line <= total_lines {
                prop_assert_eq!(e.line, line, "{} (changed byte {} on line {})", e, i, line);
            }
        }

        #[test]
        fn any_deleted_entry_is_missing_at_its_seq(n in 2u64..30, every in 1u64..8, k in any::<proptest::sample::Index>()) {
            let log = build(n, every, 4);
            let (line, seq) = log.entry_lines[k.index(log.entry_lines.len())];
            let mut ls = lines(&log.file);
            ls.remove(line - 1);
            let e = verify(&join(&ls), &log.public).unwrap_err();
            prop_assert_eq!(e.seq, Some(seq), "{}", e);
            prop_assert!(matches!(e.problem, Problem::Missing | Problem::Truncated | Problem::Edited), "{}", e);
        }

        #[test]
        fn any_swapped_pair_is_reordered_at_its_place(n in 2u64..30, k in any::<proptest::sample::Index>()) {
            // Without interleaved checkpoints, so neighbours are entries.
            let log = build(n, 1000, 5);
            let a = k.index(log.entry_lines.len() - 1);
            let (la, seq_a) = log.entry_lines[a];
            let (lb, _) = log.entry_lines[a + 1];
            let mut ls = lines(&log.file);
            ls.swap(la - 1, lb - 1);
            let e = verify(&join(&ls), &log.public).unwrap_err();
            prop_assert_eq!((e.problem, e.seq, e.line), (Problem::Reordered, Some(seq_a), la), "{}", e);
        }

        #[test]
        fn any_truncation_is_caught(n in 1u64..30, every in 1u64..8, cut in any::<proptest::sample::Index>()) {
            let log = build(n, every, 6);
            let keep = cut.index(log.file.len());
            let e = verify(&log.file[..keep], &log.public).unwrap_err();
            prop_assert_eq!(e.problem, Problem::Truncated, "{}", e);
        }
    }

    /// The file pushed in pieces of `piece` bytes.
    fn verify_in_pieces(file: &[u8], public: &[u8], piece: usize) -> Result<Verified, VerifyError> {
        let mut v = StreamVerifier::new(public, Requirements::default(), &[], 0);
        for chunk in file.chunks(piece.max(1)) {
            v.push(chunk)?;
        }
        v.finish()
    }

    /// A reader that hands out one byte per read.
    struct Trickle<'a>(&'a [u8]);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn a_file_read_a_byte_at_a_time_verifies_as_a_whole() {
        let log = build(23, 4, 5);
        let whole = verify(&log.file, &log.public).unwrap();
        let read = verify_reader(
            Trickle(&log.file),
            &log.public,
            Requirements::default(),
            &[],
            0,
        )
        .unwrap()
        .unwrap();
        assert_eq!(read, whole);
        for piece in [1, 2, 7, 100, log.file.len()] {
            assert_eq!(
                verify_in_pieces(&log.file, &log.public, piece).unwrap(),
                whole
            );
        }
    }

    #[test]
    fn empty_and_newline_only_files_are_empty() {
        let log = build(1, 1, 5);
        for file in [&b""[..], b"\n"] {
            let e = verify(file, &log.public).unwrap_err();
            assert_eq!((e.line, e.problem), (1, Problem::Truncated), "{e}");
        }
        let e = verify(b"\n\n", &log.public).unwrap_err();
        assert_eq!((e.line, e.problem), (1, Problem::Malformed), "{e}");
        // A header alone, cut before its newline.
        let header = &log.file[..log.file.iter().position(|b| *b == b'\n').unwrap()];
        let e = verify(&header[..header.len() - 1], &log.public).unwrap_err();
        assert_eq!((e.line, e.problem), (1, Problem::Truncated), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the file and however it is cut into pieces, the streaming verifier's
        /// answer is the one for the whole file.
        #[test]
        fn pieces_give_the_answer_of_the_whole(
            n in 1u64..25,
            every in 1u64..6,
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
            piece in 1usize..200,
        ) {
            let log = build(n, every, 6);
            let mut file = log.file.clone();
            for (at, byte, how) in edits {
                if file.is_empty() {
                    break;
                }
                let i = at.index(file.len());
                match how {
                    0 => file[i] = byte,
                    1 => { file.remove(i); }
                    _ => file.insert(i, byte),
                }
            }
            let whole = verify(&file, &log.public);
            prop_assert_eq!(verify_in_pieces(&file, &log.public, piece), whole.clone());
            let read = verify_reader(&file[..], &log.public, Requirements::default(), &[], 0).unwrap();
            prop_assert_eq!(read, whole);
        }
    }
}
