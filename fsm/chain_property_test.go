package fsm

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// chainGen drives the chain commands of the random command mix: blocks connected and
// disconnected, mempool changes, rescans, with transactions that pay handed-out and look-ahead
// scripts (and scripts nobody watches), spend earlier outputs, or double-spend each other.
type chainGen struct {
	hashes  []string // the followed chain as the generator sees it, first block first
	nextTx  int
	outputs []*bankdv1.Outpoint // outputs of transactions made so far (spendable or not)
	inputs  []*bankdv1.Outpoint // inputs used so far (to double-spend)
	txs     []*bankdv1.TxMatch  // every transaction made so far, to retry or confirm later
	mempool []string
	results map[string]int
}

func (g *commandGen) chainTx(scripts [][]byte) *bankdv1.TxMatch {
	c := &g.chain
	c.nextTx++
	m := &bankdv1.TxMatch{Txid: fmt.Sprintf("%064x", 0x7e570000+c.nextTx)}
	switch r := g.rng.IntN(4); {
	case r == 0 && len(c.outputs) > 0:
		m.Inputs = append(m.Inputs, c.outputs[g.rng.IntN(len(c.outputs))])
	case r == 1 && len(c.inputs) > 0:
		m.Inputs = append(m.Inputs, c.inputs[g.rng.IntN(len(c.inputs))]) // a double spend
	default:
		m.Inputs = append(m.Inputs, &bankdv1.Outpoint{Txid: fmt.Sprintf("%064x", 0xf0000000+c.nextTx), Vout: 1})
	}
	c.inputs = append(c.inputs, m.Inputs...)
	for vout := range uint32(g.rng.IntN(3)) {
		script := []byte{0x51, byte(g.rng.IntN(256))} // nobody's
		if len(scripts) > 0 && g.rng.IntN(3) > 0 {
			script = scripts[g.rng.IntN(len(scripts))]
		}
		m.Outputs = append(m.Outputs, &bankdv1.TxOutputMatch{Vout: vout, ValueSat: int64(1 + g.rng.IntN(100_000)), Script: script})
		c.outputs = append(c.outputs, &bankdv1.Outpoint{Txid: m.Txid, Vout: vout})
	}
	c.txs = append(c.txs, m)
	return m
}

func (g *commandGen) chainStep() {
	c := &g.chain
	if c.results == nil {
		c.results = map[string]int{}
	}
	var scripts [][]byte
	watched := watchedScripts(g.tf.t, g.tf.FSM)
	for _, id := range slices.Sorted(maps.Keys(watched)) { // map order would make the run unrepeatable
		scripts = append(scripts, watched[id].Script)
	}
	tipHash := ""
	if n := len(c.hashes); n > 0 {
		tipHash = c.hashes[n-1]
	}
	var typ bankdv1.CommandType
	var body proto.Message
	switch r := g.rng.IntN(10); {
	case r < 5:
		var txs []*bankdv1.TxMatch
		seen := map[string]bool{}
		for range g.rng.IntN(4) {
			m := g.chainTx(scripts)
			if len(c.txs) > 1 && g.rng.IntN(3) == 0 {
				m = c.txs[g.rng.IntN(len(c.txs))] // one seen before: in the mempool, rejected, or confirmed
			}
			if !seen[m.Txid] {
				seen[m.Txid] = true
				txs = append(txs, m)
			}
		}
		hash := fmt.Sprintf("%064x", 0xb0000000+len(c.hashes)*1000+g.rng.IntN(1000))
		prev := tipHash
		if prev == "" {
			prev = fmt.Sprintf("%064x", 0)
		}
		typ, body = bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, &bankdv1.ChainBlockConnected{
			Height: uint32(500 + len(c.hashes)), Hash: hash, PrevHash: prev, Txs: txs,
			FinalDepth: uint32(1 + g.rng.IntN(3)), KeepHashes: 50}
		if g.rng.IntN(10) == 0 {
			body.(*bankdv1.ChainBlockConnected).PrevHash = fmt.Sprintf("%064x", 12345) // a stale leader's block
		}
	case r < 7:
		if len(c.hashes) == 0 {
			return
		}
		typ, body = bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED, &bankdv1.ChainBlockDisconnected{
			Height: uint32(500 + len(c.hashes) - 1), Hash: tipHash}
	case r < 9:
		req := &bankdv1.ChainMempool{TipHash: tipHash}
		for range g.rng.IntN(3) {
			m := g.chainTx(scripts)
			req.Added = append(req.Added, m)
			c.mempool = append(c.mempool, m.Txid)
		}
		if len(c.mempool) > 0 && g.rng.IntN(2) == 0 {
			req.Removed = append(req.Removed, c.mempool[g.rng.IntN(len(c.mempool))])
		}
		typ, body = bankdv1.CommandType_COMMAND_TYPE_CHAIN_MEMPOOL, req
	default:
		if p, ok, _ := g.tf.ChainRescan(); ok {
			var txs []*bankdv1.TxMatch
			if len(c.txs) > 0 {
				txs = append(txs, c.txs[g.rng.IntN(len(c.txs))])
			}
			hash := ""
			if i := int(p.NextHeight) - 500; i >= 0 && i < len(c.hashes) {
				hash = c.hashes[i]
			} else {
				hash = fmt.Sprintf("%064x", 1)
			}
			typ, body = bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN_BLOCK, &bankdv1.ChainRescanBlock{
				Height: p.NextHeight, Hash: hash, Txs: txs, FinalDepth: 2}
		} else {
			typ, body = bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN, &bankdv1.RescanChainRequest{FromHeight: uint32(490 + g.rng.IntN(20))}
		}
	}
	res := g.tf.do(typ, body, nil)
	if e, refused := res.(*Error); refused {
		c.results["refused "+e.Code.String()]++
		return
	}
	c.results[typ.String()]++
	switch b := body.(type) {
	case *bankdv1.ChainBlockConnected:
		c.hashes = append(c.hashes, b.Hash)
	case *bankdv1.ChainBlockDisconnected:
		c.hashes = c.hashes[:len(c.hashes)-1]
	}
}

