package fsm

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Chain state. The leader's chain watcher proposes three commands, in chain order: a block
// connected on top of the tip, the tip block disconnected, and changes of the node's mempool.
// Each carries only the transactions that concern us (they pay a watched script, spend one of
// our UTXOs, or spend an input of a tracked unconfirmed transaction); the leader found them with
// the same script table every replica holds, and every replica applies them the same way.
//
// A block is refused unless it builds on the tip (prev_hash, height) and a disconnect unless it
// names the tip, so a deposed leader's late command, or a command retried after a timeout,
// changes nothing. A mempool change is refused unless it was observed at the current tip.
//
// Lifecycle of a tracked transaction (TxState):
//
//	(mempool)   -> PENDING
//	(block)     -> CONFIRMED, at block height h
//	(tip >= h + final_depth - 1) -> FINAL
//	PENDING, left the mempool          -> REJECTED (EVICTED)
//	PENDING, an input spent by a block -> REJECTED (DOUBLE_SPENT)
//	CONFIRMED or FINAL, its block disconnected -> PENDING (the node puts it back in its
//	    mempool; if it is not there, the next mempool change rejects it)
//	REJECTED, seen again (mempool or block) -> PENDING or CONFIRMED
//
// Deposits follow their transaction. The policy, in ledger terms (one clearing ASSET account,
// DepositClearingAccount, is the bank's side of every deposit):
//
//   - first seen (mempool or block): a pending transfer clearing -> customer, so the customer
//     sees the amount as pending credit but cannot spend it;
//   - its transaction becomes FINAL: the pending transfer is posted (CREDITED);
//   - its transaction is rejected: the pending transfer is voided (REJECTED); if the same output
//     shows up again, a new attempt starts with a new pending transfer;
//   - a CONFIRMED deposit whose block is disconnected stays pending (its transfer unchanged);
//   - a CREDITED deposit whose block is disconnected (a reorg deeper than final_depth) is
//     reversed by a posted transfer customer -> clearing that may take the customer's balance
//     below zero (the bank cannot refuse what the chain undid), and a new pending attempt
//     starts; an event reports the reversal.
//
// The UTXO set holds the confirmed outputs paying any watched script not spent by a confirmed
// transaction; an unconfirmed spend only marks it (spending_txid).

// DepositClearingAccount is the ASSET account every deposit credit is debited from: the bank's
// claim on the coins its deposit addresses received. It is created with the first deposit.
const DepositClearingAccount = "onchain-deposits"

// Chain limits.
const (
	MaxFinalDepth = 1000
	MaxKeepHashes = 100_000
	// MaxChainTxsPerCommand bounds the transactions one chain command may carry.
	MaxChainTxsPerCommand = 100_000
)

var (
	keyChainTip   = []byte("mchaintip")
	keyChainStart = []byte("mchainstart")
	keyChainStats = []byte("mchainstats")
)

// Chain tables (see keys.go for the rest of the keyspace):
//
//	m chaintip                      -> ChainTip
//	m chainstart                    -> uint32 height of the first block connected (empty chain: absent)
//	m chainstats                    -> uint64 utxos, int64 utxo value, uint64 pending txs, uint64 confirmed txs
//	m chainrescan                   -> RescanProgress of the running rescan (chain_rescan.go)
//	b <height>                      -> ChainBlockRecord: the block and what connecting it did
//	k <txid>                        -> ChainTx
//	n <height> <txid>               -> empty: CONFIRMED (not yet final) transactions by height
//	v <txid>                        -> empty: PENDING transactions
//	u <txid> <vout>                 -> Utxo
//	o <txid> <vout>                 -> txids (64 hex each) of tracked PENDING or CONFIRMED transactions spending it
//	g <txid> <vout>                 -> Deposit
//	j <account> 0x00 <index> <seq>  -> Outpoint of a deposit of the account, in first-seen order
const (
	tagChainBlock     = 'b'
	tagChainTx        = 'k'
	tagConfirmed      = 'n'
	tagPendingTx      = 'v'
	tagUtxo           = 'u'
	tagSpender        = 'o'
	tagDeposit        = 'g'
	tagAccountDeposit = 'j'
)

func heightKey(tag byte, h uint32) []byte { return binary.BigEndian.AppendUint32([]byte{tag}, h) }

func chainTxKey(txid string) []byte   { return tagged(tagChainTx, txid) }
func pendingTxKey(txid string) []byte { return tagged(tagPendingTx, txid) }

func confirmedKey(h uint32, txid string) []byte { return append(heightKey(tagConfirmed, h), txid...) }

func outpointKey(tag byte, op *bankdv1.Outpoint) []byte {
	k := tagged(tag, op.Txid)
	return binary.BigEndian.AppendUint32(k, op.Vout)
}

