package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// On-chain payouts (withdrawals). Every step is a command applied before its side effect:
//
//	PAYOUT_REQUEST   a client asks; amount + the fee it is charged are held on its account
//	                 (a pending transfer to PayoutClearingAccount); above the queue's threshold
//	                 the withdrawal waits for approval by another identity
//	PAYOUT_DECIDE    another identity approves (QUEUED) or rejects (hold voided)
//	PAYOUT_CANCEL    the client gives up while it is not in a transaction (hold voided)
//	PAYOUT_PLAN      the leader's payout driver commits a transaction for QUEUED withdrawals:
//	                 inputs reserved, outputs, fee, unsigned PSBT; only then is a signer asked
//	PAYOUT_SIGNED    a signer's PSBT, checked against the plan and verified input by input
//	PAYOUT_ABANDON   an operator gives up an unsigned plan: inputs released, withdrawals queued
//
// The chain watcher then follows the transaction like any other that spends our UTXOs; when it
// is final (chain.go calls followBatch), the holds post and the books move:
//
//	customer -> onchain-payouts           amount + fee charged (the hold, posted)
//	onchain-payouts -> wallet:<hot>       amount + fee charged (the coins leave the hot wallet)
//	onchain-fee-expense -> wallet:<hot>   fee paid - fees charged, when the bank pays more, or
//	wallet:<hot> -> onchain-fee-income    fees charged - fee paid, when it pays less
//
// so the hot wallet's ASSET account falls by exactly what left it: outputs to others plus the
// network fee.

// Accounts of the payout books, created by the chain driver when first needed.
const (
	// PayoutClearingAccount is the LIABILITY account withdrawals are held against and paid
	// through.
	PayoutClearingAccount = "onchain-payouts"
	// PayoutFeeIncomeAccount is the INCOME account of fees charged above the fee paid.
	PayoutFeeIncomeAccount = "onchain-fee-income"
	// PayoutFeeExpenseAccount is the EXPENSE account of fees paid above the fees charged.
	PayoutFeeExpenseAccount = "onchain-fee-expense"
	// WalletAccountPrefix starts the ASSET account of a wallet's coins.
	WalletAccountPrefix = "wallet:"
)

// WalletAccount names the ASSET account of a wallet's coins.
func WalletAccount(walletID string) string { return WalletAccountPrefix + walletID }

// Payout limits.
const (
	MaxPayoutQueueLen = 32
	// MaxBatchPayouts and MaxBatchInputs bound one transaction (a 1,000-output payout from
	// 2,000 inputs is about 170 kvB, under the 400 kWU standardness limit).
	MaxBatchPayouts = 2_000
	MaxBatchInputs  = 2_000
	// MinPayoutFeeRateSatKvB is the default minimum relay fee rate (1 sat/vB).
	MinPayoutFeeRateSatKvB = 1_000
	// MaxPayoutFeeRateSatKvB refuses a plan paying more than 2,000 sat/vB, whatever the
	// queue says: a bug, not a market.
	MaxPayoutFeeRateSatKvB = 2_000_000
	MaxPayoutReasonLen     = 512
	// ConsolidationQueue is the queue of the driver's consolidation batches: many small UTXOs
	// of the hot wallet merged into one change output while fees are low. No configured queue
	// may take the name.
	ConsolidationQueue = "consolidation"
	// SweepQueue is the queue of the driver's sweeps: a DEPOSIT wallet's credited coins moved to
	// the hot wallet. No configured queue may take the name.
	SweepQueue = "sweep"
	// SplitQueue is the queue of the driver's coin splits: one hot-wallet coin into several
	// change outputs, so that payouts need not wait on one unconfirmed change.
	SplitQueue = "split"
	// MaxSplitOutputs bounds the change outputs a plan may add.
	MaxSplitOutputs = 100
	// payoutSequence signals replaceability (BIP 125) on every input.
	payoutSequence = wire.MaxTxInSequenceNum - 2
)

// Payout tables (see keys.go for the rest of the keyspace):
//
//	W <index>                -> Payout, by the Raft index of its request
//	Z <payout id>            -> sha256(request) || index: the client's id
//	Q <queue> 0x00 <index>   -> empty: QUEUED withdrawals per queue, in request order
//	B <index>                -> PayoutBatch, by the Raft index of its plan
//	X <txid>                 -> index of the batch whose transaction it is
//	r <txid> <vout>          -> index of the batch that reserved the UTXO
const (
	tagPayout      = 'W'
	tagPayoutID    = 'Z'
	tagPayoutQueue = 'Q'
	tagBatch       = 'B'
	tagBatchTx     = 'X'
	tagReserved    = 'r'
)

func payoutKey(index uint64) []byte { return binary.BigEndian.AppendUint64([]byte{tagPayout}, index) }
func payoutIDKey(id string) []byte  { return tagged(tagPayoutID, id) }
func batchKey(index uint64) []byte  { return binary.BigEndian.AppendUint64([]byte{tagBatch}, index) }
func batchTxKey(txid string) []byte { return tagged(tagBatchTx, txid) }
func payoutQueuePrefix(queue string) []byte {
	return append(tagged(tagPayoutQueue, queue), 0)
}
func payoutQueueKey(queue string, index uint64) []byte {
	return binary.BigEndian.AppendUint64(payoutQueuePrefix(queue), index)
}

// BatchID names the batch planned at a Raft index.
func BatchID(index uint64) string { return "b" + strconv.FormatUint(index, 10) }

// ParseBatchID returns the Raft index a batch id names.
func ParseBatchID(id string) (uint64, bool) {
	if !strings.HasPrefix(id, "b") || len(id) < 2 || id[1] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(id[1:], 10, 64)
	return n, err == nil
}

// payoutTransferID names a withdrawal's hold (suffix "") and its resolutions (":post", ":void",
// ":pay"); batchFeeTransferID the fee difference of a batch.
func payoutTransferID(index uint64, suffix string) string {
	return "po:" + strconv.FormatUint(index, 10) + suffix
}
func batchFeeTransferID(index uint64) string { return batchTransferID(index, ":fee") }

// batchTransferID names a batch's bookings: ":fee" (fee paid against fees charged), ":sweep"
// (a sweep's coins into the hot wallet's books).
func batchTransferID(index uint64, suffix string) string {
	return "pb:" + strconv.FormatUint(index, 10) + suffix
}

func payoutConflict(format string, args ...any) *Error {
	return refuse(bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, format, args...)
}

// --- validation (shared with the API edge) ---

// CheckPayoutQueue checks a queue name.
func CheckPayoutQueue(field, q string) *Error {
	if len(q) > MaxPayoutQueueLen || !validID(q) {
		return invalid("%s: must be 1-%d characters from [A-Za-z0-9._:-], got %q", field, MaxPayoutQueueLen, truncate(q))
	}
	return nil
}

// ValidateRequestPayout checks a withdrawal request on its own (the address needs the cluster's
// network: apply and the API check it with ParsePayoutAddress).
func ValidateRequestPayout(req *bankdv1.RequestPayoutRequest) *Error {
	if err := checkID("id", req.GetId()); err != nil {
		return err
	}
	if err := checkID("account_id", req.GetAccountId()); err != nil {
		return err
	}
	if !ownershipChecksOff {
		if err := CheckClientAccountID("account_id", req.GetAccountId(), "withdraw from"); err != nil {
			return err
		}
	}
	if req.GetAmountSat() <= 0 || req.GetAmountSat() > MaxPayoutAmountSat {
		return invalid("amount_sat: must be 1-%d satoshis, got %d", int64(MaxPayoutAmountSat), req.GetAmountSat())
	}
	if req.GetAddress() == "" {
		return invalid("address: required")
	}
	return CheckPayoutQueue("queue", req.GetQueue())
}

// --- records ---

func requestSum(req *bankdv1.RequestPayoutRequest) ([32]byte, error) {
	b, err := marshal.Marshal(req)
	if err != nil {
		return [32]byte{}, fmt.Errorf("marshal payout request: %w", err)
	}
	return sha256.Sum256(b), nil
}

