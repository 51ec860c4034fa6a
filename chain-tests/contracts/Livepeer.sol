// SPDX-License-Identifier: MIT
// Contracts for the node's chain tests: a TicketBroker with the ABI, checks, check order and
// revert strings of the one deployed on Arbitrum One, and a Controller, RoundsManager,
// BondingManager and Minter with just what ticket redemption, discovery and the reward call
// need. Rounds advance with blocks.
pragma solidity ^0.8.20;

contract Controller {
    address public owner;
    bool public paused;
    mapping(bytes32 => address) private registry;

    constructor() {
        owner = msg.sender;
    }

    function setContractInfo(bytes32 _id, address _addr) external {
        require(msg.sender == owner, "caller must be Controller owner");
        registry[_id] = _addr;
    }

    function getContract(bytes32 _id) external view returns (address) {
        return registry[_id];
    }

    function setPaused(bool _paused) external {
        require(msg.sender == owner, "caller must be Controller owner");
        paused = _paused;
    }
}

contract RoundsManager {
    uint256 public roundLength;
    uint256 public lastInitializedRound;
    mapping(uint256 => bytes32) private hashes;

    event NewRound(uint256 indexed round, bytes32 blockHash);

    constructor(uint256 _roundLength) {
        roundLength = _roundLength;
    }

    function blockNum() public view returns (uint256) {
        return block.number;
    }

    function currentRound() public view returns (uint256) {
        return block.number / roundLength;
    }

    function currentRoundStartBlock() external view returns (uint256) {
        return currentRound() * roundLength;
    }

    function currentRoundInitialized() public view returns (bool) {
        return lastInitializedRound == currentRound();
    }

    function initializeRound() external {
        uint256 round = currentRound();
        require(lastInitializedRound < round || (round == 0 && hashes[0] == bytes32(0)), "round already initialized");
        lastInitializedRound = round;
        bytes32 h = blockhash(block.number - 1);
        hashes[round] = h;
        emit NewRound(round, h);
    }

    function blockHashForRound(uint256 _round) external view returns (bytes32) {
        return hashes[_round];
    }
}

contract Minter {
    address public owner;
    uint256 public currentMintableTokens;

    constructor() {
        owner = msg.sender;
    }

    function setCurrentMintableTokens(uint256 _amount) external {
        require(msg.sender == owner, "caller must be owner");
        currentMintableTokens = _amount;
    }
}

