// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title OrienEscrow — USDC payment lanes between ORIEN renters and providers.
/// @notice A renter funds one lane per provider and reuses it across sessions. For every
/// acknowledged usage receipt the renter signs an EIP-712 voucher for the lane's
/// *cumulative* amount; the provider redeems the latest voucher of many lanes in one
/// `settleBatch`. Each payout is split exactly like `orien_protocol::Split::delta`:
/// fee = floor(t·7/100), reserve = floor(t·3/100), provider = t − fee − reserve, all of the
/// cumulative total t, credited as differences to internal balances that their owners
/// withdraw (pull payments). A renter takes back unspent funds after a thaw window that
/// starts when it requests the close, so the provider always has time to settle.
/// @dev The token must be a plain ERC-20 (no fee on transfer, no rebasing), as USDC is.
contract OrienEscrow is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice One renter → provider lane. `deposit` and `settled` share one storage slot,
    /// so settling a voucher reads and writes a single slot.
    struct Lane {
        /// Total the renter has put in (never decreases except by `finishClose`).
        uint128 deposit;
        /// Cumulative amount paid out of the lane; ≤ deposit.
        uint128 settled;
    }

    /// @notice A provider's earnings.
    struct Earnings {
        /// Credited and not yet withdrawn.
        uint128 balance;
        /// How many of the provider's lanes have `settled ≡ 99 (mod 100)`: a later 1 µUSDC
        /// step of such a lane lowers the provider's cumulative share by one (split(99) gives
        /// the provider 91, split(100) gives it 90), so that much is held back from withdrawal.
        uint128 atRisk;
    }

    /// @notice A voucher as submitted for settlement: EIP-712 `Voucher(laneId, cumulative)`
    /// signed by the lane's renter, as (v, r, s) with s in the lower half of the curve order.
    struct SignedVoucher {
        bytes32 laneId;
        uint128 cumulative;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice Why `settleBatch` skipped a voucher (skipped vouchers never revert the batch).
    enum SkipReason {
        /// Malformed or high-s signature, or the lane is not (signer → caller).
        InvalidVoucher,
        /// The voucher's cumulative amount is not above what the lane already settled.
        Stale,
        /// The lane's deposit is fully settled; nothing left to pay.
        Exhausted
    }

    /// @notice `keccak256("Voucher(bytes32 laneId,uint128 cumulative)")`.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 laneId,uint128 cumulative)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("OrienEscrow");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies and refused.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    /// @notice Upper bound of the thaw window accepted at deploy.
    uint64 public constant MAX_THAW = 30 days;

    /// @notice The escrowed token (USDC, 6 decimals).
    IERC20 public immutable token;
    /// @notice Receives the 7 % protocol fee.
    address public immutable treasury;
    /// @notice Receives the 3 % reserve.
    address public immutable reserve;
    /// @notice Seconds between a renter's close request and its refund.
    uint64 public immutable thawPeriod;
    uint256 private immutable deployChainId;
    bytes32 private immutable deployDomainSeparator;

    mapping(bytes32 laneId => Lane) private lanes;
    /// @dev Kept apart from `lanes` so settlement touches one slot per lane.
    mapping(bytes32 laneId => uint64) private closeRequestedAt;
    mapping(address provider => Earnings) private earnings;
    /// @dev Fee and reserve balances share one slot: one write per batch.
    uint128 private feeBalance;
    uint128 private reserveBalance;

    /// @notice A lane received its first deposit.
    event LaneOpened(bytes32 indexed laneId, address indexed renter, address indexed provider);
    /// @notice A lane was funded or topped up.
    event LaneFunded(bytes32 indexed laneId, uint128 amount, uint128 deposit);
    /// @notice The renter asked for its unspent funds back; the provider can settle until `thawEndsAt`.
    event LaneCloseRequested(bytes32 indexed laneId, uint64 thawEndsAt);
    /// @notice A top-up cancelled a pending close request.
    event LaneCloseCancelled(bytes32 indexed laneId);
    /// @notice The renter took back `refund`; the lane stays usable for a later top-up.
    event LaneClosed(bytes32 indexed laneId, uint128 refund);
    /// @notice A voucher was redeemed: the lane's settled total is now `settled` (`paid` more than before).
    event VoucherSettled(bytes32 indexed laneId, uint128 settled, uint128 paid);
    /// @notice A voucher in a batch was skipped and paid nothing.
    event VoucherSkipped(bytes32 indexed laneId, uint128 cumulative, SkipReason reason);
    /// @notice Totals of one `settleBatch` call. `providerCredit` can be negative by at
    /// most the number of lanes that stepped by 1 µUSDC onto a multiple of 100.
    event BatchSettled(
        address indexed provider, uint256 settledCount, int256 providerCredit, uint256 fee, uint256 reserve
    );
    /// @notice A provider withdrew earnings.
    event EarningsWithdrawn(address indexed provider, uint128 amount);
    /// @notice The treasury withdrew protocol fees.
    event FeesWithdrawn(address indexed treasury, uint128 amount);
    /// @notice The reserve withdrew its share.
    event ReserveWithdrawn(address indexed reserve, uint128 amount);

    error ZeroAddress();
    error InvalidThawPeriod(uint64 thawPeriod);
    error ZeroAmount();
    error SelfLane();
    error DepositOverflow();
    error UnknownLane(bytes32 laneId);
    error CloseAlreadyRequested(bytes32 laneId);
    error CloseNotRequested(bytes32 laneId);
    error ThawNotOver(bytes32 laneId, uint64 thawEndsAt);
    error NotPermitted(address caller);
    error NothingToWithdraw();

    /// @param token_ The escrowed ERC-20 (USDC).
    /// @param treasury_ Owner of the 7 % fee balance.
    /// @param reserve_ Owner of the 3 % reserve balance.
    /// @param thawPeriod_ Seconds a provider has to settle after a close request (1 s … 30 days).
    constructor(IERC20 token_, address treasury_, address reserve_, uint64 thawPeriod_) {
        if (address(token_) == address(0) || treasury_ == address(0) || reserve_ == address(0)) {
            revert ZeroAddress();
        }
        if (thawPeriod_ == 0 || thawPeriod_ > MAX_THAW) revert InvalidThawPeriod(thawPeriod_);
        token = token_;
        treasury = treasury_;
        reserve = reserve_;
        thawPeriod = thawPeriod_;
        deployChainId = block.chainid;
        deployDomainSeparator = _buildDomainSeparator();
    }

    // ---------------------------------------------------------------- renter

    /// @notice Opens the lane to `provider` or tops it up with `amount`, pulled from the
    /// caller (needs an allowance). A top-up cancels a pending close request.
    function fund(address provider, uint128 amount) external nonReentrant returns (bytes32 laneId) {
        laneId = _credit(msg.sender, provider, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice `fund` with an EIP-2612 permit instead of a prior approval. A permit that
    /// was already used (for instance front-run by someone who copied it from the mempool)
    /// does not make the call fail as long as the allowance is there.
    function fundWithPermit(address provider, uint128 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
        returns (bytes32 laneId)
    {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        laneId = _credit(msg.sender, provider, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Starts the thaw window of the caller's lane to `provider`.
    function requestClose(address provider) external {
        bytes32 laneId = laneIdOf(msg.sender, provider);
        if (lanes[laneId].deposit == 0) revert UnknownLane(laneId);
        if (closeRequestedAt[laneId] != 0) revert CloseAlreadyRequested(laneId);
        uint64 nowTs = uint64(block.timestamp);
        closeRequestedAt[laneId] = nowTs;
        emit LaneCloseRequested(laneId, nowTs + thawPeriod);
    }

    /// @notice After the thaw window, pays the caller its unspent deposit. The lane keeps its
    /// settled total, so vouchers already signed never pay twice if the lane is refunded later.
    function finishClose(address provider) external nonReentrant returns (uint128 refund) {
        bytes32 laneId = laneIdOf(msg.sender, provider);
        uint64 requestedAt = closeRequestedAt[laneId];
        if (requestedAt == 0) revert CloseNotRequested(laneId);
        uint64 thawEndsAt = requestedAt + thawPeriod;
        if (block.timestamp < thawEndsAt) revert ThawNotOver(laneId, thawEndsAt);
        Lane storage l = lanes[laneId];
        refund = l.deposit - l.settled;
        l.deposit = l.settled;
        delete closeRequestedAt[laneId];
        emit LaneClosed(laneId, refund);
        if (refund != 0) token.safeTransfer(msg.sender, refund);
    }

    // ---------------------------------------------------------------- provider

    /// @notice Redeems vouchers of lanes whose provider is the caller. Each pays
    /// `min(cumulative, deposit) − settled`; invalid, stale and exhausted vouchers are skipped
    /// with a `VoucherSkipped` event so that one bad item never blocks the others.
    /// @return paid Total moved out of the lanes by this batch.
    function settleBatch(SignedVoucher[] calldata vouchers) external nonReentrant returns (uint256 paid) {
        bytes32 separator = _domainSeparator();
        uint256 fee;
        uint256 res;
        uint256 settledCount;
        int256 atRiskChange;
        uint256 count = vouchers.length;
        for (uint256 i; i < count;) {
            (uint256 delta, uint256 feeDelta, uint256 resDelta, int256 atRiskStep) =
                _settleOne(separator, vouchers[i]);
            // Sums of at most `count` uint128 values: no overflow possible.
            unchecked {
                ++i;
                if (delta == 0) continue;
                paid += delta;
                fee += feeDelta;
                res += resDelta;
                atRiskChange += atRiskStep;
                ++settledCount;
            }
        }
        if (settledCount == 0) return 0;

        // The provider's credit is what the lanes paid minus fee and reserve. Each part is a
        // difference of cumulative splits, so the credit can be negative: by one per lane
        // that stepped by 1 µUSDC onto a multiple of 100 (split(99) = 91/6/2, split(100) = 90/7/3).
        int256 providerCredit = int256(paid) - int256(fee) - int256(res);
        Earnings storage mine = earnings[msg.sender];
        // Both casts revert on a negative value, and neither can be negative: the balance is
        // the sum of the provider's cumulative shares (never negative) minus withdrawals,
        // which never touch the `atRisk` part that a 99 → 100 step can take back.
        uint256 balance = SafeCast.toUint256(int256(uint256(mine.balance)) + providerCredit);
        uint256 atRisk = SafeCast.toUint256(int256(uint256(mine.atRisk)) + atRiskChange);
        assert(atRisk <= balance);
        mine.balance = uint128(balance);
        mine.atRisk = uint128(atRisk);
        feeBalance += uint128(fee);
        reserveBalance += uint128(res);
        emit BatchSettled(msg.sender, settledCount, providerCredit, fee, res);
    }

    /// @notice Pays the caller its withdrawable earnings (balance minus the part at risk).
    function withdrawEarnings() external nonReentrant returns (uint128 amount) {
        Earnings storage mine = earnings[msg.sender];
        amount = mine.balance - mine.atRisk;
        if (amount == 0) revert NothingToWithdraw();
        mine.balance -= amount;
        emit EarningsWithdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- treasury and reserve

    /// @notice Pays the treasury the accumulated protocol fees. Only the treasury may call.
    function withdrawFees() external nonReentrant returns (uint128 amount) {
        if (msg.sender != treasury) revert NotPermitted(msg.sender);
        amount = feeBalance;
        if (amount == 0) revert NothingToWithdraw();
        feeBalance = 0;
        emit FeesWithdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Pays the reserve its accumulated share. Only the reserve may call.
    function withdrawReserve() external nonReentrant returns (uint128 amount) {
        if (msg.sender != reserve) revert NotPermitted(msg.sender);
        amount = reserveBalance;
        if (amount == 0) revert NothingToWithdraw();
        reserveBalance = 0;
        emit ReserveWithdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The id of the lane from `renter` to `provider` on this contract.
    function laneIdOf(address renter, address provider) public view returns (bytes32 laneId) {
        // keccak256(abi.encode(address(this), renter, provider)), hashed in scratch memory
        // past the free memory pointer so that a batch does not grow memory per voucher.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, address())
            mstore(add(ptr, 0x20), and(renter, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x40), and(provider, 0xffffffffffffffffffffffffffffffffffffffff))
            laneId := keccak256(ptr, 0x60)
        }
    }

    /// @notice A lane's deposit, settled total and close request time (0 if none).
    function lane(bytes32 laneId) external view returns (uint128 deposit, uint128 settled, uint64 closeRequested) {
        Lane storage l = lanes[laneId];
        return (l.deposit, l.settled, closeRequestedAt[laneId]);
    }

    /// @notice A provider's credited balance and the part of it that can be withdrawn now.
    function earningsOf(address provider) external view returns (uint128 balance, uint128 withdrawable) {
        Earnings storage e = earnings[provider];
        return (e.balance, e.balance - e.atRisk);
    }

    /// @notice Fee and reserve balances not yet withdrawn.
    function protocolBalances() external view returns (uint128 fees, uint128 reserves) {
        return (feeBalance, reserveBalance);
    }

    /// @notice The split of a cumulative total, exactly as `orien_protocol::Split::of`.
    function splitOf(uint128 total) external pure returns (uint128 provider, uint128 fee, uint128 res) {
        fee = uint128(_fee(total));
        res = uint128(_reserve(total));
        provider = total - fee - res;
    }

    /// @notice The EIP-712 domain separator (name "OrienEscrow", version "1", this chain, this contract).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @notice The EIP-712 digest a renter signs for `Voucher(laneId, cumulative)`.
    function voucherDigest(bytes32 laneId, uint128 cumulative) external view returns (bytes32) {
        return _digest(_domainSeparator(), laneId, cumulative);
    }

    // ---------------------------------------------------------------- internals

    function _credit(address renter, address provider, uint128 amount) private returns (bytes32 laneId) {
        if (provider == address(0)) revert ZeroAddress();
        if (provider == renter) revert SelfLane();
        if (amount == 0) revert ZeroAmount();
        laneId = laneIdOf(renter, provider);
        Lane storage l = lanes[laneId];
        uint128 previous = l.deposit;
        if (previous > type(uint128).max - amount) revert DepositOverflow();
        l.deposit = previous + amount;
        if (previous == 0) emit LaneOpened(laneId, renter, provider);
        emit LaneFunded(laneId, amount, previous + amount);
        if (closeRequestedAt[laneId] != 0) {
            delete closeRequestedAt[laneId];
            emit LaneCloseCancelled(laneId);
        }
    }

    /// @dev Settles one voucher of the caller's lanes; `delta == 0` means it was skipped.
    function _settleOne(bytes32 separator, SignedVoucher calldata voucher)
        private
        returns (uint256 delta, uint256 feeDelta, uint256 resDelta, int256 atRiskStep)
    {
        bytes32 laneId = voucher.laneId;
        address renter = _recover(separator, voucher);
        if (renter == address(0) || laneIdOf(renter, msg.sender) != laneId) {
            emit VoucherSkipped(laneId, voucher.cumulative, SkipReason.InvalidVoucher);
            return (0, 0, 0, 0);
        }
        Lane storage l = lanes[laneId];
        (uint128 deposit, uint128 before) = (l.deposit, l.settled);
        uint128 target = voucher.cumulative < deposit ? voucher.cumulative : deposit;
        if (target <= before) {
            SkipReason reason = voucher.cumulative <= before ? SkipReason.Stale : SkipReason.Exhausted;
            emit VoucherSkipped(laneId, voucher.cumulative, reason);
            return (0, 0, 0, 0);
        }
        l.settled = target;
        // target > before, and both parts are monotone in the total: no underflow.
        unchecked {
            delta = target - before;
            feeDelta = _fee(target) - _fee(before);
            resDelta = _reserve(target) - _reserve(before);
            if (before % 100 == 99) --atRiskStep;
            if (target % 100 == 99) ++atRiskStep;
        }
        emit VoucherSettled(laneId, target, uint128(delta));
    }

    function _recover(bytes32 separator, SignedVoucher calldata voucher) private pure returns (address) {
        if (uint256(voucher.s) > HALF_ORDER) return address(0);
        if (voucher.v != 27 && voucher.v != 28) return address(0);
        bytes32 digest = _digest(separator, voucher.laneId, voucher.cumulative);
        // ecrecover yields address(0) for a signature that does not recover.
        return ecrecover(digest, voucher.v, voucher.r, voucher.s);
    }

    function _digest(bytes32 separator, bytes32 laneId, uint128 cumulative) private pure returns (bytes32) {
        bytes32 typeHash = VOUCHER_TYPEHASH;
        bytes32 structHash;
        // keccak256(abi.encode(VOUCHER_TYPEHASH, laneId, cumulative)) in scratch memory.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            mstore(add(ptr, 0x20), laneId)
            mstore(add(ptr, 0x40), and(cumulative, 0xffffffffffffffffffffffffffffffff))
            structHash := keccak256(ptr, 0x60)
        }
        return MessageHashUtils.toTypedDataHash(separator, structHash);
    }

    function _domainSeparator() private view returns (bytes32) {
        // Recomputed after a chain split so vouchers never verify on the other fork.
        return block.chainid == deployChainId ? deployDomainSeparator : _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _fee(uint256 total) private pure returns (uint256) {
        return total * 7 / 100;
    }

    function _reserve(uint256 total) private pure returns (uint256) {
        return total * 3 / 100;
    }
}