// loadPayoutByID returns the withdrawal with a client id and the hash of its request.
func loadPayoutByID(tx *txn, id string) (*bankdv1.Payout, []byte, error) {
	v, found, err := tx.get(payoutIDKey(id))
	if err != nil || !found {
		return nil, nil, err
	}
	if len(v) != 40 {
		return nil, nil, fmt.Errorf("corrupt payout id record %q", id)
	}
	p, err := loadPayoutAt(tx, binary.BigEndian.Uint64(v[32:]))
	return p, v[:32], err
}

func loadPayoutAt(tx *txn, index uint64) (*bankdv1.Payout, error) {
	p := &bankdv1.Payout{}
	found, err := getProto(tx, payoutKey(index), p)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("payout index names %d, which holds no payout", index)
	}
	return p, nil
}

func mustLoadPayout(tx *txn, field, id string) (*bankdv1.Payout, error) {
	p, _, err := loadPayoutByID(tx, id)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "%s: no withdrawal %q", field, truncate(id))
	}
	return p, nil
}

func (a *applier) savePayout(tx *txn, p *bankdv1.Payout) error {
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Payout{Payout: proto.Clone(p).(*bankdv1.Payout)}})
	return putProto(tx, payoutKey(p.Index), p)
}

// CheckBatchID checks the form of a batch id, b<index>.
func CheckBatchID(field, id string) *Error {
	if _, ok := ParseBatchID(id); !ok {
		return invalid("%s: %q is not a batch id (b<index>)", field, truncate(id))
	}
	return nil
}

func loadBatch(tx *txn, field, id string) (*bankdv1.PayoutBatch, error) {
	if err := CheckBatchID(field, id); err != nil {
		return nil, err
	}
	index, _ := ParseBatchID(id)
	b := &bankdv1.PayoutBatch{}
	found, err := getProto(tx, batchKey(index), b)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "%s: no batch %q", field, id)
	}
	return b, nil
}

func (a *applier) saveBatch(tx *txn, b *bankdv1.PayoutBatch) error {
	index, _ := ParseBatchID(b.Id)
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_PayoutBatch{PayoutBatch: proto.Clone(b).(*bankdv1.PayoutBatch)}})
	return putProto(tx, batchKey(index), b)
}

// --- requests, decisions, cancellations ---

func (a *applier) payoutRequest(tx *txn, cmd *bankdv1.PayoutRequestCommand) (proto.Message, error) {
	req := cmd.GetRequest()
	if err := ValidateRequestPayout(req); err != nil {
		return nil, err
	}
	pol := cmd.GetPolicy()
	if err := checkSat("policy.fee_sat", pol.GetFeeSat(), true); err != nil {
		return nil, err
	}
	if err := checkSat("policy.approval_threshold_sat", pol.GetApprovalThresholdSat(), true); err != nil {
		return nil, err
	}
	sum, err := requestSum(req)
	if err != nil {
		return nil, err
	}
	prev, prevSum, err := loadPayoutByID(tx, req.Id)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if !bytes.Equal(prevSum, sum[:]) {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "id: %q was already used for another withdrawal", req.Id)
		}
		return &bankdv1.RequestPayoutResponse{Payout: prev, Replayed: true}, nil
	}
	network, _, err := tx.get(keyNetwork)
	if err != nil {
		return nil, err
	}
	addr, verr := ParsePayoutAddress("address", req.Address, string(network))
	if verr != nil {
		return nil, verr
	}
	if dust := DustThreshold(addr.Script); req.AmountSat < dust {
		return nil, invalid("amount_sat: %d is below the dust threshold of a %s output (%d)", req.AmountSat, addr.Type, dust)
	}
	own := &bankdv1.WatchedScript{}
	if found, err := getProto(tx, scriptKey(addr.Script), own); err != nil {
		return nil, err
	} else if found {
		return nil, invalid("address: %s is an address of the cluster's wallet %q; move money between accounts with a transfer", addr.Address, own.WalletId)
	}
	payer, err := loadAccount(tx, "account_id", req.AccountId, "BTC")
	if err != nil {
		return nil, err
	}
	if err := CheckPayer("account_id", payer); err != nil {
		return nil, err
	}
	if err := a.ensureAccount(tx, &bankdv1.Account{Id: PayoutClearingAccount, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}); err != nil {
		return nil, err
	}
	if req.AmountSat+pol.FeeSat > MaxPayoutAmountSat {
		return nil, invalid("amount_sat: amount + fee above %d", int64(MaxPayoutAmountSat))
	}
	hold, err := a.move(tx, &bankdv1.Transfer{
		Id: payoutTransferID(a.index, ""), DebitAccountId: req.AccountId, CreditAccountId: PayoutClearingAccount,
		Amount: req.AmountSat + pol.FeeSat, Pending: true, ExternalRef: req.Id,
	})
	if err != nil {
		return nil, err
	}
	p := &bankdv1.Payout{
		Id: req.Id, AccountId: req.AccountId, Address: addr.Address, Script: addr.Script,
		AmountSat: req.AmountSat, FeeSat: pol.FeeSat, Queue: req.Queue, RequestedBy: a.principal,
		RequestedUnixMs: a.now, HoldTransferId: hold.Id, Index: a.index,
		ApprovalRequired: pol.ApprovalThresholdSat > 0 && req.AmountSat > pol.ApprovalThresholdSat,
	}
	if p.ApprovalRequired {
		p.State = bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL
	} else {
		a.queue(tx, p)
	}
	tx.set(payoutIDKey(p.Id), binary.BigEndian.AppendUint64(sum[:], p.Index))
	return &bankdv1.RequestPayoutResponse{Payout: p}, a.savePayout(tx, p)
}

// queue makes a withdrawal due for its queue's next transaction.
func (a *applier) queue(tx *txn, p *bankdv1.Payout) {
	p.State, p.BatchId, p.Txid, p.Vout = bankdv1.PayoutState_PAYOUT_STATE_QUEUED, "", "", 0
	tx.set(payoutQueueKey(p.Queue, p.Index), nil)
}

func (a *applier) payoutCancel(tx *txn, req *bankdv1.CancelPayoutRequest) (proto.Message, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, err
	}
	p, err := mustLoadPayout(tx, "id", req.Id)
	if err != nil {
		return nil, err
	}
	switch p.State {
	case bankdv1.PayoutState_PAYOUT_STATE_CANCELLED:
		return &bankdv1.CancelPayoutResponse{Payout: p}, nil // a retry
	case bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL, bankdv1.PayoutState_PAYOUT_STATE_QUEUED:
	default:
		return nil, payoutConflict("id: withdrawal %q is %s%s; only one not yet in a transaction can be cancelled",
			p.Id, payoutStateName(p.State), inBatch(p))
	}
	tx.delete(payoutQueueKey(p.Queue, p.Index))
	if err := a.releaseHold(tx, p); err != nil {
		return nil, err
	}
	p.State, p.ResolvedUnixMs = bankdv1.PayoutState_PAYOUT_STATE_CANCELLED, a.now
	return &bankdv1.CancelPayoutResponse{Payout: p}, a.savePayout(tx, p)
}

func inBatch(p *bankdv1.Payout) string {
	if p.BatchId == "" {
		return ""
	}
	return " in batch " + p.BatchId + " (transaction " + p.Txid + ")"
}

func payoutStateName(s bankdv1.PayoutState) string {
	return strings.TrimPrefix(s.String(), "PAYOUT_STATE_")
}

func batchStateName(s bankdv1.BatchState) string {
	return strings.TrimPrefix(s.String(), "BATCH_STATE_")
}

// releaseHold voids a withdrawal's hold. The hold belongs to the chain driver and has no
// timeout, so the ledger refuses the void only if the store is not what the driver left; the
// withdrawal's state still changes and a problem says why.
func (a *applier) releaseHold(tx *txn, p *bankdv1.Payout) error {
	return a.book(tx, "payout "+p.Id, &bankdv1.Transfer{Id: payoutTransferID(p.Index, ":void"), PendingId: p.HoldTransferId, VoidPending: true})
}

