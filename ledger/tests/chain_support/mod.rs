//! The harness of the chain tests: a real anvil, a deployed MockUSDC and OrienEscrow, and
//! funded actors. Everything is dropped (anvil killed) when the [`World`] goes away.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // Shared by several test binaries; fails loudly.

use std::time::Duration;

use alloy::primitives::U256;
use orien_ledger::chain::devnet::Anvil;
use orien_ledger::chain::{EscrowClient, EscrowParams, UsdcClient, Wallet};
use orien_protocol::{EvmAddress, Usdc};

/// The thaw window of the test escrow.
pub const THAW: Duration = Duration::from_secs(24 * 3600);

/// One USDC in micro-USDC.
pub const USDC: u64 = 1_000_000;

/// A local chain with the contracts deployed.
pub struct World {
    pub anvil: Anvil,
    pub deployer: Wallet,
    pub treasury: Wallet,
    pub reserve: Wallet,
    pub usdc: UsdcClient,
    pub escrow: EscrowClient,
}

/// A wallet with gas and its clients.
pub struct Actor {
    pub wallet: Wallet,
    pub escrow: EscrowClient,
    pub usdc: UsdcClient,
}

impl Actor {
    pub fn address(&self) -> EvmAddress {
        self.wallet.address()
    }
}

impl World {
    /// Starts anvil and deploys MockUSDC and an escrow with a 24 h thaw window.
    pub async fn start() -> Self {
        let anvil = Anvil::spawn().unwrap();
        let deployer = Wallet::generate();
        let treasury = Wallet::generate();
        let reserve = Wallet::generate();
        for w in [&deployer, &treasury, &reserve] {
            anvil.set_balance(w.address(), eth(100)).await.unwrap();
        }
        let usdc = UsdcClient::deploy_mock(anvil.config(), &deployer)
            .await
            .unwrap();
        let escrow = EscrowClient::deploy(
            anvil.config(),
            &deployer,
            EscrowParams {
                token: usdc.address(),
                treasury: treasury.address(),
                reserve: reserve.address(),
                thaw_period: THAW,
            },
        )
        .await
        .unwrap();
        Self {
            anvil,
            deployer,
            treasury,
            reserve,
            usdc,
            escrow,
        }
    }

    /// A new wallet with gas and `usdc` micro-USDC.
    pub async fn actor(&self, usdc: u64) -> Actor {
        self.actor_with(Wallet::generate(), usdc).await
    }

    /// Clients for `wallet`, with gas and `usdc` micro-USDC.
    pub async fn actor_with(&self, wallet: Wallet, usdc: u64) -> Actor {
        self.anvil
            .set_balance(wallet.address(), eth(100))
            .await
            .unwrap();
        if usdc > 0 {
            self.usdc
                .mint(wallet.address(), Usdc::from_micros(usdc))
                .await
                .unwrap();
        }
        Actor {
            escrow: self.escrow.with_wallet(&wallet).await.unwrap(),
            usdc: self.usdc.with_wallet(&wallet).await.unwrap(),
            wallet,
        }
    }

    /// The escrow as its treasury.
    pub async fn treasury(&self) -> EscrowClient {
        self.escrow.with_wallet(&self.treasury).await.unwrap()
    }

    /// The escrow as its reserve.
    pub async fn reserve(&self) -> EscrowClient {
        self.escrow.with_wallet(&self.reserve).await.unwrap()
    }
}

/// `n` ether in wei.
pub fn eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A world with one provider, and one renter (100 USDC) whose lane to it holds
/// `deposit` USDC.
pub async fn funded_lane(deposit: u64) -> (World, Actor, Actor) {
    let world = World::start().await;
    let provider = world.actor(0).await;
    let renter = world.actor(100 * USDC).await;
    renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(deposit * USDC))
        .await
        .unwrap();
    (world, provider, renter)
}