// addSpender records that tracked transaction txid spends op.
func addSpender(tx *txn, op *bankdv1.Outpoint, txid string) error {
	key := outpointKey(tagSpender, op)
	v, _, err := tx.get(key)
	if err != nil {
		return err
	}
	for i := 0; i+64 <= len(v); i += 64 {
		if string(v[i:i+64]) == txid {
			return nil
		}
	}
	tx.set(key, append(append([]byte(nil), v...), txid...))
	return nil
}

// removeSpender forgets that txid spends op.
func removeSpender(tx *txn, op *bankdv1.Outpoint, txid string) error {
	key := outpointKey(tagSpender, op)
	v, _, err := tx.get(key)
	if err != nil {
		return err
	}
	var rest []byte
	for i := 0; i+64 <= len(v); i += 64 {
		if string(v[i:i+64]) != txid {
			rest = append(rest, v[i:i+64]...)
		}
	}
	if len(rest) == 0 {
		tx.delete(key)
	} else {
		tx.set(key, rest)
	}
	return nil
}

// spenders lists the tracked transactions that spend op.
func spenders(tx *txn, op *bankdv1.Outpoint) ([]string, error) {
	v, _, err := tx.get(outpointKey(tagSpender, op))
	if err != nil {
		return nil, err
	}
	if len(v)%64 != 0 {
		return nil, fmt.Errorf("corrupt spender list of %s: %d bytes", outpointString(op), len(v))
	}
	var out []string
	for i := 0; i < len(v); i += 64 {
		out = append(out, string(v[i:i+64]))
	}
	return out, nil
}

func accountDepositKey(account string, index uint64, seq uint32) []byte {
	k := append(tagged(tagAccountDeposit, account), 0)
	k = binary.BigEndian.AppendUint64(k, index)
	return binary.BigEndian.AppendUint32(k, seq)
}

// chainStats are the counters GetChainStatus reports, kept so that it needs no scan.
type chainStats struct {
	utxos     uint64
	utxoValue int64
	pending   uint64
	confirmed uint64 // CONFIRMED, not FINAL
}

func loadChainStats(tx *txn) (chainStats, error) {
	v, ok, err := tx.get(keyChainStats)
	if err != nil || !ok {
		return chainStats{}, err
	}
	return decodeChainStats(v)
}

func decodeChainStats(v []byte) (chainStats, error) {
	if len(v) != 32 {
		return chainStats{}, fmt.Errorf("corrupt chain stats: %d bytes", len(v))
	}
	return chainStats{
		utxos:     binary.BigEndian.Uint64(v[0:]),
		utxoValue: int64(binary.BigEndian.Uint64(v[8:])),
		pending:   binary.BigEndian.Uint64(v[16:]),
		confirmed: binary.BigEndian.Uint64(v[24:]),
	}, nil
}

func (s chainStats) save(tx *txn) {
	v := binary.BigEndian.AppendUint64(nil, s.utxos)
	v = binary.BigEndian.AppendUint64(v, uint64(s.utxoValue))
	v = binary.BigEndian.AppendUint64(v, s.pending)
	v = binary.BigEndian.AppendUint64(v, s.confirmed)
	tx.set(keyChainStats, v)
}

// chainApply is the state one chain command works on.
type chainApply struct {
	a     *applier
	tx    *txn
	tip   *bankdv1.ChainTip // nil: empty chain
	stats chainStats
}

func (a *applier) newChainApply(tx *txn) (*chainApply, error) {
	c := &chainApply{a: a, tx: tx}
	tip := &bankdv1.ChainTip{}
	found, err := getProto(tx, keyChainTip, tip)
	if err != nil {
		return nil, err
	}
	if found {
		c.tip = tip
	}
	if c.stats, err = loadChainStats(tx); err != nil {
		return nil, err
	}
	return c, nil
}

// ValidateChainBlockConnected checks a block command's shape.
func ValidateChainBlockConnected(req *bankdv1.ChainBlockConnected) *Error {
	if err := CheckHash("hash", req.Hash); err != nil {
		return err
	}
	if err := CheckHash("prev_hash", req.PrevHash); err != nil {
		return err
	}
	if req.FinalDepth < 1 || req.FinalDepth > MaxFinalDepth {
		return invalid("final_depth: must be 1-%d, got %d", MaxFinalDepth, req.FinalDepth)
	}
	if req.KeepHashes < 1 || req.KeepHashes > MaxKeepHashes {
		return invalid("keep_hashes: must be 1-%d, got %d", MaxKeepHashes, req.KeepHashes)
	}
	return checkTxMatches("txs", req.Txs)
}

// CheckHash refuses a block hash or txid that is not 64 hex characters, naming field.
func CheckHash(field, h string) *Error {
	if len(h) != 64 {
		return invalid("%s: must be 64 hex characters, got %d", field, len(h))
	}
	if _, err := hex.DecodeString(h); err != nil {
		return invalid("%s: not hex: %v", field, err)
	}
	return nil
}

