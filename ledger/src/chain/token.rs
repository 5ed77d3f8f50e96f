//! [`UsdcClient`]: the escrowed ERC-20 (USDC), and the 6-decimal test token `MockUSDC`.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use orien_protocol::{EvmAddress, Usdc};

use super::bindings::MockUSDC;
use super::convert::{to_address, to_evm_address};
use super::error::ChainError;
use super::escrow::view;
use super::transactor::{ChainConfig, Mined, Transactor};
use super::wallet::Wallet;

/// A client of an ERC-20 with 6 decimals (USDC), acting with one wallet.
#[derive(Debug, Clone)]
pub struct UsdcClient {
    chain: Arc<Transactor>,
    token: Address,
}

impl UsdcClient {
    pub(crate) fn new(chain: Arc<Transactor>, token: Address) -> Self {
        Self { chain, token }
    }

    /// Deploys the test token `MockUSDC` (6 decimals, EIP-2612 permit, open `mint`). For
    /// local chains, tests and benchmarks only.
    pub async fn deploy_mock(config: ChainConfig, wallet: &Wallet) -> Result<Self, ChainError> {
        let chain = Arc::new(Transactor::connect(config, wallet).await?);
        let (token, _) = chain
            .deploy("deploy MockUSDC", MockUSDC::BYTECODE.clone())
            .await?;
        Ok(Self::new(chain, token))
    }

    /// The same token, acting with another wallet.
    pub async fn with_wallet(&self, wallet: &Wallet) -> Result<Self, ChainError> {
        let chain = Arc::new(Transactor::connect(self.chain.config().clone(), wallet).await?);
        Ok(Self::new(chain, self.token))
    }

    /// The token's address.
    pub fn address(&self) -> EvmAddress {
        to_evm_address(self.token)
    }

    /// `balanceOf(owner)`.
    pub async fn balance_of(&self, owner: EvmAddress) -> Result<Usdc, ChainError> {
        let call = MockUSDC::balanceOfCall {
            account: to_address(owner),
        };
        usdc(view(&self.chain, self.token, "balanceOf()", call).await?)
    }

    /// `allowance(owner, spender)`.
    pub async fn allowance(
        &self,
        owner: EvmAddress,
        spender: EvmAddress,
    ) -> Result<Usdc, ChainError> {
        let call = MockUSDC::allowanceCall {
            owner: to_address(owner),
            spender: to_address(spender),
        };
        let value = view(&self.chain, self.token, "allowance()", call).await?;
        // An "infinite" approval is as good as any amount ORIEN handles.
        Ok(Usdc::from_micros(u64::try_from(value).unwrap_or(u64::MAX)))
    }

    /// `approve(spender, amount)`.
    pub async fn approve(&self, spender: EvmAddress, amount: Usdc) -> Result<Mined, ChainError> {
        let call = MockUSDC::approveCall {
            spender: to_address(spender),
            value: U256::from(amount.micros()),
        };
        self.transact("approve", call).await
    }

    /// `transfer(to, amount)`.
    pub async fn transfer(&self, to: EvmAddress, amount: Usdc) -> Result<Mined, ChainError> {
        let call = MockUSDC::transferCall {
            to: to_address(to),
            value: U256::from(amount.micros()),
        };
        self.transact("transfer", call).await
    }

    /// `mint(to, amount)`: only `MockUSDC` has it.
    pub async fn mint(&self, to: EvmAddress, amount: Usdc) -> Result<Mined, ChainError> {
        let call = MockUSDC::mintCall {
            to: to_address(to),
            amount: U256::from(amount.micros()),
        };
        self.transact("mint", call).await
    }

    /// The token's EIP-712 domain name and version: EIP-5267 `eip712Domain()` where the
    /// token has it (OpenZeppelin tokens), else `name()` and `version()` (Circle's USDC).
    pub(crate) async fn eip712_name_version(&self) -> Result<(String, String), ChainError> {
        let call = MockUSDC::eip712DomainCall {};
        match view(&self.chain, self.token, "eip712Domain()", call).await {
            Ok(domain) => Ok((domain.name, domain.version)),
            Err(ChainError::Reverted { .. } | ChainError::Unexpected(_)) => {
                let name = view(&self.chain, self.token, "name()", MockUSDC::nameCall {}).await?;
                let version =
                    view(&self.chain, self.token, "version()", legacy::versionCall {}).await?;
                Ok((name, version))
            }
            Err(other) => Err(other),
        }
    }

    /// The owner's next EIP-2612 permit nonce.
    pub(crate) async fn permit_nonce(&self, owner: EvmAddress) -> Result<U256, ChainError> {
        let call = MockUSDC::noncesCall {
            owner: to_address(owner),
        };
        view(&self.chain, self.token, "nonces()", call).await
    }

    async fn transact<C: SolCall>(&self, name: &'static str, call: C) -> Result<Mined, ChainError> {
        let tx = TransactionRequest::default()
            .to(self.token)
            .input(call.abi_encode().into());
        let receipt = self.chain.send(name, tx).await?;
        Transactor::mined(&receipt)
    }
}

mod legacy {
    alloy::sol! {
        /// The EIP-712 domain version getter of tokens without EIP-5267 (Circle's USDC).
        function version() external view returns (string);
    }
}

fn usdc(value: U256) -> Result<Usdc, ChainError> {
    u64::try_from(value)
        .map(Usdc::from_micros)
        .map_err(|_| ChainError::AmountOutOfRange(value.to_string()))
}
