package regtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

const (
	// DefaultFeeRate is the fee rate Send uses when given 0: 2 sat/vB, twice btcd's minimum
	// relay fee.
	DefaultFeeRate btcutil.Amount = 2000

	// minRelayFeeRate is btcd's default minimum relay fee, in sat/kvB.
	minRelayFeeRate = 1000
	// changeDust is the smallest change output worth creating; less goes to the fee.
	changeDust = 1000
	// rbfSequence is the largest input sequence number that signals BIP125 replaceability.
	rbfSequence = wire.MaxTxInSequenceNum - 2
	// scanBatch is how many blocks one RPC batch fetches when the faucet catches up.
	scanBatch = 100
	// p2wpkhInputWitness bounds the witness of one P2WPKH input: item count, a signature of
	// at most 72 bytes plus the sighash byte, and a 33-byte public key, with length prefixes.
	p2wpkhInputWitness = 1 + 1 + 73 + 1 + 33
	// txInNonWitness is an input without its witness: outpoint, empty script, sequence.
	txInNonWitness = 32 + 4 + 1 + 4
)

// coinbaseMaturity is how many blocks a coinbase output must wait before it can be spent.
var coinbaseMaturity = int64(chaincfg.RegressionNetParams.CoinbaseMaturity)

// faucet holds the harness's private key and the outputs paying it on the node's main chain.
// Only the faucet can spend those outputs, so the transactions it broadcast itself are all
// the mempool spends there can be.
type faucet struct {
	key      *btcec.PrivateKey
	addr     btcutil.Address
	pkScript []byte

	mu      sync.Mutex                       // serialises scanning, coin selection and broadcasting
	scanned []chainhash.Hash                 // main-chain block hash at each scanned height, from 0
	coins   map[wire.OutPoint]coin           // unspent outputs paying pkScript in the scanned chain
	spentBy map[wire.OutPoint]chainhash.Hash // coins spent by a transaction the faucet broadcast
}

type coin struct {
	value    int64
	height   int64
	coinbase bool
}

func newFaucet() (*faucet, error) {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("regtest: faucet key: %w", err)
	}
	return faucetFromKey(key)
}

func faucetFromKey(key *btcec.PrivateKey) (*faucet, error) {
	pkHash := btcutil.Hash160(key.PubKey().SerializeCompressed())
	addr, err := btcutil.NewAddressWitnessPubKeyHash(pkHash, &chaincfg.RegressionNetParams)
	if err != nil {
		return nil, fmt.Errorf("regtest: faucet address: %w", err)
	}
	pkScript, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, fmt.Errorf("regtest: faucet script: %w", err)
	}
	return &faucet{
		key:      key,
		addr:     addr,
		pkScript: pkScript,
		coins:    make(map[wire.OutPoint]coin),
		spentBy:  make(map[wire.OutPoint]chainhash.Hash),
	}, nil
}

// Address is the faucet's P2WPKH address, which receives every coinbase the node mines.
func (b *Btcd) Address() btcutil.Address { return b.faucet.addr }

// Send pays outputs from the faucet's confirmed coins (coinbases after 100 blocks) in one
// transaction, returns change to the faucet, and broadcasts it. feeRate is in satoshis per
// 1,000 virtual bytes; 0 means DefaultFeeRate. The transaction signals BIP125
// replaceability. It spends witness outputs, so segwit must be active (see SegwitHeight).
func (b *Btcd) Send(ctx context.Context, outputs []*wire.TxOut, feeRate btcutil.Amount) (*wire.MsgTx, error) {
	if len(outputs) == 0 {
		return nil, errors.New("regtest: send: no outputs")
	}
	f := b.faucet
	f.mu.Lock()
	defer f.mu.Unlock()
	tx, err := b.fund(ctx, nil, outputs, feeRate, func(int64) int64 { return 0 })
	if err != nil {
		return nil, fmt.Errorf("regtest: send: %w", err)
	}
	return tx, nil
}