func checkTxMatches(field string, txs []*bankdv1.TxMatch) *Error {
	if len(txs) > MaxChainTxsPerCommand {
		return invalid("%s: at most %d transactions per command, got %d", field, MaxChainTxsPerCommand, len(txs))
	}
	seen := make(map[string]bool, len(txs))
	for i, m := range txs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := CheckHash(f+".txid", m.GetTxid()); err != nil {
			return err
		}
		if seen[m.Txid] {
			return invalid("%s.txid: %s appears twice", f, m.Txid)
		}
		seen[m.Txid] = true
		vouts := map[uint32]bool{}
		for j, o := range m.Outputs {
			if o.GetValueSat() < 0 || o.GetValueSat() > 21e14 {
				return invalid("%s.outputs[%d].value_sat: %d is not an amount of bitcoin", f, j, o.GetValueSat())
			}
			if len(o.GetScript()) == 0 || len(o.GetScript()) > 10_000 {
				return invalid("%s.outputs[%d].script: must be 1-10000 bytes", f, j)
			}
			if vouts[o.Vout] {
				return invalid("%s.outputs[%d].vout: %d appears twice", f, j, o.Vout)
			}
			vouts[o.Vout] = true
		}
		for j, in := range m.Inputs {
			if err := CheckHash(fmt.Sprintf("%s.inputs[%d].txid", f, j), in.GetTxid()); err != nil {
				return err
			}
		}
	}
	return nil
}

// ValidateChainBlockDisconnected checks a disconnect command's shape.
func ValidateChainBlockDisconnected(req *bankdv1.ChainBlockDisconnected) *Error {
	return CheckHash("hash", req.Hash)
}

// ValidateChainMempool checks a mempool command's shape.
func ValidateChainMempool(req *bankdv1.ChainMempool) *Error {
	if req.TipHash != "" {
		if err := CheckHash("tip_hash", req.TipHash); err != nil {
			return err
		}
	}
	if len(req.Removed) > MaxChainTxsPerCommand {
		return invalid("removed: at most %d transactions per command, got %d", MaxChainTxsPerCommand, len(req.Removed))
	}
	for i, txid := range req.Removed {
		if err := CheckHash(fmt.Sprintf("removed[%d]", i), txid); err != nil {
			return err
		}
	}
	return checkTxMatches("added", req.Added)
}

func (a *applier) chainBlockConnected(tx *txn, req *bankdv1.ChainBlockConnected) (proto.Message, error) {
	if err := ValidateChainBlockConnected(req); err != nil {
		return nil, err
	}
	c, err := a.newChainApply(tx)
	if err != nil {
		return nil, err
	}
	if c.tip != nil && (req.PrevHash != c.tip.Hash || req.Height != c.tip.Height+1) {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT,
			"block %s at %d does not build on the tip %s at %d", req.Hash, req.Height, c.tip.Hash, c.tip.Height)
	}
	if c.tip == nil {
		tx.set(keyChainStart, binary.BigEndian.AppendUint32(nil, req.Height))
	}
	block := &bankdv1.ChainBlockRecord{
		Tip:      &bankdv1.ChainTip{Height: req.Height, Hash: req.Hash, BlockTimeUnix: req.BlockTimeUnix, ConnectedAtUnixMs: a.now},
		PrevHash: req.PrevHash,
	}
	for _, m := range req.Txs {
		if err := c.confirm(m, block); err != nil {
			return nil, err
		}
	}
	if err := putProto(tx, heightKey(tagChainBlock, req.Height), block); err != nil {
		return nil, err
	}
	if req.Height >= req.KeepHashes {
		// Blocks that deep can no longer be disconnected (the follower refuses such reorgs).
		tx.delete(heightKey(tagChainBlock, req.Height-req.KeepHashes))
	}
	c.tip = block.Tip
	if err := putProto(tx, keyChainTip, c.tip); err != nil {
		return nil, err
	}
	if req.Height+1 >= req.FinalDepth {
		if err := c.finalize(req.Height + 1 - req.FinalDepth); err != nil {
			return nil, err
		}
	}
	c.stats.save(tx)
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_BlockConnected{BlockConnected: c.tip}})
	return c.tip, nil
}

