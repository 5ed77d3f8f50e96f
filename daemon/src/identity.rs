//! The node's ed25519 identity key on disk: 32 secret bytes in a file of mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use orien_protocol::NodeKey;

/// File name of the identity key inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Errors reading or writing the key file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not 32 bytes.
    #[error(
        "{path}: expected a 32-byte ed25519 secret, found {len} bytes; restore it from a backup or remove it to create a new identity"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// Others can read the file.
    #[error(
        "{path}: mode {mode:o} lets other users read the node's secret key; run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// `create` found an existing key.
    #[error("{path} already exists; refusing to overwrite the node's identity")]
    Exists {
        /// The key file.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates a new identity in `data_dir` (mode 0600); fails if one exists.
pub fn create(data_dir: &Path) -> Result<NodeKey, IdentityError> {
    let path = data_dir.join(IDENTITY_FILE);
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let key = NodeKey::generate();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => IdentityError::Exists { path: path.clone() },
            _ => IdentityError::Io {
                path: path.clone(),
                source,
            },
        })?;
    file.write_all(&key.secret_bytes()).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    Ok(key)
}

/// Loads the identity from `data_dir`, refusing a key file others can read.
pub fn load(data_dir: &Path) -> Result<NodeKey, IdentityError> {
    let path = data_dir.join(IDENTITY_FILE);
    let mode = fs::metadata(&path).map_err(io(&path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::TooOpen { path, mode });
    }
    let bytes = fs::read(&path).map_err(io(&path))?;
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| IdentityError::Malformed {
            path: path.clone(),
            len: bytes.len(),
        })?;
    Ok(NodeKey::from_secret_bytes(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_loads_back_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let key = create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(dir.path()).unwrap().node_id(), key.node_id());
        assert!(matches!(
            create(dir.path()),
            Err(IdentityError::Exists { .. })
        ));
    }

    #[test]
    fn a_readable_or_malformed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(IdentityError::TooOpen { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(IdentityError::Malformed { len: 5, .. })
        ));
    }
}
