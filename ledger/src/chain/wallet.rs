//! The node's secp256k1 wallet key: signs EIP-712 vouchers and chain transactions.
//!
//! It is separate from the ed25519 node identity (which signs offers and receipts). The key
//! lives in the data directory as one line of hex, in a file of mode 0600 that is refused
//! when other users can read it.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use orien_protocol::EvmAddress;

use super::convert::to_evm_address;
use super::error::WalletError;

/// A secp256k1 key and its EVM address. `Debug` shows the address only.
#[derive(Clone)]
pub struct Wallet {
    signer: PrivateKeySigner,
}

impl Wallet {
    /// A fresh random key from the operating system's random source.
    pub fn generate() -> Self {
        Self {
            signer: PrivateKeySigner::random(),
        }
    }

    /// The key with these secret bytes.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Result<Self, WalletError> {
        PrivateKeySigner::from_bytes(&B256::from(*secret))
            .map(|signer| Self { signer })
            .map_err(|e| WalletError::InvalidSecret(e.to_string()))
    }

    /// Reads the key file at `path` (hex, optional `0x`, surrounding whitespace ignored).
    /// Refuses a file that users other than the owner can read or write.
    pub fn load(path: &Path) -> Result<Self, WalletError> {
        let io = |source| WalletError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(WalletError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(io)?;
        let invalid = |reason: String| WalletError::InvalidKey {
            path: path.to_owned(),
            reason,
        };
        let hex_text = text.trim();
        let hex_text = hex_text.strip_prefix("0x").unwrap_or(hex_text);
        let mut secret = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut secret).map_err(|e| invalid(e.to_string()))?;
        Self::from_secret_bytes(&secret).map_err(|e| invalid(e.to_string()))
    }

    /// Writes a new key file at `path` with mode 0600. Never overwrites: an existing file
    /// is an error, so a wallet holding funds cannot be replaced by accident.
    pub fn save(&self, path: &Path) -> Result<(), WalletError> {
        let io = |source| WalletError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let line = format!("0x{}\n", hex::encode(self.signer.to_bytes()));
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Loads the key at `path`, or generates and saves one if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, WalletError> {
        if path.exists() {
            return Self::load(path);
        }
        let wallet = Self::generate();
        wallet.save(path)?;
        Ok(wallet)
    }

    /// The EVM address of this key.
    pub fn address(&self) -> EvmAddress {
        to_evm_address(self.signer.address())
    }

    /// The alloy signer, for building transaction wallets.
    pub(crate) fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_key_loads_back_with_the_same_address_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        let wallet = Wallet::generate();
        wallet.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Wallet::load(&path).unwrap().address(), wallet.address());
        assert_eq!(
            Wallet::load_or_create(&path).unwrap().address(),
            wallet.address()
        );
    }

    #[test]
    fn save_never_overwrites_an_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        Wallet::generate().save(&path).unwrap();
        assert!(matches!(
            Wallet::generate().save(&path),
            Err(WalletError::Io { .. })
        ));
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        Wallet::generate().save(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Wallet::load(&path),
            Err(WalletError::InsecurePermissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn garbage_and_zero_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        fs::write(&path, "not hex\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Wallet::load(&path),
            Err(WalletError::InvalidKey { .. })
        ));
        assert!(Wallet::from_secret_bytes(&[0u8; 32]).is_err());
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = [7u8; 32];
        let wallet = Wallet::from_secret_bytes(&secret).unwrap();
        let debug = format!("{wallet:?}");
        assert!(!debug.contains(&hex::encode(secret)));
        assert!(debug.contains(&wallet.address().to_string()));
    }
}