// confirm records that m is in the block being connected.
func (c *chainApply) confirm(m *bankdv1.TxMatch, block *bankdv1.ChainBlockRecord) error {
	rec, found, err := c.loadTx(m.Txid)
	if err != nil {
		return err
	}
	if found && (rec.State == bankdv1.TxState_TX_STATE_CONFIRMED || rec.State == bankdv1.TxState_TX_STATE_FINAL) {
		return refuse(bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT,
			"transaction %s is already in block %s at %d", m.Txid, rec.BlockHash, rec.BlockHeight)
	}
	if !found {
		rec = &bankdv1.ChainTx{Txid: m.Txid, FirstSeenUnixMs: c.a.now}
	}
	wasPending := rec.State == bankdv1.TxState_TX_STATE_PENDING
	rec.Inputs, rec.Outputs = m.Inputs, nil
	spentOurs := false
	// Spends: our UTXOs are spent, and tracked unconfirmed transactions spending the same
	// outpoints are double-spent.
	for _, in := range m.Inputs {
		u := &bankdv1.Utxo{}
		ok, err := getProto(c.tx, outpointKey(tagUtxo, in), u)
		if err != nil {
			return err
		}
		if ok {
			u.SpendingTxid = m.Txid // restored as spent by it, should the block be disconnected
			block.Spent = append(block.Spent, u)
			c.deleteUtxo(u)
			spentOurs = true
		}
		if err := c.rejectConflicts(in, m.Txid); err != nil {
			return err
		}
		if err := addSpender(c.tx, in, m.Txid); err != nil {
			return err
		}
	}
	rec.BlockHeight, rec.BlockHash = block.Tip.Height, block.Tip.Hash
	deposits, err := c.recordOutputs(rec, m.Outputs, true)
	if err != nil {
		return err
	}
	if !found && !spentOurs && len(rec.Outputs) == 0 {
		// It only double-spends a tracked transaction (handled above): nothing of ours to track.
		for _, in := range m.Inputs {
			if err := removeSpender(c.tx, in, m.Txid); err != nil {
				return err
			}
		}
		return nil
	}
	if wasPending {
		c.tx.delete(pendingTxKey(rec.Txid))
		c.stats.pending--
	}
	rec.State, rec.RejectReason, rec.ConflictingTxid = bankdv1.TxState_TX_STATE_CONFIRMED, 0, ""
	rec.UpdatedUnixMs = c.a.now
	c.tx.set(confirmedKey(rec.BlockHeight, rec.Txid), nil)
	c.stats.confirmed++
	block.Txids = append(block.Txids, rec.Txid)
	if err := c.saveTx(rec); err != nil {
		return err
	}
	return c.sightDeposits(rec, deposits)
}

// recordOutputs keeps the outputs of rec that pay a watched script (the leader's candidates are
// checked against the script table here), marks those scripts used and, when confirmed, adds
// them to the UTXO set. It returns the outputs that pay a deposit address.
func (c *chainApply) recordOutputs(rec *bankdv1.ChainTx, outs []*bankdv1.TxOutputMatch, confirmed bool) ([]depositOutput, error) {
	var deposits []depositOutput
	for _, o := range outs {
		ws := &bankdv1.WatchedScript{}
		ok, err := getProto(c.tx, scriptKey(o.Script), ws)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // a fingerprint collision in the leader's index: not ours
		}
		rec.Outputs = append(rec.Outputs, o)
		if err := c.a.markScriptUsed(c.tx, ws); err != nil {
			return nil, err
		}
		op := &bankdv1.Outpoint{Txid: rec.Txid, Vout: o.Vout}
		if confirmed {
			u := &bankdv1.Utxo{Outpoint: op, ValueSat: o.ValueSat, Script: o.Script, Address: ws.Address,
				WalletId: ws.WalletId, AccountId: ws.AccountId, Height: rec.BlockHeight}
			if err := c.putUtxo(u); err != nil {
				return nil, err
			}
		}
		if ws.AccountId != "" {
			deposits = append(deposits, depositOutput{op: op, value: o.ValueSat, script: ws})
		}
	}
	return deposits, nil
}

type depositOutput struct {
	op     *bankdv1.Outpoint
	value  int64
	script *bankdv1.WatchedScript
}

// rejectConflicts rejects every tracked PENDING transaction other than spender that spends op.
func (c *chainApply) rejectConflicts(op *bankdv1.Outpoint, spender string) error {
	others, err := spenders(c.tx, op)
	if err != nil {
		return err
	}
	for _, other := range others {
		if other == spender {
			continue
		}
		rec, found, err := c.loadTx(other)
		if err != nil {
			return err
		}
		if found && rec.State == bankdv1.TxState_TX_STATE_PENDING {
			if err := c.reject(rec, bankdv1.RejectReason_REJECT_REASON_DOUBLE_SPENT, spender); err != nil {
				return err
			}
		}
	}
	return nil
}

// reject moves a PENDING transaction to REJECTED and voids its pending deposits.
func (c *chainApply) reject(rec *bankdv1.ChainTx, reason bankdv1.RejectReason, conflicting string) error {
	c.tx.delete(pendingTxKey(rec.Txid))
	c.stats.pending--
	for _, in := range rec.Inputs {
		if err := removeSpender(c.tx, in, rec.Txid); err != nil {
			return err
		}
		if err := c.clearSpending(in, rec.Txid); err != nil {
			return err
		}
	}
	rec.State, rec.RejectReason, rec.ConflictingTxid, rec.UpdatedUnixMs = bankdv1.TxState_TX_STATE_REJECTED, reason, conflicting, c.a.now
	if err := c.saveTx(rec); err != nil {
		return err
	}
	return c.forEachDeposit(rec, c.voidDeposit)
}