contract BondingManager {
    address public owner;
    Controller public controller;
    address public ticketBroker;
    mapping(address => bool) public registered;
    mapping(address => uint256) public fees;
    mapping(address => uint256) public transcoderTotalStake;
    mapping(address => uint256) internal lastRewardRound;
    uint256 public poolSize;
    uint256 public getTranscoderPoolMaxSize = 100;
    // Whether the last reward call's hints named the caller's neighbours after the update:
    // the deployed contract accepts any hints (it walks from them), so tests read this to see
    // that the node computed them right.
    bool public lastRewardHintsExact;

    event Reward(address indexed transcoder, uint256 amount);

    constructor(Controller _controller) {
        owner = msg.sender;
        controller = _controller;
    }

    function setTicketBroker(address _broker) external {
        require(msg.sender == owner, "caller must be owner");
        ticketBroker = _broker;
    }

    // The transcoder pool sorted by stake, largest first (equal stakes keep their order, as
    // the deployed SortedDoublyLL inserts after its equals), walked as the deployed
    // contract's linked list is walked (first, then next until the zero address).
    address[] internal pool;
    mapping(address => uint256) internal poolIndex;

    function register(address _transcoder) external {
        require(msg.sender == owner, "caller must be owner");
        if (!registered[_transcoder]) {
            registered[_transcoder] = true;
            poolSize += 1;
            pool.push(_transcoder);
            reposition(_transcoder, pool.length - 1);
        }
    }

    function setStake(address _transcoder, uint256 _stake) external {
        require(msg.sender == owner, "caller must be owner");
        require(registered[_transcoder], "transcoder must be registered");
        transcoderTotalStake[_transcoder] = _stake;
        reposition(_transcoder, poolIndex[_transcoder] - 1);
    }

    function setPoolMaxSize(uint256 _size) external {
        require(msg.sender == owner, "caller must be owner");
        getTranscoderPoolMaxSize = _size;
    }

    // Moves the member at `_at` to its place by stake.
    function reposition(address _transcoder, uint256 _at) internal {
        for (uint256 i = _at; i + 1 < pool.length; i++) {
            pool[i] = pool[i + 1];
        }
        pool.pop();
        uint256 stake = transcoderTotalStake[_transcoder];
        uint256 place = pool.length;
        for (uint256 i = 0; i < pool.length; i++) {
            if (transcoderTotalStake[pool[i]] < stake) {
                place = i;
                break;
            }
        }
        pool.push(_transcoder);
        for (uint256 i = pool.length - 1; i > place; i--) {
            pool[i] = pool[i - 1];
        }
        pool[place] = _transcoder;
        for (uint256 i = 0; i < pool.length; i++) {
            poolIndex[pool[i]] = i + 1;
        }
    }

    function getFirstTranscoderInPool() external view returns (address) {
        return pool.length == 0 ? address(0) : pool[0];
    }

    function getNextTranscoderInPool(address _transcoder) public view returns (address) {
        uint256 i = poolIndex[_transcoder];
        return i == 0 || i >= pool.length ? address(0) : pool[i];
    }

    function getPrevTranscoderInPool(address _transcoder) public view returns (address) {
        uint256 i = poolIndex[_transcoder];
        return i <= 1 ? address(0) : pool[i - 2];
    }

    // A registered transcoder outside the active set (tests switch it in and out).
    mapping(address => bool) public inactive;

    function setActive(address _transcoder, bool _active) external {
        require(msg.sender == owner, "caller must be owner");
        inactive[_transcoder] = !_active;
    }

    function isActiveTranscoder(address _transcoder) public view returns (bool) {
        return registered[_transcoder] && !inactive[_transcoder];
    }

    function getTranscoderPoolSize() external view returns (uint256) {
        return poolSize;
    }

    function getTotalBonded() public view returns (uint256 total) {
        for (uint256 i = 0; i < pool.length; i++) {
            if (isActiveTranscoder(pool[i])) {
                total += transcoderTotalStake[pool[i]];
            }
        }
    }

    function getTranscoder(address _transcoder)
        external
        view
        returns (
            uint256 lastRewardRound_,
            uint256 rewardCut,
            uint256 feeShare,
            uint256 lastActiveStakeUpdateRound,
            uint256 activationRound,
            uint256 deactivationRound,
            uint256 activeCumulativeRewards,
            uint256 cumulativeRewards,
            uint256 cumulativeFees,
            uint256 lastFeeRound
        )
    {
        lastRewardRound_ = lastRewardRound[_transcoder];
        lastActiveStakeUpdateRound = roundsManager().currentRound();
        deactivationRound = isActiveTranscoder(_transcoder) ? type(uint256).max : 0;
        cumulativeFees = fees[_transcoder];
        (rewardCut, feeShare, activationRound, activeCumulativeRewards, cumulativeRewards, lastFeeRound) =
            (0, 0, 0, 0, 0, 0);
    }

    function getTranscoderEarningsPoolForRound(address _transcoder, uint256)
        external
        view
        returns (
            uint256 totalStake,
            uint256 transcoderRewardCut,
            uint256 transcoderFeeShare,
            uint256 cumulativeRewardFactor,
            uint256 cumulativeFeeFactor
        )
    {
        totalStake = transcoderTotalStake[_transcoder];
        (transcoderRewardCut, transcoderFeeShare, cumulativeRewardFactor, cumulativeFeeFactor) = (0, 0, 0, 0);
    }

    function roundsManager() internal view returns (RoundsManager) {
        return RoundsManager(controller.getContract(keccak256("RoundsManager")));
    }

    function reward() external {
        rewardWithHint(address(0), address(0));
    }

    // The deployed contract's checks, in its order and with its revert strings.
    function rewardWithHint(address _newPosPrev, address _newPosNext) public {
        require(!controller.paused(), "system is paused");
        require(roundsManager().currentRoundInitialized(), "current round is not initialized");
        uint256 round = roundsManager().currentRound();
        require(isActiveTranscoder(msg.sender), "caller must be an active transcoder");
        require(lastRewardRound[msg.sender] != round, "caller has already called reward for the current round");
        uint256 total = getTotalBonded();
        uint256 mintable = Minter(controller.getContract(keccak256("Minter"))).currentMintableTokens();
        uint256 amount = total == 0 ? 0 : (mintable * transcoderTotalStake[msg.sender]) / total;
        transcoderTotalStake[msg.sender] += amount;
        reposition(msg.sender, poolIndex[msg.sender] - 1);
        lastRewardHintsExact =
            getPrevTranscoderInPool(msg.sender) == _newPosPrev && getNextTranscoderInPool(msg.sender) == _newPosNext;
        lastRewardRound[msg.sender] = round;
        emit Reward(msg.sender, amount);
    }

    function updateTranscoderWithFees(address _transcoder, uint256 _fees, uint256) external {
        require(msg.sender == ticketBroker, "caller must be TicketBroker");
        require(registered[_transcoder], "transcoder must be registered");
        fees[_transcoder] += _fees;
    }
}

