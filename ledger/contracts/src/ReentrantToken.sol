// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken — a malicious ERC-20 for the escrow's reentrancy tests.
/// @notice When armed, every transfer *out of* `target` calls `target` again with the armed
/// calldata before the outer call has finished, and records whether that call succeeded.
/// The token can also act as an escrow participant itself (`execute`), so the reentrant
/// call runs with the same identity as the outer one, like a hostile contract wallet.
contract ReentrantToken is ERC20 {
    /// @notice The contract to re-enter.
    address public target;
    /// @notice Calldata of the reentrant call; empty when disarmed.
    bytes public reentryCall;
    /// @notice How many reentrant calls were attempted.
    uint256 public reentryAttempts;
    /// @notice How many reentrant calls succeeded (the escrow must keep this at zero).
    uint256 public reentrySuccesses;
    /// @notice Return data of the last failed reentrant call (the revert reason).
    bytes public lastRevert;
    bool private inReentry;

    constructor() ERC20("Reentrant Token", "EVIL") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` to `to` (test faucet).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Re-enters `target_` with `data` on the next transfers out of `target_`.
    function arm(address target_, bytes calldata data) external {
        target = target_;
        reentryCall = data;
    }

    /// @notice Calls `to` with `data` as this contract, reverting with the callee's reason.
    function execute(address to, bytes calldata data) external returns (bytes memory result) {
        (bool ok, bytes memory ret) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from == target && reentryCall.length != 0 && !inReentry) {
            inReentry = true;
            ++reentryAttempts;
            (bool ok, bytes memory ret) = target.call(reentryCall);
            if (ok) ++reentrySuccesses;
            else lastRevert = ret;
            inReentry = false;
        }
    }
}