// finalize makes FINAL every CONFIRMED transaction at or below height and credits its deposits.
func (c *chainApply) finalize(height uint32) error {
	lower := []byte{tagConfirmed}
	upper := heightKey(tagConfirmed, height+1)
	var txids []string
	err := c.tx.scan(lower, upper, func(k, _ []byte) (bool, error) {
		txids = append(txids, string(k[5:]))
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, txid := range txids {
		rec, found, err := c.loadTx(txid)
		if err != nil {
			return err
		}
		if !found || rec.State != bankdv1.TxState_TX_STATE_CONFIRMED {
			return fmt.Errorf("confirmed index names %s, which is %v", txid, rec.GetState())
		}
		c.tx.delete(confirmedKey(rec.BlockHeight, txid))
		c.stats.confirmed--
		for _, in := range rec.Inputs {
			// Nothing can double-spend a final transaction any more.
			if err := removeSpender(c.tx, in, txid); err != nil {
				return err
			}
		}
		rec.State, rec.UpdatedUnixMs = bankdv1.TxState_TX_STATE_FINAL, c.a.now
		if err := c.saveTx(rec); err != nil {
			return err
		}
		if err := c.forEachDeposit(rec, c.creditDeposit); err != nil {
			return err
		}
		if err := c.bookInflows(rec); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) chainBlockDisconnected(tx *txn, req *bankdv1.ChainBlockDisconnected) (proto.Message, error) {
	if err := ValidateChainBlockDisconnected(req); err != nil {
		return nil, err
	}
	c, err := a.newChainApply(tx)
	if err != nil {
		return nil, err
	}
	if c.tip == nil || c.tip.Height != req.Height || c.tip.Hash != req.Hash {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, "block %s at %d is not the tip %s", req.Hash, req.Height, c.tip.GetHash())
	}
	block := &bankdv1.ChainBlockRecord{}
	found, err := getProto(tx, heightKey(tagChainBlock, req.Height), block)
	if err != nil {
		return nil, err
	}
	if !found || block.Tip.GetHash() != req.Hash {
		return nil, fmt.Errorf("tip %s at %d has no block record", req.Hash, req.Height)
	}
	// Undo in reverse block order: later transactions may spend earlier ones' outputs.
	for i := len(block.Txids) - 1; i >= 0; i-- {
		if err := c.unconfirm(block.Txids[i]); err != nil {
			return nil, err
		}
	}
	inBlock := make(map[string]bool, len(block.Txids))
	for _, txid := range block.Txids {
		inBlock[txid] = true
	}
	for _, u := range block.Spent {
		if inBlock[u.Outpoint.Txid] {
			continue // created and spent in this block: neither is confirmed any more
		}
		if err := c.putUtxo(u); err != nil {
			return nil, err
		}
	}
	tx.delete(heightKey(tagChainBlock, req.Height))
	start, err := c.startHeight()
	if err != nil {
		return nil, err
	}
	if req.Height == start {
		tx.delete(keyChainTip)
		tx.delete(keyChainStart)
		c.tip = nil
	} else {
		prev := &bankdv1.ChainBlockRecord{}
		if found, err := getProto(tx, heightKey(tagChainBlock, req.Height-1), prev); err != nil {
			return nil, err
		} else if found {
			c.tip = prev.Tip
		} else {
			c.tip = &bankdv1.ChainTip{Height: req.Height - 1, Hash: block.PrevHash}
		}
		if err := putProto(tx, keyChainTip, c.tip); err != nil {
			return nil, err
		}
	}
	if err := c.clampRescan(); err != nil {
		return nil, err
	}
	c.stats.save(tx)
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_BlockDisconnected{BlockDisconnected: block.Tip}})
	if c.tip == nil {
		return &bankdv1.ChainTip{}, nil
	}
	return c.tip, nil
}

func (c *chainApply) startHeight() (uint32, error) {
	v, ok, err := c.tx.get(keyChainStart)
	if err != nil {
		return 0, err
	}
	if !ok || len(v) != 4 {
		return 0, fmt.Errorf("chain has a tip but no start height")
	}
	return binary.BigEndian.Uint32(v), nil
}