func (a *applier) payoutDecide(tx *txn, req *bankdv1.DecidePayoutRequest) (proto.Message, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.GetReason(), MaxPayoutReasonLen, !req.GetApprove()); err != nil {
		return nil, err
	}
	if a.principal == "" {
		return nil, invalid("approver: a decision needs an authenticated identity")
	}
	p, err := mustLoadPayout(tx, "id", req.Id)
	if err != nil {
		return nil, err
	}
	if a.principal == p.RequestedBy {
		return nil, payoutConflict("approver: %q requested withdrawal %q; another identity must approve or reject it", a.principal, p.Id)
	}
	if p.State != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL {
		if p.DecidedBy == a.principal && (req.Approve == (p.RejectReason == "")) {
			return &bankdv1.DecidePayoutResponse{Payout: p}, nil // a retry of the same decision
		}
		return nil, payoutConflict("id: withdrawal %q is %s, not awaiting approval", p.Id, payoutStateName(p.State))
	}
	p.DecidedBy, p.DecidedUnixMs = a.principal, a.now
	if req.Approve {
		a.queue(tx, p)
	} else {
		if err := a.releaseHold(tx, p); err != nil {
			return nil, err
		}
		p.State, p.RejectReason, p.ResolvedUnixMs = bankdv1.PayoutState_PAYOUT_STATE_REJECTED, req.Reason, a.now
	}
	return &bankdv1.DecidePayoutResponse{Payout: p}, a.savePayout(tx, p)
}

// --- plans ---

// PayoutTxVSize is the virtual size of a payout transaction spending nInputs p2wpkh inputs to
// outputs with these scripts, counting 72-byte signatures (the most a low-R signer produces
// is 71; the estimate errs on the side of paying enough).
func PayoutTxVSize(nInputs int, outputScripts [][]byte) int64 {
	return TxVSize(nInputs, p2wpkhWitnessBytes, outputScripts)
}

// p2wpkhWitnessBytes is a p2wpkh input's witness: item count, signature, public key.
const p2wpkhWitnessBytes = 1 + 1 + 72 + 1 + 33

// MultisigWitnessBytes is the witness of a wsh(multi) input with witnessScript: item count, the
// empty item CHECKMULTISIG pops, m signatures, the script.
func MultisigWitnessBytes(m int, witnessScript []byte) int {
	return 1 + 1 + m*(1+72) + varIntLen(len(witnessScript)) + len(witnessScript)
}

// TxVSize is the virtual size of a transaction spending nInputs segwit inputs whose witnesses
// are witnessBytes each to outputs with these scripts.
func TxVSize(nInputs, witnessBytes int, outputScripts [][]byte) int64 {
	// version, locktime, input and output counts; marker and flag count a quarter each.
	weight := int64(4+4+varIntLen(nInputs)+varIntLen(len(outputScripts)))*4 + 2
	// outpoint, empty scriptSig, sequence; the witness.
	weight += int64(nInputs) * ((32+4+1+4)*4 + int64(witnessBytes))
	for _, s := range outputScripts {
		weight += int64(8+varIntLen(len(s))+len(s)) * 4
	}
	return (weight + 3) / 4
}

// P2WPKHInputVBytes and P2WPKHChangeVBytes are what one p2wpkh input and one p2wpkh output add
// to PayoutTxVSize, for coin selection.
const (
	P2WPKHInputVBytes  = 68
	P2WPKHChangeVBytes = 31
)

// ValidatePayoutPlan checks a plan's shape.
func ValidatePayoutPlan(req *bankdv1.PayoutPlan) *Error {
	if err := CheckPayoutQueue("queue", req.GetQueue()); err != nil {
		return err
	}
	if err := checkID("wallet_id", req.GetWalletId()); err != nil {
		return err
	}
	if len(WalletAccount(req.GetWalletId())) > MaxIDLen {
		return invalid("wallet_id: %q is too long to name its books (%s<id> must fit %d characters)", req.GetWalletId(), WalletAccountPrefix, MaxIDLen)
	}
	if n := len(req.GetPayoutIds()); n > MaxBatchPayouts {
		return invalid("payout_ids: at most %d withdrawals per transaction, got %d", MaxBatchPayouts, n)
	}
	sweep, channel, vault := req.GetToWalletId() != "", req.GetChannelOpenId() != "", req.GetVaultProposalId() != ""
	if vault != (req.GetQueue() == VaultQueue) {
		return invalid("vault_proposal_id: a vault move names its proposal, in queue %q, and only a vault move does", VaultQueue)
	}
	if vault {
		if err := checkID("vault_proposal_id", req.GetVaultProposalId()); err != nil {
			return err
		}
		if len(req.GetPayoutIds()) != 0 || sweep || channel || len(req.GetSplitSat()) != 0 || req.GetLifts() != "" {
			return invalid("payout_ids: a vault move pays its output to the cold wallet and change, nothing else")
		}
	}
	if channel != (req.GetQueue() == ChannelQueue) {
		return invalid("channel_open_id: a channel funding names its open, in queue %q, and only a channel funding does", ChannelQueue)
	}
	if channel {
		if err := checkID("channel_open_id", req.GetChannelOpenId()); err != nil {
			return err
		}
		if len(req.GetPayoutIds()) != 0 || sweep || len(req.GetSplitSat()) != 0 {
			return invalid("payout_ids: a channel funding pays its funding output and change, nothing else")
		}
	}
	if sweep != (req.GetQueue() == SweepQueue) {
		return invalid("to_wallet_id: a sweep names the wallet it pays, in queue %q, and only a sweep does", SweepQueue)
	}
	if sweep {
		if err := checkID("to_wallet_id", req.GetToWalletId()); err != nil {
			return err
		}
		if len(req.GetPayoutIds()) != 0 || req.GetChangeSat() == 0 || req.GetReplaces() != "" {
			return invalid("payout_ids: a sweep pays no withdrawal, only its one output to %q", req.GetToWalletId())
		}
	} else if maintenance := len(req.GetPayoutIds()) == 0 && !channel && !vault; maintenance != (req.GetQueue() == ConsolidationQueue || req.GetQueue() == SplitQueue) {
		return invalid("payout_ids: a transaction without withdrawals is a consolidation or a split, in queue %q or %q, and only those", ConsolidationQueue, SplitQueue)
	} else if req.GetQueue() == ConsolidationQueue && (req.GetChangeSat() == 0 || len(req.GetInputs()) < 2 && req.GetLifts() == "" || len(req.GetSplitSat()) > 0) {
		return invalid("inputs: a consolidation merges at least two inputs (or, lifting a batch, its change) into one change output")
	} else if req.GetQueue() == SplitQueue && (req.GetChangeSat() == 0 || len(req.GetSplitSat()) == 0) {
		return invalid("split_sat: a split pays its coin into at least two change outputs")
	}
	if req.GetLifts() != "" {
		switch req.GetQueue() {
		case SweepQueue, SplitQueue, ChannelQueue, VaultQueue:
			return invalid("lifts: a child paying for its parent is the next payout of a queue, or in queue %q without withdrawals", ConsolidationQueue)
		}
		if err := CheckBatchID("lifts", req.GetLifts()); err != nil {
			return err
		}
	}
	if n := len(req.GetSplitSat()); n > 0 && (req.GetChangeSat() == 0 || n > MaxSplitOutputs || req.GetToWalletId() != "") {
		return invalid("split_sat: 1-%d more change outputs after change_sat, not in a sweep", MaxSplitOutputs)
	}
	for i, v := range req.GetSplitSat() {
		if err := checkSat(fmt.Sprintf("split_sat[%d]", i), v, false); err != nil {
			return err
		}
	}
	if n := len(req.GetInputs()); n == 0 || n > MaxBatchInputs {
		return invalid("inputs: 1-%d per transaction, got %d", MaxBatchInputs, n)
	}
	for i, op := range req.GetInputs() {
		if err := CheckHash(fmt.Sprintf("inputs[%d].txid", i), op.GetTxid()); err != nil {
			return err
		}
	}
	if err := checkSat("change_sat", req.GetChangeSat(), true); err != nil {
		return err
	}
	if len(req.GetPsbt()) == 0 {
		return invalid("psbt: required")
	}
	return nil
}

