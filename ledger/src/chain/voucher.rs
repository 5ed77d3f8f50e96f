//! EIP-712 vouchers: the renter's signed promise to pay a lane's cumulative amount.
//!
//! The typed data is `Voucher(bytes32 laneId,uint128 cumulative)` under the domain
//! `{name: "OrienEscrow", version: "1", chainId, verifyingContract}`, so a voucher is valid
//! for exactly one escrow contract on one chain. Because amounts are cumulative, a later
//! voucher supersedes every earlier one and replaying an old one pays nothing.
//!
//! The provider checks every voucher with [`VoucherDomain::verify_next`] before it serves
//! more: right lane, signed by the lane's renter, low-s (the escrow refuses malleable
//! signatures), never decreasing, and covering what the renter acknowledged.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolStruct, SolValue, eip712_domain};
use orien_protocol::{EvmAddress, EvmSignature, LaneId, Usdc, Voucher};

use super::convert::{lane_to_b256, to_address, to_evm_address};
use super::error::VoucherError;
use super::wallet::Wallet;

mod typed {
    alloy::sol! {
        /// The EIP-712 struct a renter signs.
        struct Voucher {
            bytes32 laneId;
            uint128 cumulative;
        }
    }
}

/// The EIP-712 type string of a voucher.
pub const VOUCHER_TYPE: &str = "Voucher(bytes32 laneId,uint128 cumulative)";
/// The EIP-712 domain name of the escrow contract.
pub const DOMAIN_NAME: &str = "OrienEscrow";
/// The EIP-712 domain version of the escrow contract.
pub const DOMAIN_VERSION: &str = "1";