// unconfirm returns a transaction of the disconnected tip block to PENDING.
func (c *chainApply) unconfirm(txid string) error {
	rec, found, err := c.loadTx(txid)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("block record names %s, which is not tracked", txid)
	}
	switch rec.State {
	case bankdv1.TxState_TX_STATE_CONFIRMED:
		c.tx.delete(confirmedKey(rec.BlockHeight, txid))
		c.stats.confirmed--
	case bankdv1.TxState_TX_STATE_FINAL:
	default:
		return fmt.Errorf("transaction %s of the disconnected block is %v", txid, rec.State)
	}
	wasFinal := rec.State == bankdv1.TxState_TX_STATE_FINAL
	for _, o := range rec.Outputs {
		u := &bankdv1.Utxo{}
		op := &bankdv1.Outpoint{Txid: txid, Vout: o.Vout}
		ok, err := getProto(c.tx, outpointKey(tagUtxo, op), u)
		if err != nil {
			return err
		}
		if ok {
			c.deleteUtxo(u)
		}
	}
	for _, in := range rec.Inputs {
		if err := addSpender(c.tx, in, txid); err != nil {
			return err
		}
	}
	rec.State, rec.BlockHeight, rec.BlockHash, rec.UpdatedUnixMs = bankdv1.TxState_TX_STATE_PENDING, 0, "", c.a.now
	c.tx.set(pendingTxKey(txid), nil)
	c.stats.pending++
	if err := c.saveTx(rec); err != nil {
		return err
	}
	if !wasFinal {
		return nil
	}
	return c.forEachDeposit(rec, func(d *bankdv1.Deposit) error {
		if d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED {
			return nil
		}
		if reversed, err := c.reverseDeposit(d); err != nil || !reversed {
			return err
		}
		return c.startDepositAttempt(d)
	})
}

func (a *applier) chainMempool(tx *txn, req *bankdv1.ChainMempool) (proto.Message, error) {
	if err := ValidateChainMempool(req); err != nil {
		return nil, err
	}
	c, err := a.newChainApply(tx)
	if err != nil {
		return nil, err
	}
	if req.TipHash != c.tip.GetHash() {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT,
			"mempool was observed at tip %q, the cluster's tip is %q", req.TipHash, c.tip.GetHash())
	}
	for _, txid := range req.Removed {
		rec, found, err := c.loadTx(txid)
		if err != nil {
			return nil, err
		}
		if found && rec.State == bankdv1.TxState_TX_STATE_PENDING {
			if err := c.reject(rec, bankdv1.RejectReason_REJECT_REASON_EVICTED, ""); err != nil {
				return nil, err
			}
		}
	}
	for _, m := range req.Added {
		if err := c.seeUnconfirmed(m); err != nil {
			return nil, err
		}
	}
	c.stats.save(tx)
	return &bankdv1.ChainTx{}, nil
}

// seeUnconfirmed tracks a mempool transaction that concerns us.
func (c *chainApply) seeUnconfirmed(m *bankdv1.TxMatch) error {
	rec, found, err := c.loadTx(m.Txid)
	if err != nil {
		return err
	}
	if found && rec.State != bankdv1.TxState_TX_STATE_REJECTED {
		return nil // already pending, or confirmed (the leader's mempool view lags the chain)
	}
	if !found {
		rec = &bankdv1.ChainTx{Txid: m.Txid, FirstSeenUnixMs: c.a.now}
	}
	rec.Inputs, rec.Outputs = m.Inputs, nil
	deposits, err := c.recordOutputs(rec, m.Outputs, false)
	if err != nil {
		return err
	}
	spendsOurs := false
	for _, in := range m.Inputs {
		if err := addSpender(c.tx, in, m.Txid); err != nil {
			return err
		}
		u := &bankdv1.Utxo{}
		ok, err := getProto(c.tx, outpointKey(tagUtxo, in), u)
		if err != nil {
			return err
		}
		if ok {
			spendsOurs = true
			u.SpendingTxid = m.Txid
			if err := putProto(c.tx, outpointKey(tagUtxo, in), u); err != nil {
				return err
			}
		}
	}
	if len(rec.Outputs) == 0 && !spendsOurs && !found {
		// Only a conflict candidate the leader could not tell apart: track nothing.
		for _, in := range m.Inputs {
			if err := removeSpender(c.tx, in, m.Txid); err != nil {
				return err
			}
		}
		return nil
	}
	rec.State, rec.RejectReason, rec.ConflictingTxid, rec.UpdatedUnixMs = bankdv1.TxState_TX_STATE_PENDING, 0, "", c.a.now
	c.tx.set(pendingTxKey(rec.Txid), nil)
	c.stats.pending++
	if err := c.saveTx(rec); err != nil {
		return err
	}
	return c.sightDeposits(rec, deposits)
}

// clearSpending forgets spender as the unconfirmed spender of our UTXO at op, if it is.
func (c *chainApply) clearSpending(op *bankdv1.Outpoint, spender string) error {
	u := &bankdv1.Utxo{}
	ok, err := getProto(c.tx, outpointKey(tagUtxo, op), u)
	if err != nil || !ok || u.SpendingTxid != spender {
		return err
	}
	u.SpendingTxid = ""
	return putProto(c.tx, outpointKey(tagUtxo, op), u)
}