// Replace spends the inputs of tx, an unconfirmed transaction the faucet sent, to outputs
// instead, adding faucet coins if they do not cover the new outputs. The fee is at least
// feeRate (0 means DefaultFeeRate) and is raised as far as BIP125 requires for btcd to accept
// the replacement: a higher fee rate than tx and any of its unconfirmed descendants, and an
// absolute fee above theirs by the minimum relay fee. Use DoubleSpend for a confirmed tx.
func (b *Btcd) Replace(ctx context.Context, tx *wire.MsgTx, outputs []*wire.TxOut, feeRate btcutil.Amount) (*wire.MsgTx, error) {
	if len(outputs) == 0 {
		return nil, errors.New("regtest: replace: no outputs")
	}
	f := b.faucet
	f.mu.Lock()
	defer f.mu.Unlock()

	conflicts, err := b.mempoolConflicts(ctx, tx.TxHash())
	if err != nil {
		return nil, fmt.Errorf("regtest: replace %v: %w", tx.TxHash(), err)
	}
	minFee := func(vsize int64) int64 {
		if conflicts.fee == 0 {
			return 0 // tx is not in the mempool: nothing to outbid
		}
		absolute := conflicts.fee + ceilDiv(minRelayFeeRate*vsize, 1000)
		rate := ceilDiv((conflicts.maxFeePerKvB+1)*vsize, 1000)
		return max(absolute, rate)
	}
	required := make([]wire.OutPoint, len(tx.TxIn))
	for i, in := range tx.TxIn {
		required[i] = in.PreviousOutPoint
	}
	replacement, err := b.fund(ctx, required, outputs, feeRate, minFee)
	if err != nil {
		return nil, fmt.Errorf("regtest: replace %v: %w", tx.TxHash(), err)
	}
	return replacement, nil
}