func (a *applier) payoutPlan(tx *txn, req *bankdv1.PayoutPlan) (proto.Message, error) {
	if err := ValidatePayoutPlan(req); err != nil {
		return nil, err
	}
	if req.Replaces != "" {
		return nil, invalid("replaces: a fee bump is a PAYOUT_BUMP command")
	}
	ws, err := loadWalletState(tx, req.WalletId)
	if err != nil {
		return nil, err
	}
	changeWS := ws
	coldSpend, err := spendsCold(tx, req)
	if err != nil {
		return nil, err
	}
	if coldSpend {
		if err := checkColdWallet(ws, req.WalletId); err != nil {
			return nil, err
		}
	} else if req.ToWalletId != "" {
		if err := checkSpendableWallet(ws, req.WalletId, bankdv1.WalletKind_WALLET_KIND_DEPOSIT); err != nil {
			return nil, err
		}
		if changeWS, err = loadWalletState(tx, req.ToWalletId); err != nil {
			return nil, err
		}
		if err := checkHotWallet(changeWS, req.ToWalletId); err != nil {
			return nil, err
		}
	} else if err := checkHotWallet(ws, req.WalletId); err != nil {
		return nil, err
	}
	b := a.newBatch(req)
	var open *bankdv1.ChannelOpen
	if req.ChannelOpenId != "" {
		var funding *bankdv1.BatchOutput
		if open, funding, err = planChannel(tx, req); err != nil {
			return nil, err
		}
		b.Outputs = append(b.Outputs, funding)
	}
	var (
		vault *bankdv1.VaultProposal
		cold  *walletState
	)
	if req.VaultProposalId != "" {
		var out *bankdv1.BatchOutput
		if vault, out, cold, err = planVault(tx, req); err != nil {
			return nil, err
		}
		b.Outputs = append(b.Outputs, out)
		if coldSpend {
			b.SignaturesRequired = uint32(ws.multisigM())
		}
	}
	// Inputs: unreserved, unspent UTXOs of the wallet, each once; a sweep's deposits credited.
	seen := map[string]bool{}
	var parent *bankdv1.PayoutBatch
	for i, op := range req.Inputs {
		field := fmt.Sprintf("inputs[%d]", i)
		key := outpointKey(tagUtxo, op)
		if seen[string(key)] {
			return nil, invalid("%s: %s is listed twice", field, outpointString(op))
		}
		seen[string(key)] = true
		if i == 0 && req.Lifts != "" {
			in, p, err := liftedChange(tx, req, op)
			if err != nil {
				return nil, err
			}
			parent = p
			b.Inputs = append(b.Inputs, in)
			continue
		}
		u := &bankdv1.Utxo{}
		if found, err := getProto(tx, key, u); err != nil {
			return nil, err
		} else if !found || u.WalletId != req.WalletId {
			return nil, payoutConflict("%s: %s is not a UTXO of wallet %q", field, outpointString(op), req.WalletId)
		}
		if u.SpendingTxid != "" {
			return nil, payoutConflict("%s: %s is being spent by %s", field, outpointString(op), u.SpendingTxid)
		}
		if v, found, err := tx.get(outpointKey(tagReserved, op)); err != nil {
			return nil, err
		} else if found {
			return nil, payoutConflict("%s: %s is reserved by batch %s", field, outpointString(op), BatchID(binary.BigEndian.Uint64(v)))
		}
		script := &bankdv1.WatchedScript{}
		if found, err := getProto(tx, scriptKey(u.Script), script); err != nil {
			return nil, err
		} else if !found {
			return nil, fmt.Errorf("UTXO %s pays a script that is not in the script table", outpointString(op))
		}
		if req.ToWalletId != "" {
			d := &bankdv1.Deposit{}
			if found, err := getProto(tx, outpointKey(tagDeposit, op), d); err != nil {
				return nil, err
			} else if !found || d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED {
				return nil, payoutConflict("%s: %s is not a credited deposit; only those are swept", field, outpointString(op))
			}
		}
		b.Inputs = append(b.Inputs, &bankdv1.BatchInput{Outpoint: op, ValueSat: u.ValueSat, Script: u.Script, Branch: script.Branch, Index: script.Index})
	}
	// Outputs: one per withdrawal, QUEUED in this queue, each once; then the change.
	var payouts []*bankdv1.Payout
	for i, id := range req.PayoutIds {
		field := fmt.Sprintf("payout_ids[%d]", i)
		p, err := mustLoadPayout(tx, field, id)
		if err != nil {
			return nil, err
		}
		if p.State != bankdv1.PayoutState_PAYOUT_STATE_QUEUED || p.Queue != req.Queue {
			return nil, payoutConflict("%s: withdrawal %q is %s in queue %q, not QUEUED in %q", field, id, payoutStateName(p.State), p.Queue, req.Queue)
		}
		for _, q := range payouts {
			if q.Id == p.Id {
				return nil, invalid("%s: %q is listed twice", field, id)
			}
		}
		payouts = append(payouts, p)
	}
	change := changeWS.branches[branchChange]
	if err := a.finishBatch(tx, changeWS, b, payouts, req, change.NextIndex, nil); err != nil {
		return nil, err
	}
	for _, p := range payouts {
		tx.delete(payoutQueueKey(p.Queue, p.Index))
	}
	if req.ChangeSat > 0 {
		change.NextIndex += 1 + uint32(len(req.SplitSat))
		if err := a.watchUpTo(tx, changeWS, change, changeWS.windowEnd(change)); err != nil {
			return nil, err
		}
		changeWS.save(tx)
	}
	if parent != nil {
		b.Lifts, parent.LiftedBy = parent.Id, b.Id
		if err := a.saveBatch(tx, parent); err != nil {
			return nil, err
		}
	}
	if vault != nil {
		if err := a.vaultPlanned(tx, vault, cold, b); err != nil {
			return nil, err
		}
	}
	if open != nil {
		open.State, open.BatchId, open.Txid = bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PLANNED, b.Id, b.Txid
		if err := a.saveChannelOpen(tx, open); err != nil {
			return nil, err
		}
	}
	return &bankdv1.PayoutPlanResponse{Batch: b}, a.saveBatch(tx, b)
}

// liftedChange checks the first input of a child paying for its parent: the change of a
// SIGNED batch of the same wallet, not yet confirmed, that is neither a fee bump nor bumped
// (so its txid is the one that will confirm) and not lifted already, and unreserved. It
// returns the input, made from the parent's record, and the parent.
func liftedChange(tx *txn, req *bankdv1.PayoutPlan, op *bankdv1.Outpoint) (*bankdv1.BatchInput, *bankdv1.PayoutBatch, error) {
	p, err := loadBatch(tx, "lifts", req.Lifts)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case p.State != bankdv1.BatchState_BATCH_STATE_SIGNED:
		return nil, nil, payoutConflict("lifts: batch %s is %s; only a signed batch that has not confirmed is lifted", p.Id, batchStateName(p.State))
	case p.Replaces != "" || p.ReplacedBy != "":
		return nil, nil, payoutConflict("lifts: batch %s is in a fee bump chain; its txid may not be the one that confirms", p.Id)
	case p.LiftedBy != "":
		return nil, nil, payoutConflict("lifts: batch %s is already lifted by %s", p.Id, p.LiftedBy)
	case p.WalletId != req.WalletId:
		return nil, nil, invalid("lifts: batch %s spends wallet %q, not %q", p.Id, p.WalletId, req.WalletId)
	case op.Txid != p.Txid || int(op.Vout) >= len(p.Outputs) || !p.Outputs[op.Vout].Change:
		return nil, nil, invalid("inputs[0]: a child spends its parent's change; %s is not a change output of batch %s", outpointString(op), p.Id)
	}
	if _, found, err := tx.get(outpointKey(tagReserved, op)); err != nil {
		return nil, nil, err
	} else if found {
		return nil, nil, payoutConflict("inputs[0]: %s is reserved", outpointString(op))
	}
	o := p.Outputs[op.Vout]
	return &bankdv1.BatchInput{Outpoint: op, ValueSat: o.ValueSat, Script: o.Script, Branch: branchChange, Index: o.ChangeIndex}, p, nil
}

