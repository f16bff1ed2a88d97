//! The root key file.
//!
//! The root key is the top of the key hierarchy: it wraps the key epochs and derives the
//! blind-index key. It lives in a file outside the store, never inside it, so a copy of
//! the data directory's store (a stolen disk image, a backup) without the key file reveals
//! nothing. The file holds 64 hexadecimal characters and a newline; it is created with mode
//! 0600 and refused when group or others may read or write it, when it is a symbolic link,
//! and when another user owns it: whoever could swap the file (or the link) could make the
//! vault seal new data under a key they know.
//!
//! The hex text is read into one pre-sized, zeroizing buffer that never grows, so no copy
//! of it is left behind in freed memory by a reallocation.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::secret::Key256;
use crate::error::{Error, Result};
use crate::fsutil::{self, Step};

/// The root key, loaded from its file.
#[derive(Debug)]
pub struct RootKey(Key256);

/// Whether [`RootKey::load_or_create`] found a key or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The file existed and was loaded.
    Loaded,
    /// The file did not exist and was created with a fresh key.
    Created,
}

/// The longest root key file accepted: 64 hex characters and a line ending need 66 bytes;
/// anything much longer is not a key file.
const MAX_FILE_BYTES: usize = 80;

const BAD_CONTENTS: &str = "must hold exactly 64 hexadecimal characters (a 256-bit key)";

fn file_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::RootKeyFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Whether a key file owned by `file_uid` may be used by a process running as
/// `expected_uid` (its effective uid): only its own. A file another user owns could be
/// replaced by that user at any time.
fn check_owner(file_uid: u32, expected_uid: u32) -> std::result::Result<(), String> {
    if file_uid == expected_uid {
        return Ok(());
    }
    Err(format!(
        "is owned by uid {file_uid}, not by the user the vault runs as (uid {expected_uid}): \
         another user could replace it; the root key must belong to the vault's own user \
         (run: chown {expected_uid} on it, as root)"
    ))
}

/// The effective uid of this process.
fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Reads at most [`MAX_FILE_BYTES`] of `file` into a zeroizing buffer allocated once, at
/// its final size. `Err(None)`: the file is longer than that.
fn read_bounded(
    file: &mut fs::File,
) -> std::result::Result<(Zeroizing<Vec<u8>>, usize), Option<std::io::Error>> {
    // One byte more than accepted, to tell a file of exactly the limit from a longer one.
    let mut buf = Zeroizing::new(vec![0u8; MAX_FILE_BYTES + 1]);
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Some(e)),
        }
    }
    if filled > MAX_FILE_BYTES {
        return Err(None);
    }
    Ok((buf, filled))
}

impl RootKey {
    /// Loads the key at `path`, or creates it (mode 0600) if no file is there.
    pub fn load_or_create(path: &Path) -> Result<(Self, Origin)> {
        match fs::symlink_metadata(path) {
            Ok(_) => Ok((Self::load(path)?, Origin::Loaded)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((Self::create(path)?, Origin::Created))
            }
            Err(e) => Err(file_error(path, format!("cannot be inspected: {e}"))),
        }
    }

