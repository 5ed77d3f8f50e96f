// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title MockUSDC — a 6-decimal ERC-20 with EIP-2612 permit, for tests only.
/// @notice Anyone can mint. Never deploy it where its tokens could be taken for money.
contract MockUSDC is ERC20, ERC20Permit {
    constructor() ERC20("Mock USD Coin", "USDC") ERC20Permit("Mock USD Coin") {}

    /// @notice USDC has 6 decimals: one unit is one micro-USDC.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` micro-USDC to `to` (test faucet).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