func (a *applier) newBatch(req *bankdv1.PayoutPlan) *bankdv1.PayoutBatch {
	return &bankdv1.PayoutBatch{
		Id: BatchID(a.index), Queue: req.Queue, WalletId: req.WalletId, State: bankdv1.BatchState_BATCH_STATE_PLANNED,
		PlannedUnixMs: a.now, Psbt: req.Psbt, Replaces: req.Replaces, ToWalletId: req.ToWalletId, ChannelOpenId: req.ChannelOpenId,
		VaultProposalId: req.VaultProposalId,
	}
}

// finishBatch completes a batch whose inputs (and a channel funding's output) are set: the
// withdrawals' outputs in order, the change (to changeIndex) when the plan has any, the fee and
// its bounds (and, for a bump, BIP 125's: more than old's fee by at least 1 sat/vB of the new
// size), the PSBT; then it reserves the inputs for b, indexes its txid and moves the
// withdrawals into it.
func (a *applier) finishBatch(tx *txn, ws *walletState, b *bankdv1.PayoutBatch, payouts []*bankdv1.Payout, req *bankdv1.PayoutPlan, changeIndex uint32, old *bankdv1.PayoutBatch) error {
	var in, out int64
	for _, i := range b.Inputs {
		in += i.ValueSat
	}
	for _, o := range b.Outputs {
		out += o.ValueSat
	}
	first := uint32(len(b.Outputs))
	for _, p := range payouts {
		b.Outputs = append(b.Outputs, &bankdv1.BatchOutput{Vout: uint32(len(b.Outputs)), ValueSat: p.AmountSat, Script: p.Script, Address: p.Address, PayoutId: p.Id})
		out += p.AmountSat
		b.ChargedFeeSat += p.FeeSat
	}
	if req.ChangeSat > 0 {
		rec, err := ws.derive(branchChange, changeIndex)
		if err != nil {
			return invalid("wallet %q: change index %d: %v", ws.wallet.Id, changeIndex, err)
		}
		if dust := DustThreshold(rec.Script); req.ChangeSat < dust {
			return invalid("change_sat: %d is below the dust threshold (%d); leave it to the fee", req.ChangeSat, dust)
		}
		b.Outputs = append(b.Outputs, &bankdv1.BatchOutput{Vout: uint32(len(b.Outputs)), ValueSat: req.ChangeSat, Script: rec.Script,
			Address: rec.Address, Change: true, ChangeIndex: changeIndex})
		out += req.ChangeSat
		for i, v := range req.SplitSat {
			index := changeIndex + 1 + uint32(i)
			rec, err := ws.derive(branchChange, index)
			if err != nil {
				return invalid("wallet %q: change index %d: %v", ws.wallet.Id, index, err)
			}
			if dust := DustThreshold(rec.Script); v < dust {
				return invalid("split_sat[%d]: %d is below the dust threshold (%d)", i, v, dust)
			}
			b.Outputs = append(b.Outputs, &bankdv1.BatchOutput{Vout: uint32(len(b.Outputs)), ValueSat: v, Script: rec.Script,
				Address: rec.Address, Change: true, ChangeIndex: index})
			out += v
		}
	}
	b.FeeSat = in - out
	var scripts [][]byte
	for _, o := range b.Outputs {
		scripts = append(scripts, o.Script)
	}
	witness, err := ws.inputWitnessBytes()
	if err != nil {
		return err
	}
	b.Vsize = TxVSize(len(b.Inputs), witness, scripts)
	switch {
	case b.FeeSat*1000 < b.Vsize*MinPayoutFeeRateSatKvB:
		return invalid("inputs: %d sat in, %d out leaves a fee of %d for %d vB, below the minimum relay fee", in, out, b.FeeSat, b.Vsize)
	case b.FeeSat*1000 > b.Vsize*MaxPayoutFeeRateSatKvB:
		return invalid("inputs: a fee of %d sat for %d vB is above %d sat/vB", b.FeeSat, b.Vsize, MaxPayoutFeeRateSatKvB/1000)
	case old != nil && (b.FeeSat-old.FeeSat)*1000 < b.Vsize*MinPayoutFeeRateSatKvB:
		return invalid("change_sat: a replacement must pay at least %d sat more than batch %s's %d (1 sat/vB of its %d vB), got %d",
			(b.Vsize*MinPayoutFeeRateSatKvB+999)/1000, old.Id, old.FeeSat, b.Vsize, b.FeeSat)
	}
	b.FeeRateSatKvb = b.FeeSat * 1000 / b.Vsize
	unsigned, verr := checkPlanPSBT(req.Psbt, b)
	if verr != nil {
		return verr
	}
	b.Txid = unsigned.TxHash().String()
	if _, found, err := tx.get(batchTxKey(b.Txid)); err != nil {
		return err
	} else if found {
		return payoutConflict("psbt: transaction %s is already planned", b.Txid)
	}
	index, _ := ParseBatchID(b.Id)
	for _, in := range b.Inputs {
		tx.set(outpointKey(tagReserved, in.Outpoint), encodeUint64(index))
	}
	tx.set(batchTxKey(b.Txid), encodeUint64(index))
	for i, p := range payouts {
		p.State, p.BatchId, p.Txid, p.Vout = bankdv1.PayoutState_PAYOUT_STATE_BATCHED, b.Id, b.Txid, first+uint32(i)
		if err := a.savePayout(tx, p); err != nil {
			return err
		}
	}
	return nil
}

// payoutBump replaces a SIGNED batch that has not confirmed with a higher-fee version of the
// same transaction: the same inputs and withdrawals in the same order, the change (if any) to
// the same index and smaller. Both may still confirm; followBatch books whichever does.
func (a *applier) payoutBump(tx *txn, req *bankdv1.PayoutPlan) (proto.Message, error) {
	if err := ValidatePayoutPlan(req); err != nil {
		return nil, err
	}
	old, err := loadBatch(tx, "replaces", req.Replaces)
	if err != nil {
		return nil, err
	}
	switch {
	case old.State != bankdv1.BatchState_BATCH_STATE_SIGNED:
		return nil, payoutConflict("replaces: batch %s is %s; only a signed batch that has not confirmed is bumped", old.Id, batchStateName(old.State))
	case old.ChannelOpenId != "":
		return nil, payoutConflict("replaces: batch %s funds channel open %q, which is bound to its txid; it is not replaced", old.Id, old.ChannelOpenId)
	case old.LiftedBy != "":
		return nil, payoutConflict("replaces: batch %s is lifted by %s, which spends its change; it is not replaced", old.Id, old.LiftedBy)
	case old.ReplacedBy != "":
		return nil, payoutConflict("replaces: batch %s is already replaced by %s; bump that one", old.Id, old.ReplacedBy)
	case req.WalletId != old.WalletId || req.Queue != old.Queue:
		return nil, invalid("wallet_id: a replacement keeps batch %s's wallet %q and queue %q", old.Id, old.WalletId, old.Queue)
	case len(req.Inputs) != len(old.Inputs):
		return nil, invalid("inputs: a replacement spends batch %s's %d inputs, got %d", old.Id, len(old.Inputs), len(req.Inputs))
	}
	ws, err := loadWalletState(tx, req.WalletId)
	if err != nil {
		return nil, err
	}
	if err := checkHotWallet(ws, req.WalletId); err != nil {
		return nil, err
	}
	b := a.newBatch(req)
	for i, in := range old.Inputs {
		if req.Inputs[i].GetTxid() != in.Outpoint.Txid || req.Inputs[i].GetVout() != in.Outpoint.Vout {
			return nil, invalid("inputs[%d]: a replacement spends batch %s's inputs in order; want %s", i, old.Id, outpointString(in.Outpoint))
		}
		b.Inputs = append(b.Inputs, proto.Clone(in).(*bankdv1.BatchInput))
	}
	var payouts []*bankdv1.Payout
	changeIndex, hadChange := uint32(0), false
	for _, o := range old.Outputs {
		if o.Change {
			if hadChange {
				return nil, invalid("replaces: batch %s splits its change; it is not bumped", old.Id)
			}
			changeIndex, hadChange = o.ChangeIndex, true
			continue
		}
		p, err := mustLoadPayout(tx, "replaces", o.PayoutId)
		if err != nil {
			return nil, err
		}
		payouts = append(payouts, p)
	}
	if len(req.PayoutIds) != len(payouts) {
		return nil, invalid("payout_ids: a replacement pays batch %s's %d withdrawals, got %d", old.Id, len(payouts), len(req.PayoutIds))
	}
	for i, p := range payouts {
		if req.PayoutIds[i] != p.Id {
			return nil, invalid("payout_ids[%d]: a replacement pays batch %s's withdrawals in order; want %q", i, old.Id, p.Id)
		}
	}
	if len(req.SplitSat) > 0 {
		return nil, invalid("split_sat: a replacement keeps batch %s's outputs", old.Id)
	}
	if req.ChangeSat > 0 && !hadChange {
		return nil, invalid("change_sat: batch %s has no change, so its replacement has none", old.Id)
	}
	if err := a.finishBatch(tx, ws, b, payouts, req, changeIndex, old); err != nil {
		return nil, err
	}
	old.ReplacedBy = b.Id
	if err := a.saveBatch(tx, old); err != nil {
		return nil, err
	}
	return &bankdv1.PayoutPlanResponse{Batch: b}, a.saveBatch(tx, b)
}

