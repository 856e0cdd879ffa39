package chainwatch

import (
	"context"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/chainwatch/chainrpc"
	"github.com/bankd/bankd/chainwatch/follow"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// pollMempool proposes what changed in the node's mempool, as far as it concerns us, when the
// node's best block is the state machine's tip (best, from the Idle step):
//
//   - added: mempool transactions not examined before (by this leader) that pay a watched
//     script or spend a watched outpoint;
//   - removed: the state machine's PENDING transactions that are not in the mempool. They are
//     taken from the state machine, not from the last poll, so a new leader also evicts what
//     left the mempool while there was none.
//
// The command carries the tip it was observed at, and is proposed only if the node's best block
// is still that tip after the poll: otherwise a removed transaction may just have been mined,
// and the round is skipped (the block comes first, the next poll sees the rest).
func (s *session) pollMempool(ctx context.Context, best follow.BlockID) error {
	tip, ok, err := s.state.ChainTip()
	if err != nil {
		return withKind(kindState, fmt.Errorf("read the chain tip: %w", err))
	}
	if !ok || tip.Hash != best.Hash.String() {
		// An empty chain (the node is below the start height) or a node behind the state
		// machine: its mempool is not the mempool at the cluster's tip.
		return nil
	}
	pending, err := s.state.PendingChainTxs()
	if err != nil {
		return withKind(kindState, fmt.Errorf("read the pending transactions: %w", err))
	}
	ids, err := s.remote.RawMempool(ctx)
	if err != nil {
		return err
	}
	current := make(map[chainhash.Hash]struct{}, len(ids))
	for _, id := range ids {
		current[id] = struct{}{}
	}

	fresh, _ := follow.MempoolDiff(s.mempool, current)
	if len(fresh) > maxMempoolFetch {
		fresh = fresh[:maxMempoolFetch] // the rest at the next polls
	}
	var added []*bankdv1.TxMatch
	var watch []wire.OutPoint
	examined := 0
	for _, txid := range fresh {
		if len(added) == s.maxTxs {
			break // a full command: the rest at the next polls
		}
		examined++
		tx, err := s.remote.RawTransaction(ctx, txid)
		if chainrpc.IsNotFound(err) {
			continue // it left the mempool since
		}
		if err != nil {
			return err
		}
		m, ops, err := s.matchTx(tx, txid)
		if err != nil {
			return err
		}
		if m != nil {
			added, watch = append(added, m), append(watch, ops...)
		}
	}
	fresh = fresh[:examined]

	var removed []string
	for _, txid := range pending {
		h, err := chainhash.NewHashFromStr(txid)
		if err != nil {
			return withKind(kindState, fmt.Errorf("pending transaction %q: %w", txid, err))
		}
		if _, in := current[*h]; !in && len(removed) < s.maxTxs {
			removed = append(removed, txid)
		}
	}

	_, now, err := s.remote.BestBlock(ctx)
	if err != nil {
		return err
	}
	if now != best.Hash {
		s.log.Debug("the node's best block moved during the mempool poll; skipping this round", "was", best.Hash, "now", now)
		return nil
	}
	if len(added) > 0 || len(removed) > 0 {
		s.watch(watch)
		cmd := &bankdv1.ChainMempool{TipHash: tip.Hash, Added: added, Removed: removed}
		if err := s.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_CHAIN_MEMPOOL, cmd); err != nil {
			return err
		}
		s.metrics.mempoolAdded.Add(float64(len(added)))
		s.metrics.mempoolRemoved.Add(float64(len(removed)))
		s.log.Info("mempool change proposed", "tip_height", tip.Height, "added", len(added), "removed", len(removed))
	}
	// The state machine now has the outcome of everything examined: remember it, and forget
	// what left the mempool (should it come back, it is examined again).
	for id := range s.mempool {
		if _, in := current[id]; !in {
			delete(s.mempool, id)
		}
	}
	for _, id := range fresh {
		s.mempool[id] = struct{}{}
	}
	return nil
}
