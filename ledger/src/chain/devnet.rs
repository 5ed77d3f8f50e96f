//! A local development chain: Foundry's `anvil` as a child process, for tests, benchmarks
//! and demos. Never used against a real network.
//!
//! The binary comes from the repository's pinned npm packages (`scripts/lib/chain.sh`,
//! `ensure_node_packages`); `ORIEN_ANVIL` overrides its path. Anvil listens on a free
//! loopback port chosen by the kernel and is killed when the [`Anvil`] value is dropped,
//! also when a test panics.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::transports::http::reqwest::Url;
use orien_protocol::EvmAddress;

use super::convert::to_address;
use super::error::ChainError;
use super::escrow::EscrowClient;
use super::outcome::EscrowParams;
use super::token::UsdcClient;
use super::transactor::ChainConfig;
use super::wallet::Wallet;

/// Chain id of the development chain.
pub const DEVNET_CHAIN_ID: u64 = 31337;
/// How long anvil may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of the development chain.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// The anvil binary is not where it should be.
    #[error(
        "anvil not found (looked in {0}): install it with scripts/test or scripts/demo (the pinned npm package), put it on PATH, or name it with --anvil or ORIEN_ANVIL"
    )]
    NotInstalled(String),
    /// Anvil could not be started or did not report its address in time.
    #[error("anvil failed to start: {0}")]
    Start(String),
    /// A development RPC call (`anvil_*`, `evm_*`) failed.
    #[error("anvil RPC `{method}` failed: {source}")]
    Rpc {
        /// The method.
        method: &'static str,
        /// The error.
        #[source]
        source: alloy::transports::TransportError,
    },
    /// Deploying or funding through the contracts failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// MockUSDC and an `OrienEscrow` deployed on an [`Anvil`], with the wallets that own
/// them ([`Anvil::deploy`]).
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Deployed both contracts (and mints MockUSDC).
    pub deployer: Wallet,
    /// Receives the 7 % fee.
    pub treasury: Wallet,
    /// Receives the 3 % reserve.
    pub reserve: Wallet,
    /// The token, as the deployer.
    pub usdc: UsdcClient,
    /// The escrow, as the deployer.
    pub escrow: EscrowClient,
}

impl Deployment {
    /// Gives `address` 100 ether of gas and mints it `usdc`.
    pub async fn fund(
        &self,
        anvil: &Anvil,
        address: EvmAddress,
        usdc: orien_protocol::Usdc,
    ) -> Result<(), DevnetError> {
        anvil.give_ether(address, 100).await?;
        if !usdc.is_zero() {
            self.usdc.mint(address, usdc).await?;
        }
        Ok(())
    }
}

/// A running anvil, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    url: Url,
    provider: RootProvider,
}

impl Anvil {
    /// Where anvil is looked for, in order: `explicit` (a command-line flag),
    /// `$ORIEN_ANVIL`, `anvil` on `PATH`, then the pinned npm package in the
    /// `node_modules` of the working directory or any directory above it (a checkout
    /// that ran `scripts/test` or `scripts/demo`). Found at run time: nothing depends on
    /// where the binary was built.
    pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = explicit.map(Path::to_owned).into_iter().collect();
        out.extend(std::env::var_os("ORIEN_ANVIL").map(PathBuf::from));
        if let Some(path) = std::env::var_os("PATH") {
            out.extend(std::env::split_paths(&path).map(|dir| dir.join("anvil")));
        }
        if let Ok(cwd) = std::env::current_dir() {
            out.extend(
                cwd.ancestors()
                    .map(|dir| dir.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")),
            );
        }
        out
    }

    /// The first of [`candidates`](Self::candidates) that is a file. An explicit path
    /// or `$ORIEN_ANVIL` that is not one is an error rather than skipped.
    pub fn find(explicit: Option<&Path>) -> Result<PathBuf, DevnetError> {
        let named = explicit
            .map(Path::to_owned)
            .or_else(|| std::env::var_os("ORIEN_ANVIL").map(PathBuf::from));
        if let Some(named) = named {
            return if named.is_file() {
                Ok(named)
            } else {
                Err(DevnetError::NotInstalled(named.display().to_string()))
            };
        }
        let candidates = Self::candidates(None);
        candidates
            .iter()
            .find(|path| path.is_file())
            .cloned()
            .ok_or_else(|| {
                DevnetError::NotInstalled(
                    "$ORIEN_ANVIL, PATH or node_modules/@foundry-rs/anvil-linux-amd64 here or above"
                        .into(),
                )
            })
    }

    /// Starts anvil (found by [`find`](Self::find)) on a free loopback port with chain
    /// id [`DEVNET_CHAIN_ID`].
    pub fn spawn() -> Result<Self, DevnetError> {
        Self::spawn_from(&Self::find(None)?)
    }