// checkHotWallet refuses a wallet payouts cannot be planned from: only HOT wallets of p2wpkh
// scripts with a receive and a change branch (the fee estimate, the signer and the fixed
// txid of a plan rely on it).
func checkHotWallet(ws *walletState, id string) *Error {
	return checkSpendableWallet(ws, id, bankdv1.WalletKind_WALLET_KIND_HOT)
}

// checkSpendableWallet refuses a wallet a plan cannot spend from (or pay change to): of kind,
// p2wpkh, with a receive and a change branch.
func checkSpendableWallet(ws *walletState, id string, kind bankdv1.WalletKind) *Error {
	switch {
	case ws == nil:
		return refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "wallet_id: no wallet %q", id)
	case ws.wallet.Kind != kind:
		return invalid("wallet_id: wallet %q is a %s wallet, not %s", id, walletKindName(ws.wallet.Kind), walletKindName(kind))
	case len(ws.branches) != 2:
		return invalid("wallet_id: wallet %q has no change branch (its descriptor needs /<0;1>/*)", id)
	case !strings.HasPrefix(ws.wallet.Descriptor_, "wpkh("):
		return invalid("wallet_id: wallet %q is not a wpkh() wallet; payouts are planned from p2wpkh hot wallets only", id)
	}
	return nil
}

// checkPlanPSBT decodes a plan's PSBT and checks that its transaction is exactly the batch's:
// version 2, locktime 0, the inputs in order with the replaceable sequence, the outputs in
// order; and that each input carries the UTXO it spends, so a signer signs what it is shown.
func checkPlanPSBT(raw []byte, b *bankdv1.PayoutBatch) (*wire.MsgTx, *Error) {
	p, verr := decodePSBT(raw)
	if verr != nil {
		return nil, verr
	}
	want, verr := batchTx(b)
	if verr != nil {
		return nil, verr
	}
	if !sameTx(p.UnsignedTx, want) {
		return nil, invalid("psbt: its transaction is not the plan's (inputs, outputs, version 2, locktime 0, sequence %#x)", uint32(payoutSequence))
	}
	for i, in := range b.Inputs {
		wu := p.Inputs[i].WitnessUtxo
		if wu == nil || wu.Value != in.ValueSat || !bytes.Equal(wu.PkScript, in.Script) {
			return nil, invalid("psbt: input %d does not carry the UTXO it spends (witness_utxo)", i)
		}
		// A previous transaction, when given, must be the one the input spends.
		if parent := p.Inputs[i].NonWitnessUtxo; parent != nil {
			if parent.TxHash().String() != in.Outpoint.Txid || int(in.Outpoint.Vout) >= len(parent.TxOut) ||
				parent.TxOut[in.Outpoint.Vout].Value != in.ValueSat || !bytes.Equal(parent.TxOut[in.Outpoint.Vout].PkScript, in.Script) {
				return nil, invalid("psbt: input %d: non_witness_utxo is not the transaction it spends", i)
			}
		}
	}
	return want, nil
}

// decodePSBT decodes a BIP 174 PSBT from a signer or the leader. btcutil/psbt v1.1.8 panics on
// some malformed input (btcsuite/btcd#2351, fixed after that release); the panic is a pure
// function of the bytes, so turning it into a refusal keeps apply deterministic and no replica
// crashes on a signer's garbage.
func decodePSBT(raw []byte) (p *psbt.Packet, verr *Error) {
	defer func() {
		if v := recover(); v != nil {
			p, verr = nil, invalid("psbt: does not decode: the parser failed: %v", v)
		}
	}()
	r := bytes.NewReader(raw)
	p, err := psbt.NewFromRawBytes(r, false)
	if err != nil {
		return nil, invalid("psbt: does not decode: %v", err)
	}
	if r.Len() != 0 {
		return nil, invalid("psbt: %d bytes follow the PSBT", r.Len())
	}
	if len(p.UnsignedTx.TxIn) == 0 {
		// No batch has none; and a transaction without inputs reads the same as the segwit
		// marker, so its bytes cannot be trusted to mean what they say.
		return nil, invalid("psbt: its transaction has no inputs")
	}
	if len(p.Inputs) != len(p.UnsignedTx.TxIn) || len(p.Outputs) != len(p.UnsignedTx.TxOut) {
		return nil, invalid("psbt: %d input and %d output maps for %d inputs and %d outputs", len(p.Inputs), len(p.Outputs), len(p.UnsignedTx.TxIn), len(p.UnsignedTx.TxOut))
	}
	return p, nil
}

// batchTx builds the unsigned transaction of a batch.
func batchTx(b *bankdv1.PayoutBatch) (*wire.MsgTx, *Error) {
	tx := wire.NewMsgTx(2)
	for i, in := range b.Inputs {
		h, err := chainhash.NewHashFromStr(in.Outpoint.Txid)
		if err != nil {
			return nil, invalid("inputs[%d].txid: %v", i, err)
		}
		txin := wire.NewTxIn(wire.NewOutPoint(h, in.Outpoint.Vout), nil, nil)
		txin.Sequence = payoutSequence
		tx.AddTxIn(txin)
	}
	for _, o := range b.Outputs {
		tx.AddTxOut(wire.NewTxOut(o.ValueSat, o.Script))
	}
	return tx, nil
}

// batchPrevOuts are the UTXOs a batch's inputs spend, from its record, for sighashes.
func batchPrevOuts(b *bankdv1.PayoutBatch) *txscript.MultiPrevOutFetcher {
	prevOuts := txscript.NewMultiPrevOutFetcher(nil)
	for _, in := range b.Inputs {
		h, _ := chainhash.NewHashFromStr(in.Outpoint.Txid)
		prevOuts.AddPrevOut(*wire.NewOutPoint(h, in.Outpoint.Vout), wire.NewTxOut(in.ValueSat, in.Script))
	}
	return prevOuts
}

func sameTx(x, y *wire.MsgTx) bool {
	var bx, by bytes.Buffer
	if x == nil || x.SerializeNoWitness(&bx) != nil || y.SerializeNoWitness(&by) != nil {
		return false
	}
	return bytes.Equal(bx.Bytes(), by.Bytes())
}

// --- signatures ---

// ValidateSubmitPayoutSignature checks a signature submission's shape.
func ValidateSubmitPayoutSignature(req *bankdv1.SubmitPayoutSignatureRequest) *Error {
	if err := CheckBatchID("batch_id", req.GetBatchId()); err != nil {
		return err
	}
	if len(req.GetPsbt()) == 0 {
		return invalid("psbt: required")
	}
	return nil
}