// sightDeposits starts (or keeps) a pending credit for every deposit output of rec.
func (c *chainApply) sightDeposits(rec *bankdv1.ChainTx, outs []depositOutput) error {
	for _, o := range outs {
		d := &bankdv1.Deposit{}
		found, err := getProto(c.tx, outpointKey(tagDeposit, o.op), d)
		if err != nil {
			return err
		}
		if found && d.State != bankdv1.DepositState_DEPOSIT_STATE_REJECTED {
			if rec.State == bankdv1.TxState_TX_STATE_CONFIRMED && d.BlockHeight != rec.BlockHeight {
				d.BlockHeight, d.UpdatedUnixMs = rec.BlockHeight, c.a.now
				if err := c.saveDeposit(d); err != nil {
					return err
				}
			}
			continue
		}
		if !found {
			d = &bankdv1.Deposit{Outpoint: o.op, AccountId: o.script.AccountId, WalletId: o.script.WalletId,
				Address: o.script.Address, ValueSat: o.value}
			if err := putProto(c.tx, accountDepositKey(d.AccountId, c.a.index, c.a.nextSeq()), o.op); err != nil {
				return err
			}
		}
		d.BlockHeight = rec.BlockHeight
		if err := c.startDepositAttempt(d); err != nil {
			return err
		}
	}
	return nil
}

// startDepositAttempt makes d PENDING under a new pending transfer clearing -> customer. When
// the ledger refuses the credit (an amount of 0, an account total at its limit, an account the
// chain driver may not credit, the id or the clearing account taken by another owner), the
// deposit is kept PENDING without a transfer, with the reason, and a problem is recorded:
// nothing moved, and the command that saw the deposit still applies.
func (c *chainApply) startDepositAttempt(d *bankdv1.Deposit) error {
	d.Attempt++
	d.TransferId = depositTransferID("d", d.Outpoint, d.Attempt)
	d.State, d.Problem, d.UpdatedUnixMs = bankdv1.DepositState_DEPOSIT_STATE_PENDING, "", c.a.now
	problem := ""
	if err := c.ensureClearingAccount(); err != nil {
		refusal, ok := asRefusal(err)
		if !ok {
			return err
		}
		problem = refusal.Message
	} else {
		res, err := c.a.driverTransfer(c.tx, &bankdv1.Transfer{
			Id: d.TransferId, DebitAccountId: DepositClearingAccount, CreditAccountId: d.AccountId,
			Amount: d.ValueSat, Currency: "BTC", Pending: true, ExternalRef: outpointString(d.Outpoint),
		})
		if err != nil {
			return err
		}
		if res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
			problem = res.Message
		}
	}
	if problem != "" {
		d.TransferId, d.Problem = "", problem
		c.a.problem("deposit "+outpointString(d.Outpoint), "no pending credit of %d sat for %q: %s", d.ValueSat, d.AccountId, problem)
	}
	return c.saveDeposit(d)
}

// creditDeposit posts the pending transfer of a PENDING deposit (CREDITED); any other deposit,
// or one whose credit the ledger refused, is left as it is.
func (c *chainApply) creditDeposit(d *bankdv1.Deposit) error {
	if d.State != bankdv1.DepositState_DEPOSIT_STATE_PENDING || d.TransferId == "" {
		return nil
	}
	if resolved, err := c.resolveDeposit(d, true); err != nil || !resolved {
		return err
	}
	d.State = bankdv1.DepositState_DEPOSIT_STATE_CREDITED
	return c.saveDeposit(d)
}

// voidDeposit voids the pending transfer of a PENDING deposit (REJECTED); any other deposit is
// left as it is.
func (c *chainApply) voidDeposit(d *bankdv1.Deposit) error {
	if d.State != bankdv1.DepositState_DEPOSIT_STATE_PENDING {
		return nil
	}
	if resolved, err := c.resolveDeposit(d, false); err != nil || !resolved {
		return err
	}
	d.State = bankdv1.DepositState_DEPOSIT_STATE_REJECTED
	return c.saveDeposit(d)
}

// resolveDeposit posts (post) or voids the pending transfer of d's current attempt, if it has
// one, and reports whether it did. The ledger may refuse: the pending credit resolved by
// someone else, or the id of its resolution taken (both only possible for records written
// before owners were recorded). Then the deposit keeps its state with the reason, a problem is
// recorded, and the chain command still applies: refusing a block would stop the chain from
// being followed (the watcher would propose it again for ever), and stopping the state machine
// would stop every replica at this index, again after every restart.
func (c *chainApply) resolveDeposit(d *bankdv1.Deposit, post bool) (bool, error) {
	if d.TransferId == "" {
		return true, nil
	}
	t := &bankdv1.Transfer{Id: depositTransferID("p", d.Outpoint, d.Attempt), PendingId: d.TransferId, PostPending: true}
	verb := "post"
	if !post {
		t = &bankdv1.Transfer{Id: depositTransferID("v", d.Outpoint, d.Attempt), PendingId: d.TransferId, VoidPending: true}
		verb = "void"
	}
	res, err := c.a.driverTransfer(c.tx, t)
	if err != nil {
		return false, err
	}
	if res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		d.Problem = res.Message
		c.a.problem("deposit "+outpointString(d.Outpoint), "%s of pending credit %s refused: %s", verb, d.TransferId, res.Message)
		return false, c.saveDeposit(d)
	}
	return true, nil
}