// checkChainInvariants checks that the chain counters agree with the tables they count, that
// every UTXO pays a watched script, and that the clearing account holds exactly what the
// credited deposits (net of reversals) and the pending ones add up to.
func checkChainInvariants(t failer, tf *testFSM) {
	t.Helper()
	st, err := tf.ChainStatus()
	if err != nil {
		t.Fatalf("chain status: %v", err)
	}
	count := func(tag byte) uint64 {
		var n uint64
		if err := tf.scan([]byte{tag}, []byte{tag + 1}, func(_, _ []byte) (bool, error) { n++; return true, nil }); err != nil {
			t.Fatalf("scan %c: %v", tag, err)
		}
		return n
	}
	if p, c := count(tagPendingTx), count(tagConfirmed); p != st.PendingTxs || c != st.ConfirmedTxs {
		t.Fatalf("chain status counts %d pending and %d confirmed transactions, the tables hold %d and %d", st.PendingTxs, st.ConfirmedTxs, p, c)
	}
	var n uint64
	var value int64
	err = tf.scan([]byte{tagUtxo}, []byte{tagUtxo + 1}, func(_, v []byte) (bool, error) {
		u := &bankdv1.Utxo{}
		if err := proto.Unmarshal(v, u); err != nil {
			return false, err
		}
		if _, err := tf.LookupScript(u.Script); err != nil {
			return false, fmt.Errorf("utxo %s pays an unwatched script: %w", outpointString(u.Outpoint), err)
		}
		n++
		value += u.ValueSat
		return true, nil
	})
	if err != nil {
		t.Fatalf("utxos: %v", err)
	}
	if n != st.Utxos || value != st.UtxoValueSat {
		t.Fatalf("chain status counts %d utxos of %d sat, the table holds %d of %d", st.Utxos, st.UtxoValueSat, n, value)
	}
	var credited, pendingSum int64
	err = tf.scan([]byte{tagDeposit}, []byte{tagDeposit + 1}, func(_, v []byte) (bool, error) {
		d := &bankdv1.Deposit{}
		if err := proto.Unmarshal(v, d); err != nil {
			return false, err
		}
		switch d.State {
		case bankdv1.DepositState_DEPOSIT_STATE_CREDITED:
			credited += d.ValueSat
		case bankdv1.DepositState_DEPOSIT_STATE_PENDING:
			if d.TransferId != "" {
				pendingSum += d.ValueSat
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("deposits: %v", err)
	}
	acc, err := tf.Account(DepositClearingAccount)
	if err != nil {
		if credited != 0 || pendingSum != 0 {
			t.Fatalf("deposits credited %d, pending %d, but no clearing account: %v", credited, pendingSum, err)
		}
		return
	}
	b := acc.Balance
	if got := b.DebitsPosted - b.CreditsPosted; got != credited {
		t.Fatalf("clearing account posted %d, credited deposits add up to %d", got, credited)
	}
	if got := b.DebitsPending - b.CreditsPending; got != pendingSum {
		t.Fatalf("clearing account pending %d, pending deposits add up to %d", got, pendingSum)
	}
}

// reversedDeposits sums, per account, the deposits that reorgs took back after crediting them.
func reversedDeposits(t failer, tf *testFSM) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := tf.scan([]byte{tagDeposit}, []byte{tagDeposit + 1}, func(_, v []byte) (bool, error) {
		d := &bankdv1.Deposit{}
		if err := proto.Unmarshal(v, d); err != nil {
			return false, err
		}
		out[d.AccountId] += int64(d.Reversals) * d.ValueSat
		return true, nil
	})
	if err != nil {
		t.Fatalf("deposits: %v", err)
	}
	return out
}
