//! The access log's high-water mark, kept outside the store, beside the root key file.
//!
//! Whoever can write the store can delete rows. Tags ([`crate::crypto::row_mac`]) stop them
//! from forging or moving a row, but not from deleting the newest checkpoints, the whole
//! log, the signing key, or the marker that says rows are authenticated, and then letting
//! the daemon start afresh. The mark records, where the store cannot reach it:
//!
//! - the size and root of the newest checkpoint this host saw durable,
//! - the SHA-256 fingerprint of the log's signing key,
//! - that the store's rows are authenticated.
//!
//! At start the daemon refuses a store whose log is behind the mark, whose root at the
//! mark's size differs, whose signing key changed or went missing, or whose authentication
//! marker is gone. The file is JSON with an HMAC under the root-derived row key (so only
//! the holder of the root key can write one), written with mode 0600 through a temporary
//! file, fsync and rename. A mark only ever moves forward in one process; two processes
//! sharing a key file may write an older mark over a newer one, which only weakens the
//! check to that older size.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::crypto::RootKey;
use crate::crypto::row_mac::RowKey;
use crate::error::{Error, IntegrityObject, Result};
use crate::fsutil;

/// Domain label of the mark's tag (a "table" no store has).
const TAG_LABEL: &str = "outside/audit-mark";
const MARK_VERSION: u32 = 1;
/// A mark file is small; anything longer is not one.
const MAX_LEN: u64 = 4096;

/// What the mark says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Format version.
    pub v: u32,
    /// The store's rows carry tags: a store without the authentication marker is refused.
    pub rows_authenticated: bool,
    /// SHA-256 (hex) of the log's Ed25519 public key.
    pub signing_key_sha256: Option<String>,
    /// Size of the newest checkpoint seen durable (0: none yet).
    pub size: u64,
    /// Its Merkle root (hex); empty when `size` is 0.
    pub root: String,
    /// When the mark was written, µs since the Unix epoch.
    pub at_us: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredMark {
    mark: Mark,
    tag: String,
}

/// The mark file of one root key file.
pub struct MarkFile {
    path: PathBuf,
    key: RowKey,
    /// The size last written by this process, so marks only move forward here.
    written: Mutex<Option<Mark>>,
}

impl std::fmt::Debug for MarkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where the mark of `root_key_path` lives: beside it, `<name>.audit-mark`.
pub fn path_for(root_key_path: &Path) -> PathBuf {
    let mut name = root_key_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "root.key".into());
    name.push(".audit-mark");
    root_key_path.with_file_name(name)
}

fn bad(path: &Path, what: &str) -> Error {
    Error::Integrity(IntegrityObject::AccessLog(format!(
        "the high-water mark {} {what}",
        path.display()
    )))
}

/// A failed write of the mark file, worded as [`io`] words it.
fn io_write(e: &fsutil::WriteError) -> Error {
    io(&e.path, e.step.verb(), &e.source)
}

fn io(path: &Path, what: &str, e: &std::io::Error) -> Error {
    // The mark lives beside the root key, usually on the data directory's file system: a
    // full or read-only disk there is the store's unavailability too. Other errors
    // (permissions, a missing directory) are the configuration's.
    let detail = format!("{what} {}: {e}", path.display());
    Error::from(match crate::storage::Unavailable::of_io(e) {
        crate::storage::Unavailable::Io => crate::storage::StoreError::Engine(detail),
        cause => crate::storage::StoreError::Unavailable { cause, detail },
    })
}

