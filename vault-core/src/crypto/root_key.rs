//! The root key file.
//!
//! The root key is the top of the key hierarchy: it wraps the key epochs and derives the
//! blind-index key. It lives in a file outside the store, never inside it, so a copy of
//! the data directory's store (a stolen disk image, a backup) without the key file reveals
//! nothing. The file holds 64 hexadecimal characters and a newline; it is created with mode
//! 0600 and refused when group or others may read or write it.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::secret::Key256;
use crate::error::{Error, Result};

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

fn file_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::RootKeyFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
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

    /// Loads an existing key file, refusing loose permissions.
    pub fn load(path: &Path) -> Result<Self> {
        let meta =
            fs::metadata(path).map_err(|e| file_error(path, format!("cannot be read: {e}")))?;
        if !meta.is_file() {
            return Err(file_error(path, "is not a regular file"));
        }
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
        let mut text = Zeroizing::new(String::new());
        fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| file_error(path, format!("cannot be read: {e}")))?;
        let hex_text = text.trim_end_matches(['\n', '\r']);
        if hex_text.len() != 64 {
            return Err(file_error(
                path,
                "must hold exactly 64 hexadecimal characters (a 256-bit key)",
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_text, bytes.as_mut_slice()).map_err(|_| {
            file_error(
                path,
                "must hold exactly 64 hexadecimal characters (a 256-bit key)",
            )
        })?;
        Ok(Self(Key256::from_bytes(&bytes)))
    }

    fn create(path: &Path) -> Result<Self> {
        let key = Key256::generate()?;
        let mut text = Zeroizing::new(hex::encode(key.expose()));
        text.push('\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| file_error(path, format!("cannot be created: {e}")))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| file_error(path, format!("cannot be written: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the new directory entry durable too, so a crash cannot lose the key
            // while keeping data sealed under it.
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| file_error(path, format!("directory cannot be synced: {e}")))?;
        }
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
}