// SignedBatchTx checks a signer's PSBT against a PLANNED batch: the same transaction, every
// input finalized (or finalizable from its partial signature) and valid under the script
// engine. It returns the signed transaction. The API runs it before proposing; apply again.
func SignedBatchTx(b *bankdv1.PayoutBatch, raw []byte) (*wire.MsgTx, *Error) {
	p, verr := decodePSBT(raw)
	if verr != nil {
		return nil, verr
	}
	want, verr := batchTx(b)
	if verr != nil {
		return nil, verr
	}
	if !sameTx(p.UnsignedTx, want) {
		return nil, invalid("psbt: its transaction is not batch %s's (txid %s, want %s)", b.Id, p.UnsignedTx.TxHash(), b.Txid)
	}
	// The UTXOs come from the batch, never from the signer's PSBT.
	for i, in := range b.Inputs {
		p.Inputs[i].WitnessUtxo = wire.NewTxOut(in.ValueSat, in.Script)
	}
	if err := psbt.MaybeFinalizeAll(p); err != nil {
		return nil, invalid("psbt: not every input is signed: %v", err)
	}
	signed, err := psbt.Extract(p)
	if err != nil {
		return nil, invalid("psbt: %v", err)
	}
	prevOuts := batchPrevOuts(b)
	hashes := txscript.NewTxSigHashes(signed, prevOuts)
	for i, in := range b.Inputs {
		vm, err := txscript.NewEngine(in.Script, signed, i, txscript.StandardVerifyFlags, nil, hashes, in.ValueSat, prevOuts)
		if err != nil {
			return nil, invalid("psbt: input %d: %v", i, err)
		}
		if err := vm.Execute(); err != nil {
			return nil, invalid("psbt: input %d does not verify: %v", i, err)
		}
	}
	return signed, nil
}

func (a *applier) payoutSigned(tx *txn, req *bankdv1.SubmitPayoutSignatureRequest) (proto.Message, error) {
	if err := ValidateSubmitPayoutSignature(req); err != nil {
		return nil, err
	}
	b, err := loadBatch(tx, "batch_id", req.BatchId)
	if err != nil {
		return nil, err
	}
	if b.State != bankdv1.BatchState_BATCH_STATE_PLANNED {
		if len(b.SignedTx) > 0 {
			return &bankdv1.SubmitPayoutSignatureResponse{Batch: b, Replayed: true}, nil
		}
		return nil, payoutConflict("batch_id: batch %s is %s, not waiting for a signature", b.Id, batchStateName(b.State))
	}
	if b.SignaturesRequired > 0 {
		return a.collectSignatures(tx, b, req.Psbt)
	}
	signed, verr := SignedBatchTx(b, req.Psbt)
	if verr != nil {
		return nil, verr
	}
	return a.markSigned(tx, b, signed)
}

// markSigned commits a batch's signed transaction: SIGNED, with who signed it and the tip.
func (a *applier) markSigned(tx *txn, b *bankdv1.PayoutBatch, signed *wire.MsgTx) (proto.Message, error) {
	var buf bytes.Buffer
	if err := signed.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("serialize signed transaction: %w", err)
	}
	b.SignedTx, b.SignedBy, b.SignedUnixMs, b.State = buf.Bytes(), a.principal, a.now, bankdv1.BatchState_BATCH_STATE_SIGNED
	tip := &bankdv1.ChainTip{}
	if _, err := getProto(tx, keyChainTip, tip); err != nil {
		return nil, err
	}
	b.SignedAtHeight = tip.Height
	if err := a.followVault(tx, b); err != nil {
		return nil, err
	}
	return &bankdv1.SubmitPayoutSignatureResponse{Batch: b}, a.saveBatch(tx, b)
}

// --- abandoning a plan ---

func (a *applier) payoutAbandon(tx *txn, req *bankdv1.AbandonPayoutBatchRequest) (proto.Message, error) {
	if err := checkText("reason", req.GetReason(), MaxPayoutReasonLen, true); err != nil {
		return nil, err
	}
	b, err := loadBatch(tx, "batch_id", req.GetBatchId())
	if err != nil {
		return nil, err
	}
	switch b.State {
	case bankdv1.BatchState_BATCH_STATE_ABANDONED:
		return &bankdv1.AbandonPayoutBatchResponse{Batch: b}, nil
	case bankdv1.BatchState_BATCH_STATE_PLANNED:
	default:
		return nil, payoutConflict("batch_id: batch %s is %s; a signed transaction may still confirm, so it can only be replaced, not abandoned", b.Id, batchStateName(b.State))
	}
	if b.ChannelOpenId != "" {
		// The open goes with its funding transaction.
		o, err := loadChannelOpen(tx, b.ChannelOpenId)
		if err != nil {
			return nil, err
		}
		if err := a.failChannelOpen(tx, o, "funding transaction abandoned: "+req.Reason); err != nil {
			return nil, err
		}
		b, err = loadBatch(tx, "batch_id", b.Id)
		return &bankdv1.AbandonPayoutBatchResponse{Batch: b}, err
	}
	return &bankdv1.AbandonPayoutBatchResponse{Batch: b}, a.abandonBatch(tx, b, req.Reason)
}

// abandonBatch gives up a batch that is not on chain: its inputs are released and its
// withdrawals queued again (or, for an unsigned fee bump, the batch it would replace stays in
// force).
func (a *applier) abandonBatch(tx *txn, b *bankdv1.PayoutBatch, reason string) error {
	if b.Lifts != "" {
		parent, err := loadBatch(tx, "batch", b.Lifts)
		if err != nil {
			return err
		}
		parent.LiftedBy = ""
		if err := a.saveBatch(tx, parent); err != nil {
			return err
		}
	}
	if b.Replaces != "" {
		// An unsigned fee bump: the batch it would replace stays in force.
		old, err := loadBatch(tx, "batch_id", b.Replaces)
		if err != nil {
			return err
		}
		if err := a.payWith(tx, old); err != nil {
			return err
		}
		old.ReplacedBy = ""
		if err := a.saveBatch(tx, old); err != nil {
			return err
		}
	} else {
		for _, in := range b.Inputs {
			tx.delete(outpointKey(tagReserved, in.Outpoint))
		}
		for _, o := range b.Outputs {
			if o.PayoutId == "" {
				continue
			}
			p, err := mustLoadPayout(tx, "batch", o.PayoutId)
			if err != nil {
				return err
			}
			a.queue(tx, p)
			if err := a.savePayout(tx, p); err != nil {
				return err
			}
		}
	}
	b.State, b.AbandonReason = bankdv1.BatchState_BATCH_STATE_ABANDONED, reason
	if err := a.followVault(tx, b); err != nil {
		return err
	}
	return a.saveBatch(tx, b)
}

// --- following the chain ---

// followBatch moves a batch along with its transaction's state in the chain: CONFIRMED when
// the transaction is in a block, back to SIGNED when that block is disconnected, FINAL (paid
// and booked, exactly once) when it is final. A batch that confirms takes its withdrawals over
// from the other batches of its fee-bump chain, which become REPLACED. chain.go calls it for
// every state change of a tracked transaction.
func (c *chainApply) followBatch(rec *bankdv1.ChainTx) error {
	v, found, err := c.tx.get(batchTxKey(rec.Txid))
	if err != nil || !found {
		return err
	}
	b := &bankdv1.PayoutBatch{}
	if ok, err := getProto(c.tx, batchKey(binary.BigEndian.Uint64(v)), b); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("batch index of %s names a batch that does not exist", rec.Txid)
	}
	a := c.a
	switch {
	case b.State == bankdv1.BatchState_BATCH_STATE_FINAL:
		if rec.State != bankdv1.TxState_TX_STATE_FINAL {
			a.problem("batch "+b.Id, "transaction %s was final and booked, and is now %s (a reorg deeper than final_depth); it stays booked", rec.Txid, rec.State)
		}
		return nil
	case b.State == bankdv1.BatchState_BATCH_STATE_ABANDONED:
		a.problem("batch "+b.Id, "transaction %s of an abandoned batch is %s on chain; its withdrawals were queued again", rec.Txid, rec.State)
		return nil
	case rec.State == bankdv1.TxState_TX_STATE_FINAL:
		b.BlockHeight = rec.BlockHeight
		if err := c.takeOver(b); err != nil {
			return err
		}
		return c.finalizeBatch(b)
	case rec.State == bankdv1.TxState_TX_STATE_CONFIRMED:
		b.State, b.BlockHeight = bankdv1.BatchState_BATCH_STATE_CONFIRMED, rec.BlockHeight
		if err := c.takeOver(b); err != nil {
			return err
		}
	case rec.State == bankdv1.TxState_TX_STATE_PENDING && b.State == bankdv1.BatchState_BATCH_STATE_CONFIRMED:
		b.State, b.BlockHeight = bankdv1.BatchState_BATCH_STATE_SIGNED, 0
	case rec.State == bankdv1.TxState_TX_STATE_REJECTED && rec.RejectReason == bankdv1.RejectReason_REJECT_REASON_DOUBLE_SPENT:
		if _, ours, err := c.tx.get(batchTxKey(rec.ConflictingTxid)); err != nil || ours {
			return err // a fee bump of the same withdrawals confirmed instead: takeOver follows
		}
		a.problem("batch "+b.Id, "transaction %s was double-spent by %s; its withdrawals stay in it until an operator decides", rec.Txid, rec.ConflictingTxid)
		return nil
	default:
		return nil // seen in the mempool, or evicted: the driver broadcasts it again
	}
	if err := a.followVault(c.tx, b); err != nil {
		return err
	}
	return a.saveBatch(c.tx, b)
}