contract TicketBroker {
    struct Ticket {
        address recipient;
        address sender;
        uint256 faceValue;
        uint256 winProb;
        uint256 senderNonce;
        bytes32 recipientRandHash;
        bytes auxData;
    }

    struct Sender {
        uint256 deposit;
        uint256 withdrawRound;
    }

    struct ReserveInfo {
        uint256 fundsRemaining;
        uint256 claimedInCurrentRound;
    }

    struct Reserve {
        uint256 funds;
        mapping(uint256 => uint256) claimedForRound;
        mapping(uint256 => mapping(address => uint256)) claimedByAddressForRound;
    }

    Controller public controller;
    uint256 public unlockPeriod;
    uint256 public ticketValidityPeriod;
    mapping(address => Sender) internal senders;
    mapping(address => Reserve) internal reserves;
    mapping(bytes32 => bool) public usedTickets;

    event DepositFunded(address indexed sender, uint256 amount);
    event ReserveFunded(address indexed reserveHolder, uint256 amount);
    event ReserveClaimed(address indexed reserveHolder, address claimant, uint256 amount);
    event WinningTicketRedeemed(
        address indexed sender,
        address indexed recipient,
        uint256 faceValue,
        uint256 winProb,
        uint256 senderNonce,
        uint256 recipientRand,
        bytes auxData
    );
    event WinningTicketTransfer(address indexed sender, address indexed recipient, uint256 amount);
    event Unlock(address indexed sender, uint256 startRound, uint256 endRound);
    event UnlockCancelled(address indexed sender);
    event Withdrawal(address indexed sender, uint256 deposit, uint256 reserve);

    constructor(Controller _controller, uint256 _unlockPeriod, uint256 _ticketValidityPeriod) {
        controller = _controller;
        unlockPeriod = _unlockPeriod;
        ticketValidityPeriod = _ticketValidityPeriod;
    }

    modifier whenSystemNotPaused() {
        require(!controller.paused(), "system is paused");
        _;
    }

    modifier currentRoundInitialized() {
        require(roundsManager().currentRoundInitialized(), "current round is not initialized");
        _;
    }

    function roundsManager() internal view returns (RoundsManager) {
        return RoundsManager(controller.getContract(keccak256("RoundsManager")));
    }

    function bondingManager() internal view returns (BondingManager) {
        return BondingManager(controller.getContract(keccak256("BondingManager")));
    }

    // ---- funding ----

    function fundDeposit() external payable whenSystemNotPaused {
        processFunding(msg.value);
        senders[msg.sender].deposit += msg.value;
        emit DepositFunded(msg.sender, msg.value);
    }

    function fundReserve() external payable whenSystemNotPaused {
        processFunding(msg.value);
        reserves[msg.sender].funds += msg.value;
        emit ReserveFunded(msg.sender, msg.value);
    }

    function fundDepositAndReserve(uint256 _depositAmount, uint256 _reserveAmount) external payable whenSystemNotPaused {
        fundDepositAndReserveFor(msg.sender, _depositAmount, _reserveAmount);
    }

    function fundDepositAndReserveFor(address _addr, uint256 _depositAmount, uint256 _reserveAmount)
        public
        payable
        whenSystemNotPaused
    {
        require(
            msg.value == _depositAmount + _reserveAmount,
            "msg.value does not equal sum of deposit amount and reserve amount"
        );
        if (_addr == msg.sender && isUnlockInProgress(_addr)) {
            senders[_addr].withdrawRound = 0;
            emit UnlockCancelled(_addr);
        }
        senders[_addr].deposit += _depositAmount;
        emit DepositFunded(_addr, _depositAmount);
        reserves[_addr].funds += _reserveAmount;
        emit ReserveFunded(_addr, _reserveAmount);
    }

    function processFunding(uint256) internal {
        if (isUnlockInProgress(msg.sender)) {
            senders[msg.sender].withdrawRound = 0;
            emit UnlockCancelled(msg.sender);
        }
    }

    // ---- redemption ----

    function redeemWinningTicket(Ticket memory _ticket, bytes memory _sig, uint256 _recipientRand)
        public
        whenSystemNotPaused
        currentRoundInitialized
    {
        bytes32 ticketHash = getTicketHash(_ticket);
        requireValidWinningTicket(_ticket, ticketHash, _sig, _recipientRand);

        Sender storage sender = senders[_ticket.sender];
        require(isLocked(sender), "sender is unlocked");
        require(sender.deposit > 0 || reserves[_ticket.sender].funds > 0, "sender deposit and reserve are zero");

        usedTickets[ticketHash] = true;

        uint256 amountToTransfer;
        if (_ticket.faceValue > sender.deposit) {
            amountToTransfer =
                sender.deposit +
                claimFromReserve(_ticket.sender, _ticket.recipient, _ticket.faceValue - sender.deposit);
            sender.deposit = 0;
        } else {
            amountToTransfer = _ticket.faceValue;
            sender.deposit -= _ticket.faceValue;
        }

        if (amountToTransfer > 0) {
            bondingManager().updateTranscoderWithFees(_ticket.recipient, amountToTransfer, getCreationRound(_ticket.auxData));
            emit WinningTicketTransfer(_ticket.sender, _ticket.recipient, amountToTransfer);
        }

        emit WinningTicketRedeemed(
            _ticket.sender,
            _ticket.recipient,
            _ticket.faceValue,
            _ticket.winProb,
            _ticket.senderNonce,
            _recipientRand,
            _ticket.auxData
        );
    }

    function requireValidWinningTicket(
        Ticket memory _ticket,
        bytes32 _ticketHash,
        bytes memory _sig,
        uint256 _recipientRand
    ) internal view {
        require(_ticket.recipient != address(0), "ticket recipient is null address");
        require(_ticket.sender != address(0), "ticket sender is null address");
        requireValidTicketAuxData(_ticket.auxData);
        require(keccak256(abi.encodePacked(_recipientRand)) == _ticket.recipientRandHash, "recipientRand does not match recipientRandHash");
        require(!usedTickets[_ticketHash], "ticket is used");
        require(isValidTicketSig(_ticket.sender, _sig, _ticketHash), "invalid signature over ticket hash");
        require(isWinningTicket(_sig, _recipientRand, _ticket.winProb), "ticket did not win");
    }

    function requireValidTicketAuxData(bytes memory _auxData) internal view {
        require(_auxData.length == 64, "invalid length for ticket auxData: must be 64 bytes");
        uint256 creationRound;
        bytes32 creationRoundBlockHash;
        assembly {
            creationRound := mload(add(_auxData, 32))
            creationRoundBlockHash := mload(add(_auxData, 64))
        }
        bytes32 blockHash = roundsManager().blockHashForRound(creationRound);
        require(blockHash != bytes32(0), "ticket creationRound does not have a block hash");
        require(creationRoundBlockHash == blockHash, "ticket creationRoundBlockHash invalid for creationRound");
        require(creationRound + ticketValidityPeriod > roundsManager().currentRound(), "ticket is expired");
    }

    function getCreationRound(bytes memory _auxData) internal pure returns (uint256 creationRound) {
        assembly {
            creationRound := mload(add(_auxData, 32))
        }
    }

    function isValidTicketSig(address _sender, bytes memory _sig, bytes32 _ticketHash) internal pure returns (bool) {
        require(_sig.length == 65, "INVALID_SIGNATURE_LENGTH");
        address signer = recover(toEthSignedMessageHash(_ticketHash), _sig);
        return signer != address(0) && _sender == signer;
    }

    // OpenZeppelin 4.4.1 ECDSA.recover for a 65-byte signature, with its revert strings.
    function recover(bytes32 _hash, bytes memory _sig) internal pure returns (address) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(_sig, 0x20))
            s := mload(add(_sig, 0x40))
            v := byte(0, mload(add(_sig, 0x60)))
        }
        if (uint256(s) > 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0) {
            revert("ECDSA: invalid signature 's' value");
        }
        if (v != 27 && v != 28) {
            revert("ECDSA: invalid signature 'v' value");
        }
        address signer = ecrecover(_hash, v, r, s);
        if (signer == address(0)) {
            revert("ECDSA: invalid signature");
        }
        return signer;
    }

    function toEthSignedMessageHash(bytes32 _hash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", _hash));
    }

    function isWinningTicket(bytes memory _sig, uint256 _recipientRand, uint256 _winProb) internal pure returns (bool) {
        return uint256(keccak256(abi.encodePacked(_sig, _recipientRand))) < _winProb;
    }

    function getTicketHash(Ticket memory _ticket) public pure returns (bytes32) {
        return keccak256(
            abi.encodePacked(
                _ticket.recipient,
                _ticket.sender,
                _ticket.faceValue,
                _ticket.winProb,
                _ticket.senderNonce,
                _ticket.recipientRandHash,
                _ticket.auxData
            )
        );
    }

    // ---- reserve ----

    function claimableReserve(address _reserveHolder, address _claimant) public view returns (uint256) {
        Reserve storage reserve = reserves[_reserveHolder];
        uint256 currentRound = roundsManager().currentRound();
        if (!bondingManager().isActiveTranscoder(_claimant)) {
            return 0;
        }
        uint256 poolSize = bondingManager().getTranscoderPoolSize();
        if (poolSize == 0) {
            return 0;
        }
        uint256 allocation = (reserve.funds + reserve.claimedForRound[currentRound]) / poolSize;
        uint256 claimed = reserve.claimedByAddressForRound[currentRound][_claimant];
        return claimed >= allocation ? 0 : allocation - claimed;
    }

    function claimedReserve(address _reserveHolder, address _claimant) external view returns (uint256) {
        return reserves[_reserveHolder].claimedByAddressForRound[roundsManager().currentRound()][_claimant];
    }

    function claimFromReserve(address _reserveHolder, address _claimant, uint256 _amount) internal returns (uint256) {
        uint256 claimable = claimableReserve(_reserveHolder, _claimant);
        uint256 claimAmount = _amount > claimable ? claimable : _amount;
        if (claimAmount == 0) {
            return 0;
        }
        Reserve storage reserve = reserves[_reserveHolder];
        uint256 currentRound = roundsManager().currentRound();
        reserve.funds -= claimAmount;
        reserve.claimedForRound[currentRound] += claimAmount;
        reserve.claimedByAddressForRound[currentRound][_claimant] += claimAmount;
        emit ReserveClaimed(_reserveHolder, _claimant, claimAmount);
        return claimAmount;
    }

    function getReserveInfo(address _reserveHolder) public view returns (ReserveInfo memory info) {
        info.fundsRemaining = reserves[_reserveHolder].funds;
        info.claimedInCurrentRound = reserves[_reserveHolder].claimedForRound[roundsManager().currentRound()];
    }

    // ---- unlock / withdraw ----

    function unlock() external whenSystemNotPaused currentRoundInitialized {
        Sender storage sender = senders[msg.sender];
        require(sender.deposit > 0 || reserves[msg.sender].funds > 0, "sender deposit and reserve are zero");
        require(!isUnlockInProgress(msg.sender), "unlock already initiated");
        uint256 currentRound = roundsManager().currentRound();
        sender.withdrawRound = currentRound + unlockPeriod;
        emit Unlock(msg.sender, currentRound, sender.withdrawRound);
    }

    function cancelUnlock() external whenSystemNotPaused {
        require(isUnlockInProgress(msg.sender), "no unlock request in progress");
        senders[msg.sender].withdrawRound = 0;
        emit UnlockCancelled(msg.sender);
    }

    function withdraw() external whenSystemNotPaused currentRoundInitialized {
        Sender storage sender = senders[msg.sender];
        uint256 deposit = sender.deposit;
        uint256 reserve = reserves[msg.sender].funds;
        require(deposit > 0 || reserve > 0, "sender deposit and reserve are zero");
        require(!isLocked(sender), "account is locked");
        sender.deposit = 0;
        reserves[msg.sender].funds = 0;
        emit Withdrawal(msg.sender, deposit, reserve);
        (bool ok, ) = payable(msg.sender).call{value: deposit + reserve}("");
        require(ok, "withdraw transfer failed");
    }

    function isUnlockInProgress(address _sender) public view returns (bool) {
        return senders[_sender].withdrawRound > 0;
    }

    function isLocked(Sender storage _sender) internal view returns (bool) {
        return _sender.withdrawRound == 0 || roundsManager().currentRound() < _sender.withdrawRound;
    }

    function getSenderInfo(address _sender) public view returns (Sender memory sender, ReserveInfo memory reserve) {
        sender = senders[_sender];
        reserve = getReserveInfo(_sender);
    }
}

// The service URIs orchestrators publish, as the deployed ServiceRegistry keeps them.
contract ServiceRegistry {
    mapping(address => string) internal uris;

    event ServiceURIUpdate(address indexed addr, string serviceURI);

    function setServiceURI(string calldata _serviceURI) external {
        uris[msg.sender] = _serviceURI;
        emit ServiceURIUpdate(msg.sender, _serviceURI);
    }

    function getServiceURI(address _addr) external view returns (string memory) {
        return uris[_addr];
    }
}