// DoubleSpend spends the inputs of tx, a transaction the faucet sent, to outputs instead,
// whether tx is unconfirmed or confirmed. An unconfirmed tx is replaced in the mempool as by
// Replace. A confirmed tx is unconfirmed first: the block holding it and all blocks above it
// (depth d) are invalidated, which returns tx to the mempool, the replacement is broadcast,
// and d+1 new blocks are mined so that the branch holding the replacement wins (the old branch
// is then reconsidered, as in Reorg). The replacement is confirmed once DoubleSpend returns
// in that case, and unconfirmed in the first.
func (b *Btcd) DoubleSpend(ctx context.Context, tx *wire.MsgTx, outputs []*wire.TxOut, feeRate btcutil.Amount) (*wire.MsgTx, error) {
	st, err := b.TxStatus(ctx, tx.TxHash())
	if err != nil && !errors.Is(err, ErrUnknownTx) {
		return nil, fmt.Errorf("regtest: double spend: %w", err)
	}
	if err != nil || st.Confirmations == 0 {
		return b.Replace(ctx, tx, outputs, feeRate)
	}
	depth := int(st.Confirmations)
	var replacement *wire.MsgTx
	_, _, err = b.reorg(ctx, depth, depth+1, func(ctx context.Context) error {
		var err error
		replacement, err = b.Replace(ctx, tx, outputs, feeRate)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("regtest: double spend of %v confirmed %d deep: %w", tx.TxHash(), depth, err)
	}
	return replacement, nil
}

// fund builds, signs and broadcasts a transaction paying outputs. It spends the required
// outpoints (which must be faucet coins) plus as many other spendable faucet coins as needed,
// largest first, and pays a fee of at least feeRate and at least minFee(vsize). f.mu is held.
func (b *Btcd) fund(ctx context.Context, required []wire.OutPoint, outputs []*wire.TxOut,
	feeRate btcutil.Amount, minFee func(vsize int64) int64) (*wire.MsgTx, error) {

	f := b.faucet
	if feeRate <= 0 {
		feeRate = DefaultFeeRate
	}
	var target int64
	for i, out := range outputs {
		if out.Value <= 0 {
			return nil, fmt.Errorf("output %d has value %d", i, out.Value)
		}
		target += out.Value
	}
	tipHeight, err := b.syncFaucet(ctx)
	if err != nil {
		return nil, err
	}

	inputs := slices.Clone(required)
	var inSum int64
	for _, op := range required {
		c, ok := f.coins[op]
		if !ok {
			return nil, fmt.Errorf("input %v is not an unspent faucet output on the main chain", op)
		}
		inSum += c.value
	}

	change := &wire.TxOut{PkScript: f.pkScript}
	withChange := append(slices.Clone(outputs), change)
	fee := func(nIn int) int64 {
		vsize := estimateVsize(nIn, withChange)
		return max(ceilDiv(int64(feeRate)*vsize, 1000), minFee(vsize))
	}

	if inSum < target+fee(len(inputs)) {
		candidates, err := b.spendableCoins(ctx, tipHeight, required)
		if err != nil {
			return nil, err
		}
		for _, op := range candidates {
			inputs = append(inputs, op)
			inSum += f.coins[op].value
			if inSum >= target+fee(len(inputs)) {
				break
			}
		}
	}
	feeAmt := fee(len(inputs))
	if inSum < target+feeAmt {
		return nil, fmt.Errorf("faucet has %v spendable, needs %v plus a fee of %v (mine more blocks)",
			btcutil.Amount(inSum), btcutil.Amount(target), btcutil.Amount(feeAmt))
	}

	tx := wire.NewMsgTx(2)
	for _, op := range inputs {
		in := wire.NewTxIn(&op, nil, nil)
		in.Sequence = rbfSequence
		tx.AddTxIn(in)
	}
	for _, out := range outputs {
		tx.AddTxOut(&wire.TxOut{Value: out.Value, PkScript: bytes.Clone(out.PkScript)})
	}
	paidFee := inSum - target
	if change.Value = inSum - target - feeAmt; change.Value >= changeDust {
		tx.AddTxOut(change)
		paidFee = feeAmt
	}
	if err := f.sign(tx); err != nil {
		return nil, err
	}
	txid, err := b.SendRawTransaction(ctx, tx)
	if err != nil {
		return nil, err
	}
	for _, op := range inputs {
		f.spentBy[op] = txid
	}
	b.log.Debug("regtest: faucet sent", "txid", txid, "inputs", len(inputs), "outputs", len(tx.TxOut),
		"fee", btcutil.Amount(paidFee), "vsize", VirtualSize(tx))
	return tx, nil
}

// spendableCoins lists the faucet coins that can go into the next block and are not spent by
// a faucet transaction still in the mempool, largest first, excluding those in skip.
func (b *Btcd) spendableCoins(ctx context.Context, tipHeight int64, skip []wire.OutPoint) ([]wire.OutPoint, error) {
	f := b.faucet
	inMempool := make(map[chainhash.Hash]bool)
	if len(f.spentBy) > 0 {
		ids, err := b.Mempool(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			inMempool[id] = true
		}
	}
	var ops []wire.OutPoint
	for op, c := range f.coins {
		if slices.Contains(skip, op) {
			continue
		}
		if c.coinbase && tipHeight+1-c.height < coinbaseMaturity {
			continue
		}
		if spender, ok := f.spentBy[op]; ok {
			if inMempool[spender] {
				continue
			}
			delete(f.spentBy, op) // the spender was replaced or dropped: the coin is free again
		}
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b wire.OutPoint) int {
		if c := cmp.Compare(f.coins[b].value, f.coins[a].value); c != 0 {
			return c
		}
		if c := bytes.Compare(a.Hash[:], b.Hash[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
	})
	return ops, nil
}

// sign adds a P2WPKH witness to every input of tx; all of them spend faucet coins.
func (f *faucet) sign(tx *wire.MsgTx) error {
	prevOuts := txscript.NewMultiPrevOutFetcher(nil)
	for _, in := range tx.TxIn {
		c := f.coins[in.PreviousOutPoint]
		prevOuts.AddPrevOut(in.PreviousOutPoint, &wire.TxOut{Value: c.value, PkScript: f.pkScript})
	}
	sigHashes := txscript.NewTxSigHashes(tx, prevOuts)
	for i, in := range tx.TxIn {
		c := f.coins[in.PreviousOutPoint]
		witness, err := txscript.WitnessSignature(tx, sigHashes, i, c.value, f.pkScript,
			txscript.SigHashAll, f.key, true)
		if err != nil {
			return fmt.Errorf("signing input %d: %w", i, err)
		}
		in.Witness = witness
	}
	return nil
}

// syncFaucet brings the faucet's coins up to the node's main chain and returns its height.
// A reorg below the scanned height makes it rescan from genesis: regtest chains are short and
// their blocks small, and a rescan needs no undo data.
func (b *Btcd) syncFaucet(ctx context.Context) (int64, error) {
	f := b.faucet
	const attempts = 3 // each attempt fails only if the chain reorganises while it scans
	for range attempts {
		tip, err := b.Tip(ctx)
		if err != nil {
			return 0, err
		}
		if last := int64(len(f.scanned)) - 1; last >= 0 {
			stillMain := last <= tip.Height
			if stillMain {
				hash, err := b.BlockHash(ctx, last)
				if err != nil {
					return 0, err
				}
				stillMain = hash == f.scanned[last]
			}
			if !stillMain {
				b.log.Debug("regtest: faucet rescanning after a reorg", "scanned_height", last, "tip", tip.Height)
				f.scanned = nil
				clear(f.coins)
			}
		}
		if err := b.scanBlocks(ctx, int64(len(f.scanned)), tip.Height); err != nil {
			if errors.Is(err, errReorgDuringScan) {
				continue
			}
			return 0, err
		}
		return tip.Height, nil
	}
	return 0, fmt.Errorf("faucet: the chain kept reorganising during %d scans", attempts)
}

var errReorgDuringScan = errors.New("chain reorganised during the faucet's scan")

// scanBlocks applies the main-chain blocks at heights from..to to the faucet's coins.
func (b *Btcd) scanBlocks(ctx context.Context, from, to int64) error {
	f := b.faucet
	for start := from; start <= to; start += scanBatch {
		end := min(start+scanBatch-1, to)
		hashStrs := make([]string, end-start+1)
		calls := make([]rpcCall, len(hashStrs))
		for i := range calls {
			calls[i] = rpcCall{Method: "getblockhash", Params: []any{start + int64(i)}, Result: &hashStrs[i]}
		}
		if err := b.rpc.batch(ctx, calls); err != nil {
			return fmt.Errorf("faucet scan: %w", err)
		}
		blockHex := make([]string, len(hashStrs))
		for i := range calls {
			if calls[i].Err != nil {
				// The chain got shorter since its tip was read.
				return fmt.Errorf("%w: %v", errReorgDuringScan, calls[i].Err)
			}
			calls[i] = rpcCall{Method: "getblock", Params: []any{hashStrs[i], 0}, Result: &blockHex[i]}
		}
		if err := b.rpc.batch(ctx, calls); err != nil {
			return fmt.Errorf("faucet scan: %w", err)
		}
		for i := range calls {
			if calls[i].Err != nil {
				return fmt.Errorf("faucet scan: %w", calls[i].Err)
			}
			blk, err := decodeBlock(blockHex[i])
			if err != nil {
				return fmt.Errorf("faucet scan at height %d: %w", start+int64(i), err)
			}
			height := start + int64(i)
			if height > 0 && blk.Header.PrevBlock != f.scanned[height-1] {
				return errReorgDuringScan
			}
			f.applyBlock(blk, height)
		}
	}
	return nil
}

func (f *faucet) applyBlock(blk *wire.MsgBlock, height int64) {
	for i, tx := range blk.Transactions {
		coinbase := i == 0
		if !coinbase {
			for _, in := range tx.TxIn {
				delete(f.coins, in.PreviousOutPoint)
				delete(f.spentBy, in.PreviousOutPoint)
			}
		}
		txid := tx.TxHash()
		for vout, out := range tx.TxOut {
			if bytes.Equal(out.PkScript, f.pkScript) {
				op := wire.OutPoint{Hash: txid, Index: uint32(vout)}
				f.coins[op] = coin{value: out.Value, height: height, coinbase: coinbase}
			}
		}
	}
	f.scanned = append(f.scanned, blk.BlockHash())
}

// conflictSet sums up the mempool transactions a replacement of some transaction evicts.
type conflictSet struct {
	fee          int64 // total fee in satoshis; 0 when the transaction is not in the mempool
	maxFeePerKvB int64 // the highest fee rate among them, as btcd computes it
}

// mempoolConflicts finds txid and its descendants in the mempool.
func (b *Btcd) mempoolConflicts(ctx context.Context, txid chainhash.Hash) (conflictSet, error) {
	var pool map[string]struct {
		Vsize   int64    `json:"vsize"`
		Fee     float64  `json:"fee"`
		Depends []string `json:"depends"`
	}
	if err := b.Call(ctx, "getrawmempool", &pool, true); err != nil {
		return conflictSet{}, err
	}
	children := make(map[string][]string)
	for id, e := range pool {
		for _, parent := range e.Depends {
			children[parent] = append(children[parent], id)
		}
	}
	var set conflictSet
	seen := make(map[string]bool)
	queue := []string{txid.String()}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		e, ok := pool[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		fee := int64(math.Round(e.Fee * btcutil.SatoshiPerBitcoin))
		set.fee += fee
		if e.Vsize > 0 {
			set.maxFeePerKvB = max(set.maxFeePerKvB, fee*1000/e.Vsize)
		}
		queue = append(queue, children[id]...)
	}
	return set, nil
}

// estimateVsize bounds the virtual size of a transaction spending nIn P2WPKH inputs to outputs.
func estimateVsize(nIn int, outputs []*wire.TxOut) int64 {
	base := 4 + wire.VarIntSerializeSize(uint64(nIn)) + nIn*txInNonWitness +
		wire.VarIntSerializeSize(uint64(len(outputs))) + 4
	for _, out := range outputs {
		base += out.SerializeSize()
	}
	witness := 2 + nIn*p2wpkhInputWitness // marker and flag, then one witness per input
	return ceilDiv(int64(base*4+witness), 4)
}

// VirtualSize returns a transaction's virtual size in vbytes (BIP141 weight / 4, rounded up).
func VirtualSize(tx *wire.MsgTx) int64 {
	weight := tx.SerializeSizeStripped()*3 + tx.SerializeSize()
	return ceilDiv(int64(weight), 4)
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