// maxBumpChain bounds the walk along a batch's fee bumps.
const maxBumpChain = 1000

// takeOver makes b the batch that pays its withdrawals: every other batch of its fee-bump
// chain that is not final becomes REPLACED.
func (c *chainApply) takeOver(b *bankdv1.PayoutBatch) error {
	for _, dir := range []func(*bankdv1.PayoutBatch) string{
		func(x *bankdv1.PayoutBatch) string { return x.Replaces },
		func(x *bankdv1.PayoutBatch) string { return x.ReplacedBy },
	} {
		next := dir(b)
		for n := 0; next != "" && n < maxBumpChain; n++ {
			r, err := loadBatch(c.tx, "batch", next)
			if err != nil {
				return err
			}
			switch r.State {
			case bankdv1.BatchState_BATCH_STATE_PLANNED, bankdv1.BatchState_BATCH_STATE_SIGNED, bankdv1.BatchState_BATCH_STATE_CONFIRMED:
				r.State = bankdv1.BatchState_BATCH_STATE_REPLACED
				if err := c.a.saveBatch(c.tx, r); err != nil {
					return err
				}
			}
			next = dir(r)
		}
	}
	return c.a.payWith(c.tx, b)
}

// payWith points b's withdrawals and inputs' reservations at b.
func (a *applier) payWith(tx *txn, b *bankdv1.PayoutBatch) error {
	index, _ := ParseBatchID(b.Id)
	for _, in := range b.Inputs {
		tx.set(outpointKey(tagReserved, in.Outpoint), encodeUint64(index))
	}
	for _, o := range b.Outputs {
		if o.PayoutId == "" {
			continue
		}
		p, err := mustLoadPayout(tx, "batch", o.PayoutId)
		if err != nil {
			return err
		}
		if p.BatchId == b.Id && p.Txid == b.Txid {
			continue
		}
		p.BatchId, p.Txid, p.Vout = b.Id, b.Txid, o.Vout
		if err := a.savePayout(tx, p); err != nil {
			return err
		}
	}
	return nil
}

// finalizeBatch pays and books a batch whose transaction is final.
func (c *chainApply) finalizeBatch(b *bankdv1.PayoutBatch) error {
	a, tx := c.a, c.tx
	index, _ := ParseBatchID(b.Id)
	wallet := WalletAccount(b.WalletId)
	if err := c.ensureBooks("batch "+b.Id, book{wallet, bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		book{PayoutFeeIncomeAccount, bankdv1.AccountKind_ACCOUNT_KIND_INCOME}, book{PayoutFeeExpenseAccount, bankdv1.AccountKind_ACCOUNT_KIND_EXPENSE}); err != nil {
		return err
	}
	for _, o := range b.Outputs {
		if o.PayoutId == "" {
			continue
		}
		p, err := mustLoadPayout(tx, "batch", o.PayoutId)
		if err != nil {
			return err
		}
		total := p.AmountSat + p.FeeSat
		if err := a.book(tx, "payout "+p.Id, &bankdv1.Transfer{Id: payoutTransferID(p.Index, ":post"), PendingId: p.HoldTransferId, PostPending: true, Amount: total}); err != nil {
			return err
		}
		if err := a.book(tx, "payout "+p.Id, &bankdv1.Transfer{Id: payoutTransferID(p.Index, ":pay"), DebitAccountId: PayoutClearingAccount, CreditAccountId: wallet, Amount: total, ExternalRef: b.Txid}); err != nil {
			return err
		}
		p.State, p.ResolvedUnixMs = bankdv1.PayoutState_PAYOUT_STATE_PAID, a.now
		if err := a.savePayout(tx, p); err != nil {
			return err
		}
	}
	if b.ToWalletId != "" {
		return c.finalizeSweep(b, index)
	}
	if b.ChannelOpenId != "" {
		if err := c.finalizeChannel(b, index); err != nil {
			return err
		}
	}
	if b.VaultProposalId != "" {
		if err := c.finalizeVault(b, index); err != nil {
			return err
		}
	}
	var fee *bankdv1.Transfer
	switch diff := b.FeeSat - b.ChargedFeeSat; {
	case diff > 0:
		fee = &bankdv1.Transfer{Id: batchFeeTransferID(index), DebitAccountId: PayoutFeeExpenseAccount, CreditAccountId: wallet, Amount: diff, ExternalRef: b.Txid}
	case diff < 0:
		fee = &bankdv1.Transfer{Id: batchFeeTransferID(index), DebitAccountId: wallet, CreditAccountId: PayoutFeeIncomeAccount, Amount: -diff, ExternalRef: b.Txid}
	}
	if fee != nil {
		if err := a.book(tx, "batch "+b.Id, fee); err != nil {
			return err
		}
	}
	for _, in := range b.Inputs {
		tx.delete(outpointKey(tagReserved, in.Outpoint))
	}
	b.State, b.FinalUnixMs = bankdv1.BatchState_BATCH_STATE_FINAL, a.now
	if err := a.followVault(tx, b); err != nil {
		return err
	}
	return a.saveBatch(tx, b)
}

// finalizeSweep books a final sweep: the deposits' coins leave onchain-deposits for the hot
// wallet's books, less the fee, which is an expense.
func (c *chainApply) finalizeSweep(b *bankdv1.PayoutBatch, index uint64) error {
	a, tx := c.a, c.tx
	subject := "batch " + b.Id
	if err := c.ensureBooks(subject, book{WalletAccount(b.ToWalletId), bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		book{PayoutFeeExpenseAccount, bankdv1.AccountKind_ACCOUNT_KIND_EXPENSE}); err != nil {
		return err
	}
	var in int64
	for _, i := range b.Inputs {
		in += i.ValueSat
	}
	for _, t := range []*bankdv1.Transfer{
		{Id: batchTransferID(index, ":sweep"), DebitAccountId: WalletAccount(b.ToWalletId), CreditAccountId: DepositClearingAccount, Amount: in - b.FeeSat, ExternalRef: b.Txid},
		{Id: batchTransferID(index, ":fee"), DebitAccountId: PayoutFeeExpenseAccount, CreditAccountId: DepositClearingAccount, Amount: b.FeeSat, ExternalRef: b.Txid},
	} {
		if err := a.book(tx, subject, t); err != nil {
			return err
		}
	}
	for _, i := range b.Inputs {
		tx.delete(outpointKey(tagReserved, i.Outpoint))
	}
	b.State, b.FinalUnixMs = bankdv1.BatchState_BATCH_STATE_FINAL, a.now
	return a.saveBatch(tx, b)
}

// book applies a transfer of the payout books. A refusal becomes a problem: the withdrawal's
// state changes all the same (the chain command that made a batch final must apply, and a
// cancellation is the client's right), and the problem says what the books miss.
func (a *applier) book(tx *txn, subject string, t *bankdv1.Transfer) error {
	_, err := a.move(tx, t)
	if refusal, ok := asRefusal(err); ok {
		a.problem(subject, "transfer %s not applied: %s", t.Id, refusal.Message)
		return nil
	}
	return err
}