// reverseDeposit takes back a credited deposit whose block left the chain, and reports whether
// it did. The reversal may take the customer below zero: the chain, not the customer, undid the
// deposit. If the ledger refuses it (the id taken, a total at its limit), the deposit stays
// CREDITED with the reason and a problem is recorded, for the reasons resolveDeposit gives; no
// new attempt starts then, since that would credit the same output twice.
func (c *chainApply) reverseDeposit(d *bankdv1.Deposit) (bool, error) {
	d.Reversals++
	c.a.allowNegative = true
	res, err := c.a.driverTransfer(c.tx, &bankdv1.Transfer{
		Id: depositTransferID("r", d.Outpoint, d.Reversals), DebitAccountId: d.AccountId, CreditAccountId: DepositClearingAccount,
		Amount: d.ValueSat, Currency: "BTC", ExternalRef: outpointString(d.Outpoint),
	})
	c.a.allowNegative = false
	if err != nil {
		return false, err
	}
	if res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		d.Reversals-- // it counts reversals posted
		d.Problem = res.Message
		c.a.problem("deposit "+outpointString(d.Outpoint), "reversal of the credit %s refused: %s", d.TransferId, res.Message)
		return false, c.saveDeposit(d)
	}
	return true, nil
}

func (c *chainApply) ensureClearingAccount() error {
	return c.a.ensureAccount(c.tx, &bankdv1.Account{
		Id: DepositClearingAccount, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET,
		Metadata: map[string]string{"purpose": "on-chain deposits received by the bank's deposit addresses"},
	})
}

// depositTransferID names the ledger transfers of a deposit within the 64-character id limit:
// kind d (pending credit), p (post), v (void), r (reversal), the txid in base64url, vout, n.
func depositTransferID(kind string, op *bankdv1.Outpoint, n uint32) string {
	raw, _ := hex.DecodeString(op.Txid)
	return kind + ":" + base64.RawURLEncoding.EncodeToString(raw) + ":" + strconv.FormatUint(uint64(op.Vout), 10) + ":" + strconv.FormatUint(uint64(n), 10)
}

func outpointString(op *bankdv1.Outpoint) string {
	return op.Txid + ":" + strconv.FormatUint(uint64(op.Vout), 10)
}

// forEachDeposit calls fn for the deposit of every output of rec that has one.
func (c *chainApply) forEachDeposit(rec *bankdv1.ChainTx, fn func(*bankdv1.Deposit) error) error {
	for _, o := range rec.Outputs {
		d := &bankdv1.Deposit{}
		found, err := getProto(c.tx, outpointKey(tagDeposit, &bankdv1.Outpoint{Txid: rec.Txid, Vout: o.Vout}), d)
		if err != nil {
			return err
		}
		if found {
			if err := fn(d); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *chainApply) saveDeposit(d *bankdv1.Deposit) error {
	d.UpdatedUnixMs = c.a.now
	if err := putProto(c.tx, outpointKey(tagDeposit, d.Outpoint), d); err != nil {
		return err
	}
	c.a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Deposit{Deposit: proto.Clone(d).(*bankdv1.Deposit)}})
	return nil
}

func (c *chainApply) loadTx(txid string) (*bankdv1.ChainTx, bool, error) {
	rec := &bankdv1.ChainTx{}
	found, err := getProto(c.tx, chainTxKey(txid), rec)
	return rec, found, err
}

func (c *chainApply) saveTx(rec *bankdv1.ChainTx) error {
	if err := putProto(c.tx, chainTxKey(rec.Txid), rec); err != nil {
		return err
	}
	c.a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_ChainTx{ChainTx: proto.Clone(rec).(*bankdv1.ChainTx)}})
	return c.followBatch(rec)
}

func (c *chainApply) putUtxo(u *bankdv1.Utxo) error {
	key := outpointKey(tagUtxo, u.Outpoint)
	if _, exists, err := c.tx.get(key); err != nil {
		return err
	} else if !exists {
		c.stats.utxos++
		c.stats.utxoValue += u.ValueSat
	}
	return putProto(c.tx, key, u)
}

func (c *chainApply) deleteUtxo(u *bankdv1.Utxo) {
	c.tx.delete(outpointKey(tagUtxo, u.Outpoint))
	c.stats.utxos--
	c.stats.utxoValue -= u.ValueSat
}