impl MarkFile {
    /// The mark file beside `root_key_path`, authenticated under `root`.
    pub fn beside(root_key_path: &Path, root: &RootKey) -> Self {
        Self {
            path: path_for(root_key_path),
            key: RowKey::derive(root),
            written: Mutex::new(None),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mark, if the file exists. A file that does not verify is an error: it was not
    /// written by the holder of this root key.
    pub fn read(&self) -> Result<Option<Mark>> {
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.path, "cannot inspect", &e)),
        };
        if !meta.is_file() || meta.len() > MAX_LEN {
            return Err(bad(
                &self.path,
                "is not a mark file (not a small regular file)",
            ));
        }
        let raw = fs::read(&self.path).map_err(|e| io(&self.path, "cannot read", &e))?;
        let stored: StoredMark =
            serde_json::from_slice(&raw).map_err(|_| bad(&self.path, "cannot be parsed"))?;
        let body = serde_json::to_vec(&stored.mark).map_err(|e| Error::Codec(e.to_string()))?;
        let tag = hex::decode(&stored.tag).map_err(|_| bad(&self.path, "has a malformed tag"))?;
        let mut sealed = body;
        sealed.extend_from_slice(&tag);
        if self.key.open(TAG_LABEL, b"", &sealed).is_none() || stored.mark.v != MARK_VERSION {
            return Err(bad(
                &self.path,
                "does not verify under this root key (it was altered, or written for another key)",
            ));
        }
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = Some(stored.mark.clone());
        Ok(Some(stored.mark))
    }

    /// Writes `mark` durably and atomically (mode 0600).
    pub fn write(&self, mark: &Mark) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        self.write_locked(&mut written, mark.clone())
    }

    fn write_locked(&self, written: &mut Option<Mark>, mut mark: Mark) -> Result<()> {
        mark.v = MARK_VERSION;
        let body = serde_json::to_vec(&mark).map_err(|e| Error::Codec(e.to_string()))?;
        let tag = hex::encode(self.key.tag(TAG_LABEL, b"", &body));
        let json = serde_json::to_vec_pretty(&StoredMark {
            mark: mark.clone(),
            tag,
        })
        .map_err(|e| Error::Codec(e.to_string()))?;
        fsutil::replace_private(&self.path, &json).map_err(|e| io_write(&e))?;
        *written = Some(mark);
        Ok(())
    }

    /// Moves the mark to a newer durable checkpoint; a size not beyond the last one written
    /// by this process is ignored. Holds the file's lock while writing, so concurrent calls
    /// leave the newest.
    pub fn advance(&self, size: u64, root: &[u8; 32], at_us: i64) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let current = written.clone().unwrap_or_default();
        if size <= current.size {
            return Ok(());
        }
        self.write_locked(
            &mut written,
            Mark {
                size,
                root: hex::encode(root),
                at_us,
                ..current
            },
        )
    }

    /// Removes the mark: the next open trusts the store as it is (a restore puts an older
    /// log in place on purpose). Returns whether a mark was there.
    pub fn forget(&self) -> Result<bool> {
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = None;
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&self.path, "cannot remove", &e)),
        }
    }
}

/// SHA-256 (hex) of a public key: what the mark file records of the signing key.
pub fn key_fingerprint(public_key: &[u8; 32]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, public_key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crypto::Key256;

    fn root(b: u8) -> RootKey {
        RootKey::from_key(Key256::from_bytes(&[b; 32]))
    }

    #[test]
    fn written_marks_read_back_and_move_forward_only() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("root.key");
        let file = MarkFile::beside(&key_path, &root(1));
        assert_eq!(file.path(), dir.path().join("root.key.audit-mark"));
        assert_eq!(file.read().unwrap(), None);
        file.write(&Mark {
            rows_authenticated: true,
            signing_key_sha256: Some("ab".into()),
            ..Mark::default()
        })
        .unwrap();
        file.advance(10, &[1; 32], 5).unwrap();
        file.advance(7, &[2; 32], 6).unwrap();
        let again = MarkFile::beside(&key_path, &root(1))
            .read()
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.size, again.root.as_str()),
            (10, &*hex::encode([1u8; 32]))
        );
        assert!(again.rows_authenticated);
        assert_eq!(again.signing_key_sha256.as_deref(), Some("ab"));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(file.forget().unwrap());
        assert_eq!(file.read().unwrap(), None);
    }

    #[test]
    fn an_edited_or_foreign_mark_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("root.key");
        let file = MarkFile::beside(&key_path, &root(1));
        file.advance(100, &[1; 32], 5).unwrap();
        assert!(MarkFile::beside(&key_path, &root(2)).read().is_err());
        let text = fs::read_to_string(file.path()).unwrap();
        fs::write(file.path(), text.replace("100", "1")).unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
    }
}
