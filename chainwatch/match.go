package chainwatch

import (
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/chainwatch/follow"
	"github.com/bankd/bankd/chainwatch/watchset"
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// blockCommand builds the command that connects c's block: its transactions that pay a watched
// script or spend a watched outpoint, in block order, each output confirmed against the script
// table. It also returns the outpoints the command makes interesting (its matched transactions'
// inputs and outputs paying us).
func (s *session) blockCommand(c follow.Connect) (*bankdv1.ChainBlockConnected, []wire.OutPoint, error) {
	blk := c.Block
	found := watchset.Match(blk, s.index.Scripts(), s.outpoints)
	// ours holds this block's outputs confirmed as ours so far: a later transaction of the
	// block spending one concerns us (Match reports it, and would report a false positive's
	// spender too).
	ours := make(map[wire.OutPoint]struct{})
	var txs []*bankdv1.TxMatch
	var watch []wire.OutPoint
	for _, m := range found.Txs {
		outs, err := s.confirmOutputs(m.Outputs)
		if err != nil {
			return nil, nil, err
		}
		spends := false
		for _, sp := range m.Spends {
			if _, inBlock := ours[sp.PrevOut]; inBlock || s.outpoints.Contains(sp.PrevOut) {
				spends = true
				break
			}
		}
		if len(outs) == 0 && !spends {
			continue
		}
		for _, o := range outs {
			op := wire.OutPoint{Hash: m.TxID, Index: o.Vout}
			ours[op] = struct{}{}
			watch = append(watch, op)
		}
		tx := blk.Transactions[m.Index]
		coinbase := m.Index == 0 // the first transaction of a valid block, and only it
		txs = append(txs, &bankdv1.TxMatch{Txid: m.TxID.String(), Outputs: outs, Inputs: prevOuts(tx, coinbase)})
		if !coinbase {
			for _, in := range tx.TxIn {
				watch = append(watch, in.PreviousOutPoint)
			}
		}
	}
	hash := c.Hash()
	if len(txs) > s.maxTxs {
		return nil, nil, withKind(kindTooManyMatches, fmt.Errorf(
			"block %d/%s has %d transactions that concern the cluster, more than the %d one command may carry; nothing is truncated, so the chain is not followed past it",
			c.Height, hash, len(txs), s.maxTxs))
	}
	return &bankdv1.ChainBlockConnected{
		Height:        uint32(c.Height),
		Hash:          hash.String(),
		PrevHash:      blk.Header.PrevBlock.String(),
		BlockTimeUnix: blk.Header.Timestamp.Unix(),
		Txs:           txs,
		FinalDepth:    s.cfg.FinalDepth,
		KeepHashes:    s.cfg.KeepHashes,
	}, watch, nil
}

// confirmOutputs keeps the candidate outputs whose script the script table holds.
func (s *session) confirmOutputs(candidates []watchset.Output) ([]*bankdv1.TxOutputMatch, error) {
	var outs []*bankdv1.TxOutputMatch
	for _, o := range candidates {
		ok, err := s.watched(o.PkScript)
		if err != nil {
			return nil, err
		}
		if ok {
			outs = append(outs, &bankdv1.TxOutputMatch{Vout: o.Vout, ValueSat: o.Value, Script: o.PkScript})
		}
	}
	return outs, nil
}

// matchTx matches one mempool transaction like a block's: it concerns us when it pays a watched
// script or spends a watched outpoint. It returns nil when it does not, else the match and the
// outpoints it makes interesting (its inputs: a block spending one double-spends it).
func (s *session) matchTx(tx *wire.MsgTx, txid chainhash.Hash) (*bankdv1.TxMatch, []wire.OutPoint, error) {
	var outs []*bankdv1.TxOutputMatch
	for vout, out := range tx.TxOut {
		if !s.index.Scripts().Contains(out.PkScript) {
			continue
		}
		ok, err := s.watched(out.PkScript)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			outs = append(outs, &bankdv1.TxOutputMatch{Vout: uint32(vout), ValueSat: out.Value, Script: out.PkScript})
		}
	}
	spends := false
	for _, in := range tx.TxIn {
		if s.outpoints.Contains(in.PreviousOutPoint) {
			spends = true
			break
		}
	}
	if len(outs) == 0 && !spends {
		return nil, nil, nil
	}
	watch := make([]wire.OutPoint, 0, len(tx.TxIn))
	for _, in := range tx.TxIn {
		watch = append(watch, in.PreviousOutPoint)
	}
	return &bankdv1.TxMatch{Txid: txid.String(), Outputs: outs, Inputs: prevOuts(tx, false)}, watch, nil
}

// watched reports whether the script table holds script. The index only says "maybe": a
// candidate it does not hold is a fingerprint collision and must never reach Raft.
func (s *session) watched(script []byte) (bool, error) {
	_, err := s.state.LookupScript(script)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fsm.ErrNotFound):
		s.metrics.candidatesRejected.Inc()
		s.log.Debug("script index candidate is not watched (fingerprint collision)", "script", fmt.Sprintf("%x", script))
		return false, nil
	default:
		return false, withKind(kindState, fmt.Errorf("look up a candidate script: %w", err))
	}
}

// prevOuts returns the outpoints tx's inputs spend (none for a coinbase).
func prevOuts(tx *wire.MsgTx, coinbase bool) []*bankdv1.Outpoint {
	if coinbase {
		return nil
	}
	out := make([]*bankdv1.Outpoint, len(tx.TxIn))
	for i, in := range tx.TxIn {
		out[i] = &bankdv1.Outpoint{Txid: in.PreviousOutPoint.Hash.String(), Vout: in.PreviousOutPoint.Index}
	}
	return out
}