    /// Loads an existing key file, refusing a symbolic link, a file another user owns,
    /// loose permissions and anything but 64 hex characters (and a line ending).
    pub fn load(path: &Path) -> Result<Self> {
        // The path itself, not what a link points to.
        let meta = fs::symlink_metadata(path)
            .map_err(|e| file_error(path, format!("cannot be read: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(file_error(
                path,
                "is a symbolic link; give the path of the key file itself (whoever can change \
                 a link can point the vault at a key of their own)",
            ));
        }
        if !meta.is_file() {
            return Err(file_error(path, "is not a regular file"));
        }
        check_owner(meta.uid(), effective_uid()).map_err(|why| file_error(path, why))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(file_error(
                path,
                format!(
                    "has permissions {mode:03o}; the root key must be readable by its owner only \
                     (run: chmod 600 {})",
                    path.display()
                ),
            ));
        }
        let mut file =
            fs::File::open(path).map_err(|e| file_error(path, format!("cannot be read: {e}")))?;
        // What was opened must be the file just checked, not one swapped in since (a link
        // put in its place between the check and the open).
        let opened = file
            .metadata()
            .map_err(|e| file_error(path, format!("cannot be read: {e}")))?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(file_error(
                path,
                "was replaced while it was being opened; check who else can write its directory",
            ));
        }
        let (buf, len) = read_bounded(&mut file).map_err(|e| match e {
            Some(e) => file_error(path, format!("cannot be read: {e}")),
            None => file_error(
                path,
                format!("is longer than {MAX_FILE_BYTES} bytes; it {BAD_CONTENTS}"),
            ),
        })?;
        let mut text = buf.get(..len).unwrap_or_default();
        while let Some(rest) = text
            .strip_suffix(b"\n")
            .or_else(|| text.strip_suffix(b"\r"))
        {
            text = rest;
        }
        if text.len() != 64 {
            return Err(file_error(path, BAD_CONTENTS));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text, bytes.as_mut_slice())
            .map_err(|_| file_error(path, BAD_CONTENTS))?;
        Ok(Self(Key256::from_bytes(&bytes)))
    }

    fn create(path: &Path) -> Result<Self> {
        let key = Key256::generate()?;
        let mut text = Zeroizing::new(hex::encode(key.expose()));
        text.push('\n');
        // Created, never replaced: an existing key file is never overwritten. The directory
        // entry is made durable too, so a crash cannot lose the key while keeping data
        // sealed under it.
        fsutil::create_private(path, text.as_bytes()).map_err(|e| {
            let reason = match e.step {
                Step::Create => "cannot be created",
                Step::Write | Step::Rename => "cannot be written",
                Step::SyncDirectory => "directory cannot be synced",
            };
            file_error(path, format!("{reason}: {}", e.source))
        })?;
        Ok(Self(key))
    }

    /// Wraps a key obtained elsewhere (tests, an external KMS).
    pub fn from_key(key: Key256) -> Self {
        Self(key)
    }

    /// The key itself, for wrapping key epochs and deriving subkeys.
    pub fn key(&self) -> &Key256 {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_0600_and_reloaded() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| file_error(Path::new("tmp"), e.to_string()))?;
        let path = dir.path().join("root.key");
        let (a, origin) = RootKey::load_or_create(&path)?;
        assert_eq!(origin, Origin::Created);
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let (b, origin) = RootKey::load_or_create(&path)?;
        assert_eq!(origin, Origin::Loaded);
        assert_eq!(a.key().expose(), b.key().expose());
        Ok(())
    }

    #[test]
    fn loose_permissions_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| file_error(Path::new("tmp"), e.to_string()))?;
        let path = dir.path().join("root.key");
        RootKey::load_or_create(&path)?;
        for mode in [0o640, 0o604, 0o644, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| file_error(&path, e.to_string()))?;
            let err = RootKey::load(&path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("readable by its owner only"),
                "{mode:o}: {err}"
            );
        }
        Ok(())
    }

    #[test]
    fn malformed_contents_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| file_error(Path::new("tmp"), e.to_string()))?;
        let path = dir.path().join("root.key");
        for bad in ["", "abcd\n", &"zz".repeat(32)] {
            fs::write(&path, bad).map_err(|e| file_error(&path, e.to_string()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(|e| file_error(&path, e.to_string()))?;
            assert!(matches!(
                RootKey::load(&path),
                Err(Error::RootKeyFile { .. })
            ));
        }
        Ok(())
    }

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| file_error(Path::new("tmp"), e.to_string()))
    }

    fn reason(r: Result<RootKey>) -> String {
        match r {
            Err(Error::RootKeyFile { reason, .. }) => reason,
            Err(other) => format!("not a root key file error: {other}"),
            Ok(_) => "loaded".to_owned(),
        }
    }

    #[test]
    fn a_symbolic_link_is_refused() -> Result<()> {
        let dir = tmp()?;
        let real = dir.path().join("real.key");
        RootKey::load_or_create(&real)?;
        let link = dir.path().join("root.key");
        std::os::unix::fs::symlink(&real, &link).map_err(|e| file_error(&link, e.to_string()))?;
        let why = reason(RootKey::load(&link));
        assert!(why.contains("symbolic link"), "{why}");
        // load_or_create neither follows it nor replaces it.
        let why = reason(RootKey::load_or_create(&link).map(|(k, _)| k));
        assert!(why.contains("symbolic link"), "{why}");
        // A dangling link is refused too, not created through.
        let dangling = dir.path().join("dangling.key");
        std::os::unix::fs::symlink(dir.path().join("absent"), &dangling)
            .map_err(|e| file_error(&dangling, e.to_string()))?;
        let why = reason(RootKey::load_or_create(&dangling).map(|(k, _)| k));
        assert!(why.contains("symbolic link"), "{why}");
        assert!(!dir.path().join("absent").exists());
        // The file itself still loads.
        RootKey::load(&real)?;
        Ok(())
    }

    #[test]
    fn an_oversized_file_is_refused() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("root.key");
        let key = "ab".repeat(32);
        let cases = [
            (format!("{key}\n"), true),
            (format!("{key}\r\n"), true),
            (format!("{key}{}", "\n".repeat(MAX_FILE_BYTES - 64)), true),
            (format!("{key}{}", "\n".repeat(MAX_FILE_BYTES - 63)), false),
            (format!("{key}\n{}", "0".repeat(4096)), false),
        ];
        for (text, ok) in cases {
            fs::write(&path, &text).map_err(|e| file_error(&path, e.to_string()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(|e| file_error(&path, e.to_string()))?;
            let why = reason(RootKey::load(&path));
            if ok {
                assert_eq!(why, "loaded", "{} bytes", text.len());
            } else {
                assert!(why.contains("is longer than 80 bytes"), "{why}");
            }
        }
        Ok(())
    }

    #[test]
    fn only_the_processs_own_user_may_own_the_file() {
        assert_eq!(check_owner(1000, 1000), Ok(()));
        assert_eq!(check_owner(0, 0), Ok(()));
        for (file, process) in [(0, 1000), (1000, 0), (1001, 1000)] {
            let why = check_owner(file, process).err().unwrap_or_default();
            assert!(
                why.contains(&format!("owned by uid {file}"))
                    && why.contains(&format!("runs as (uid {process})")),
                "{why}"
            );
        }
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("root.key");
        RootKey::load_or_create(&path)?;
        let me = effective_uid();
        let meta = fs::metadata(&path).map_err(|e| file_error(&path, e.to_string()))?;
        assert_eq!(meta.uid(), me, "a created key file belongs to its creator");
        // Give it away: root may chown to anyone; another user may not chown at all, and
        // then the owner check is proven by `only_the_processs_own_user_may_own_the_file`.
        let other = if me == 1 { 2 } else { 1 };
        match std::os::unix::fs::chown(&path, Some(other), None) {
            Ok(()) => {
                let why = reason(RootKey::load(&path));
                assert!(why.contains(&format!("owned by uid {other}")), "{why}");
            }
            Err(e) => assert_ne!(me, 0, "root could not chown: {e}"),
        }
        Ok(())
    }
}