    /// Starts the anvil at `binary` on a free loopback port with chain id
    /// [`DEVNET_CHAIN_ID`].
    pub fn spawn_from(binary: &Path) -> Result<Self, DevnetError> {
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--chain-id", &DEVNET_CHAIN_ID.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| DevnetError::Start(format!("{}: {e}", binary.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(DevnetError::Start("no stdout pipe".into()));
        };
        // A reader thread reports the listening address, then keeps draining anvil's log so
        // the pipe never fills up and blocks it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reported = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !reported && let Some(addr) = line.trim().strip_prefix("Listening on ") {
                    reported = true;
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let address = match rx.recv_timeout(START_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DevnetError::Start(format!(
                    "no \"Listening on\" line within {START_TIMEOUT:?}"
                )));
            }
        };
        let url: Url = match format!("http://{address}").parse() {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DevnetError::Start(format!("bad address {address}: {e}")));
            }
        };
        let provider = ProviderBuilder::default().connect_http(url.clone());
        Ok(Self {
            child,
            url,
            provider,
        })
    }

    /// The JSON-RPC endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A client configuration for this chain: 1 confirmation and a 20 ms receipt poll,
    /// since anvil mines every transaction at once.
    pub fn config(&self) -> ChainConfig {
        let mut config = ChainConfig::new(self.url.clone(), DEVNET_CHAIN_ID);
        config.poll_interval = Duration::from_millis(20);
        config
    }

    /// Deploys MockUSDC and an `OrienEscrow` with a `thaw` window that pays its fee to
    /// `treasury` and its reserve to `reserve` (each given gas), from a fresh deployer:
    /// the deployer, the token and the escrow.
    pub async fn deploy_paying(
        &self,
        thaw: Duration,
        treasury: EvmAddress,
        reserve: EvmAddress,
    ) -> Result<(Wallet, UsdcClient, EscrowClient), DevnetError> {
        let deployer = Wallet::generate();
        for address in [deployer.address(), treasury, reserve] {
            self.give_ether(address, 100).await?;
        }
        let usdc = UsdcClient::deploy_mock(self.config(), &deployer).await?;
        let escrow = EscrowClient::deploy(
            self.config(),
            &deployer,
            EscrowParams {
                token: usdc.address(),
                treasury,
                reserve,
                thaw_period: thaw,
            },
        )
        .await?;
        Ok((deployer, usdc, escrow))
    }

    /// Deploys MockUSDC and an `OrienEscrow` with a `thaw` window, from fresh wallets
    /// that get gas first.
    pub async fn deploy(&self, thaw: Duration) -> Result<Deployment, DevnetError> {
        let (treasury, reserve) = (Wallet::generate(), Wallet::generate());
        let (deployer, usdc, escrow) = self
            .deploy_paying(thaw, treasury.address(), reserve.address())
            .await?;
        Ok(Deployment {
            deployer,
            treasury,
            reserve,
            usdc,
            escrow,
        })
    }

    /// Gives `address` `wei` of ether for gas.
    pub async fn set_balance(&self, address: EvmAddress, wei: U256) -> Result<(), DevnetError> {
        self.call(
            "anvil_setBalance",
            serde_json::json!([to_address(address), wei]),
        )
        .await
    }

    /// Gives `address` `ether` whole ether for gas.
    pub async fn give_ether(&self, address: EvmAddress, ether: u64) -> Result<(), DevnetError> {
        let wei = U256::from(ether) * U256::from(10u64).pow(U256::from(18u64));
        self.set_balance(address, wei).await
    }

    /// Moves the chain's clock forward by `by` and mines a block at the new time.
    pub async fn advance_time(&self, by: Duration) -> Result<(), DevnetError> {
        let _: serde_json::Value = self
            .provider
            .raw_request("evm_increaseTime".into(), (by.as_secs(),))
            .await
            .map_err(|source| DevnetError::Rpc {
                method: "evm_increaseTime",
                source,
            })?;
        self.call("evm_mine", serde_json::json!([])).await
    }

    /// Takes a snapshot of the chain state; [`revert`](Self::revert) goes back to it.
    pub async fn snapshot(&self) -> Result<U256, DevnetError> {
        self.provider
            .raw_request("evm_snapshot".into(), ())
            .await
            .map_err(|source| DevnetError::Rpc {
                method: "evm_snapshot",
                source,
            })
    }

    /// Reverts the chain to a snapshot: the blocks after it disappear, like a reorg.
    pub async fn revert(&self, snapshot: U256) -> Result<(), DevnetError> {
        let _: bool = self
            .provider
            .raw_request("evm_revert".into(), (snapshot,))
            .await
            .map_err(|source| DevnetError::Rpc {
                method: "evm_revert",
                source,
            })?;
        Ok(())
    }

    async fn call(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<(), DevnetError> {
        let _: serde_json::Value = self
            .provider
            .raw_request(method.into(), params)
            .await
            .map_err(|source| DevnetError::Rpc { method, source })?;
        Ok(())
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anvil_named_explicitly_is_used_or_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("anvil");
        std::fs::write(&fake, b"#!/bin/sh\n").unwrap();
        assert_eq!(Anvil::find(Some(&fake)).unwrap(), fake);
        let missing = dir.path().join("nowhere/anvil");
        let err = Anvil::find(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("nowhere/anvil"), "{err}");
    }

    #[test]
    fn the_checkouts_node_modules_is_searched_from_the_working_directory_up() {
        // Tests run in the crate's directory; the checkout's node_modules is one above.
        let candidates = Anvil::candidates(None);
        let cwd = std::env::current_dir().unwrap();
        let above = cwd
            .parent()
            .unwrap()
            .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        assert!(candidates.contains(&above), "{candidates:?}");
    }
}
