//! Conversions between ORIEN's protocol types and alloy's primitives.

use alloy::primitives::{Address, B256};
use orien_protocol::{EvmAddress, LaneId, Usdc};

use super::error::ChainError;

/// An alloy address as ORIEN's [`EvmAddress`].
pub(crate) fn to_evm_address(address: Address) -> EvmAddress {
    EvmAddress::from_bytes(address.into_array())
}

/// ORIEN's [`EvmAddress`] as an alloy address.
pub(crate) fn to_address(address: EvmAddress) -> Address {
    Address::from(*address.as_bytes())
}

/// A lane id as the contract's `bytes32`.
pub(crate) fn lane_to_b256(lane: LaneId) -> B256 {
    B256::from(*lane.as_bytes())
}

/// The contract's `bytes32` as a lane id.
pub(crate) fn b256_to_lane(word: B256) -> LaneId {
    LaneId::from_bytes(word.0)
}

/// A contract `uint128` amount as [`Usdc`]; the escrow never holds more than `u64` micro-USDC
/// of a lane that ORIEN funded, so a larger value is a foreign or corrupt lane.
pub(crate) fn usdc_from_u128(amount: u128) -> Result<Usdc, ChainError> {
    u64::try_from(amount)
        .map(Usdc::from_micros)
        .map_err(|_| ChainError::AmountOutOfRange(format!("{amount} micro-USDC")))
}
