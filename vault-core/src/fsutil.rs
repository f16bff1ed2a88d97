//! The one writer of private files: the root key, the access log's high-water mark, the
//! admin token, backup manifests and erasure journals, exports of personal data.
//!
//! Why one: each of these files must be readable by its owner only from the moment it
//! exists (mode 0600 at creation, never a window with the umask's mode), and must be on
//! disk when the call that wrote it returns, directory entry included (a file fsynced into
//! a directory that was not can vanish in a crash). Written out by hand in six places, the
//! steps drifted (a missing directory fsync, a temporary file left behind on failure);
//! here they are written once.
//!
//! Two ways to write:
//! - [`create_private`] makes a new file and never replaces one (the root key: a key that
//!   exists must never be overwritten);
//! - [`replace_private`] replaces the file atomically: readers see the old contents or the
//!   new, never a part (a temporary file beside it, renamed over it).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The step of a write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating the file (or the temporary file).
    Create,
    /// Writing or fsyncing its contents.
    Write,
    /// Renaming the temporary file over the target.
    Rename,
    /// Fsyncing the directory that holds it.
    SyncDirectory,
}

impl Step {
    /// What failed, as a message starts: "cannot create", "cannot write", ...
    pub fn verb(self) -> &'static str {
        match self {
            Step::Create => "cannot create",
            Step::Write => "cannot write",
            Step::Rename => "cannot rename into",
            Step::SyncDirectory => "cannot sync",
        }
    }
}

/// A failed write: which step, on which path, and the system's error.
#[derive(Debug)]
pub struct WriteError {
    /// The step that failed.
    pub step: Step,
    /// The path it failed on (the temporary file for [`Step::Create`] and [`Step::Write`]
    /// of [`replace_private`], the directory for [`Step::SyncDirectory`]).
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.step.verb(),
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn failed(step: Step, path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `path`, which must not exist, with mode 0600, writes `contents`, and makes file
/// and directory entry durable. Never replaces a file: an existing `path` (or a symlink
/// there) fails at [`Step::Create`]. A failure after the creation leaves the file.
pub fn create_private(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    write_new(path, contents)?;
    sync_directory_of(path)
}

/// Replaces `path` with a file of mode 0600 holding `contents`, atomically and durably:
/// written to a new temporary file beside it, fsynced, renamed over `path`, and the
/// directory fsynced. On failure `path` is as it was and the temporary file is removed.
pub fn replace_private(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let mut replacement = Replacement::begin(path)?;
    replacement.write_all(contents)?;
    replacement.finish()
}

/// A replacement of a private file written as it comes (an export streamed from the
/// daemon, never held whole): the bytes go to a new 0600 temporary file beside the target,
/// and [`Replacement::finish`] fsyncs it, renames it over the target and fsyncs the
/// directory. Dropped unfinished (a failed stream, an error on the way), it removes the
/// temporary file: the target is the old file or the whole new one, never a cut one.
pub struct Replacement {
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
}

impl Replacement {
    /// Creates the temporary file for a replacement of `path`.
    pub fn begin(path: &Path) -> Result<Self, WriteError> {
        let tmp = temporary(path);
        let file = open_new(&tmp)?;
        Ok(Self {
            file: Some(io::BufWriter::new(file)),
            tmp,
            target: path.to_path_buf(),
        })
    }

    /// Appends `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        match self.file.as_mut() {
            Some(file) => file
                .write_all(bytes)
                .map_err(failed(Step::Write, &self.tmp)),
            None => Ok(()),
        }
    }

    /// Makes the new contents durable and puts them in place of the target.
    pub fn finish(mut self) -> Result<(), WriteError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let file = file.into_inner().map_err(|e| WriteError {
            step: Step::Write,
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(failed(Step::Write, &self.tmp))?;
        drop(file);
        fs::rename(&self.tmp, &self.target).map_err(failed(Step::Rename, &self.target))?;
        // Renamed: nothing is left for Drop to remove.
        self.tmp = PathBuf::new();
        sync_directory_of(&self.target)
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Makes `dir`'s entries durable (after files were created or renamed in it).
pub fn sync_directory(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed(Step::SyncDirectory, dir))
}

/// A new file at `path` (mode 0600, `create_new`) holding `contents`, fsynced.
fn write_new(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let mut file = open_new(path)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(failed(Step::Write, path))
}

/// Creates `path`, which must not exist, with mode 0600 from the start.
fn open_new(path: &Path) -> Result<File, WriteError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed(Step::Create, path))
}

fn sync_directory_of(path: &Path) -> Result<(), WriteError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_directory(dir),
        // A bare file name: it lives in the working directory.
        Some(_) => sync_directory(Path::new(".")),
        None => Ok(()),
    }
}

/// A temporary name beside `path`, unique to this process and call: writers in several
/// processes (replicas sharing a directory) or threads never write through one file.
fn temporary(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".tmp-{}-{n}", std::process::id()));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn create_private_makes_a_0600_file_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        create_private(&path, b"secret\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret\n");
        assert_eq!(mode(&path), 0o600);
        let err = create_private(&path, b"other").unwrap_err();
        assert_eq!(err.step, Step::Create);
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"secret\n");
        assert!(err.to_string().starts_with("cannot create "), "{err}");
    }

    #[test]
    fn replace_private_replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        replace_private(&path, b"one").unwrap();
        // An existing file with a wider mode is replaced by a 0600 one.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        replace_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(dir.path()), vec!["admin.token".to_owned()]);
    }

    #[test]
    fn a_failed_replace_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: the rename of a file over it fails.
        let path = dir.path().join("journal.json");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"kept").unwrap();
        let err = replace_private(&path, b"new").unwrap_err();
        assert_eq!(err.step, Step::Rename);
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");
        assert_eq!(names(dir.path()), vec!["journal.json".to_owned()]);
        // A directory that does not exist: nothing is created.
        let missing = dir.path().join("absent").join("file");
        assert_eq!(
            replace_private(&missing, b"x").unwrap_err().step,
            Step::Create
        );
    }

    #[test]
    fn an_unfinished_replacement_leaves_the_old_file_and_a_finished_one_the_whole_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        replace_private(&path, b"old\n").unwrap();
        let mut cut = Replacement::begin(&path).unwrap();
        cut.write_all(b"first half of a ").unwrap();
        drop(cut);
        assert_eq!(fs::read(&path).unwrap(), b"old\n");
        assert_eq!(names(dir.path()), vec!["audit.log".to_owned()]);
        let mut whole = Replacement::begin(&path).unwrap();
        whole.write_all(b"line 1\n").unwrap();
        whole.write_all(b"line 2\n").unwrap();
        whole.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"line 1\nline 2\n");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(dir.path()), vec!["audit.log".to_owned()]);
    }
}