/// secp256k1's group order divided by two: a signature with a larger `s` is refused.
const HALF_ORDER: U256 = U256::from_be_slice(&[
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

/// One escrow contract on one chain: the EIP-712 domain vouchers are signed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VoucherDomain {
    chain_id: u64,
    escrow: EvmAddress,
}

impl VoucherDomain {
    /// The domain of the escrow at `escrow` on chain `chain_id`.
    pub const fn new(chain_id: u64, escrow: EvmAddress) -> Self {
        Self { chain_id, escrow }
    }

    /// The chain id.
    pub const fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The escrow contract.
    pub const fn escrow(&self) -> EvmAddress {
        self.escrow
    }

    fn eip712(&self) -> Eip712Domain {
        eip712_domain! {
            name: DOMAIN_NAME,
            version: DOMAIN_VERSION,
            chain_id: self.chain_id,
            verifying_contract: to_address(self.escrow),
        }
    }

    /// The EIP-712 domain separator; equals the contract's `domainSeparator()`.
    pub fn separator(&self) -> [u8; 32] {
        self.eip712().separator().0
    }

    /// The id of the lane from `renter` to `provider` on this escrow:
    /// `keccak256(abi.encode(escrow, renter, provider))`, as the contract computes it.
    pub fn lane_id(&self, renter: EvmAddress, provider: EvmAddress) -> LaneId {
        let encoded = (
            to_address(self.escrow),
            to_address(renter),
            to_address(provider),
        )
            .abi_encode();
        LaneId::from_bytes(keccak256(encoded).0)
    }

    /// The 32-byte digest a renter signs for `(lane, cumulative)`.
    pub fn signing_hash(&self, lane: LaneId, cumulative: Usdc) -> [u8; 32] {
        self.digest(lane, cumulative).0
    }

    fn digest(&self, lane: LaneId, cumulative: Usdc) -> B256 {
        typed::Voucher {
            laneId: lane_to_b256(lane),
            cumulative: u128::from(cumulative.micros()),
        }
        .eip712_signing_hash(&self.eip712())
    }

    /// Signs a voucher for `cumulative` on `lane` with the renter's wallet.
    pub fn sign(&self, wallet: &Wallet, lane: LaneId, cumulative: Usdc) -> Voucher {
        let digest = self.digest(lane, cumulative);
        // A local in-memory key cannot fail to sign a 32-byte prehash.
        let signature = match wallet.signer().sign_hash_sync(&digest) {
            Ok(signature) => signature,
            Err(e) => unreachable!("local secp256k1 signing failed: {e}"),
        };
        // k256 signs with a normalised (low) s; the escrow and `verify` rely on it.
        debug_assert!(signature.s() <= HALF_ORDER);
        Voucher {
            lane,
            cumulative,
            signature: EvmSignature(signature.as_bytes()),
        }
    }

    /// The address that signed `voucher`, refusing malformed and high-s signatures.
    pub fn recover(&self, voucher: &Voucher) -> Result<EvmAddress, VoucherError> {
        let bytes = &voucher.signature.0;
        if bytes[64] != 27 && bytes[64] != 28 {
            return Err(VoucherError::MalformedSignature(format!(
                "v must be 27 or 28, got {}",
                bytes[64]
            )));
        }
        let signature = alloy::primitives::Signature::from_raw_array(bytes)
            .map_err(|e| VoucherError::MalformedSignature(e.to_string()))?;
        if signature.s() > HALF_ORDER {
            return Err(VoucherError::HighS);
        }
        let signer: Address = signature
            .recover_address_from_prehash(&self.digest(voucher.lane, voucher.cumulative))
            .map_err(|e| VoucherError::MalformedSignature(e.to_string()))?;
        Ok(to_evm_address(signer))
    }

    /// Checks that `voucher` is for the lane `renter → provider` and signed by `renter`:
    /// exactly the checks `settleBatch` makes on chain.
    pub fn verify(
        &self,
        voucher: &Voucher,
        renter: EvmAddress,
        provider: EvmAddress,
    ) -> Result<(), VoucherError> {
        let expected = self.lane_id(renter, provider);
        if voucher.lane != expected {
            return Err(VoucherError::WrongLane {
                expected,
                actual: voucher.lane,
            });
        }
        let signer = self.recover(voucher)?;
        if signer != renter {
            return Err(VoucherError::WrongSigner {
                signer,
                expected: renter,
            });
        }
        Ok(())
    }

    /// What a provider checks before serving more: [`verify`](Self::verify), and the amount
    /// neither below the last accepted voucher (`previous`) nor below what the renter just
    /// acknowledged (`acknowledged`).
    pub fn verify_next(
        &self,
        voucher: &Voucher,
        renter: EvmAddress,
        provider: EvmAddress,
        previous: Usdc,
        acknowledged: Usdc,
    ) -> Result<(), VoucherError> {
        self.verify(voucher, renter, provider)?;
        if voucher.cumulative < previous {
            return Err(VoucherError::Decreasing {
                previous,
                offered: voucher.cumulative,
            });
        }
        if voucher.cumulative < acknowledged {
            return Err(VoucherError::Insufficient {
                expected: acknowledged,
                offered: voucher.cumulative,
            });
        }
        Ok(())
    }
}

/// The EIP-712 type hash `keccak256("Voucher(bytes32 laneId,uint128 cumulative)")`.
pub fn voucher_type_hash() -> [u8; 32] {
    keccak256(VOUCHER_TYPE.as_bytes()).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> VoucherDomain {
        VoucherDomain::new(31337, EvmAddress::from_bytes([0x11; 20]))
    }

    /// Flips a low-s signature to its malleable twin `(r, n − s, v ^ 1)`.
    fn high_s_twin(voucher: &Voucher) -> Voucher {
        let signature = alloy::primitives::Signature::from_raw_array(&voucher.signature.0).unwrap();
        let order = HALF_ORDER * U256::from(2) + U256::from(1);
        let twin =
            alloy::primitives::Signature::new(signature.r(), order - signature.s(), !signature.v());
        Voucher {
            signature: EvmSignature(twin.as_bytes()),
            ..*voucher
        }
    }

    #[test]
    fn type_hash_is_the_solidity_type_string_hash() {
        assert_eq!(
            hex::encode(voucher_type_hash()),
            hex::encode(typed::Voucher::eip712_type_hash(&typed::Voucher {
                laneId: B256::ZERO,
                cumulative: 0,
            }))
        );
    }

    #[test]
    fn signed_voucher_verifies_for_its_lane_and_renter() {
        let (renter, provider) = (Wallet::generate(), Wallet::generate());
        let lane = domain().lane_id(renter.address(), provider.address());
        let voucher = domain().sign(&renter, lane, Usdc::from_micros(1_234));
        domain()
            .verify(&voucher, renter.address(), provider.address())
            .unwrap();
        assert_eq!(domain().recover(&voucher).unwrap(), renter.address());
    }

    #[test]
    fn tampered_amount_is_rejected() {
        let (renter, provider) = (Wallet::generate(), Wallet::generate());
        let lane = domain().lane_id(renter.address(), provider.address());
        let mut voucher = domain().sign(&renter, lane, Usdc::from_micros(1_000));
        voucher.cumulative = Usdc::from_micros(1_001);
        assert!(matches!(
            domain().verify(&voucher, renter.address(), provider.address()),
            Err(VoucherError::WrongSigner { .. })
        ));
    }

    #[test]
    fn voucher_for_another_lane_or_domain_is_rejected() {
        let (renter, provider, other) =
            (Wallet::generate(), Wallet::generate(), Wallet::generate());
        let lane = domain().lane_id(renter.address(), other.address());
        let voucher = domain().sign(&renter, lane, Usdc::from_micros(5));
        assert!(matches!(
            domain().verify(&voucher, renter.address(), provider.address()),
            Err(VoucherError::WrongLane { .. })
        ));
        let other_chain = VoucherDomain::new(1, domain().escrow());
        let lane = other_chain.lane_id(renter.address(), provider.address());
        let voucher = other_chain.sign(&renter, lane, Usdc::from_micros(5));
        assert!(
            domain()
                .verify(&voucher, renter.address(), provider.address())
                .is_err()
        );
    }

    #[test]
    fn high_s_twin_is_rejected() {
        let (renter, provider) = (Wallet::generate(), Wallet::generate());
        let lane = domain().lane_id(renter.address(), provider.address());
        let voucher = domain().sign(&renter, lane, Usdc::from_micros(77));
        assert_eq!(
            domain().verify(&high_s_twin(&voucher), renter.address(), provider.address()),
            Err(VoucherError::HighS)
        );
    }

    #[test]
    fn decreasing_and_short_vouchers_are_rejected() {
        let (renter, provider) = (Wallet::generate(), Wallet::generate());
        let d = domain();
        let lane = d.lane_id(renter.address(), provider.address());
        let voucher = d.sign(&renter, lane, Usdc::from_micros(100));
        let (r, p) = (renter.address(), provider.address());
        let micros = Usdc::from_micros;
        d.verify_next(&voucher, r, p, micros(100), micros(100))
            .unwrap();
        assert!(matches!(
            d.verify_next(&voucher, r, p, micros(101), micros(100)),
            Err(VoucherError::Decreasing { .. })
        ));
        assert!(matches!(
            d.verify_next(&voucher, r, p, micros(50), micros(120)),
            Err(VoucherError::Insufficient { .. })
        ));
    }
}
