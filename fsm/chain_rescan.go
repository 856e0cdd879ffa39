package fsm

import (
	"errors"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Rescans. A wallet created with a birthday below the tip may have been paid in blocks the
// cluster matched before it watched the wallet's scripts. CHAIN_RESCAN records a rescan from a
// height to the current tip; the leader's chain watcher then proposes one CHAIN_RESCAN_BLOCK per
// height, in order, with that block's matches against today's script table, and follows the tip
// again only once the rescan is done (so no live block is matched while an older block could
// still reveal one of our outputs it spends). A rescanned transaction is recorded as confirmed at
// its height, and final at once when it is deep enough; transactions already tracked are left
// alone.

var keyChainRescan = []byte("mchainrescan")

func (a *applier) chainRescan(tx *txn, req *bankdv1.RescanChainRequest) (proto.Message, error) {
	c, err := a.newChainApply(tx)
	if err != nil {
		return nil, err
	}
	if c.tip == nil {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, "from_height: no block has been followed yet; there is nothing to rescan")
	}
	if req.FromHeight > c.tip.Height {
		return nil, invalid("from_height: %d is above the tip %d", req.FromHeight, c.tip.Height)
	}
	start, err := c.startHeight()
	if err != nil {
		return nil, err
	}
	from := max(req.FromHeight, start)
	p, err := loadRescan(tx)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = &bankdv1.RescanProgress{FromHeight: from, NextHeight: from, TargetHeight: c.tip.Height, StartedAtUnixMs: a.now}
	} else {
		p.FromHeight, p.NextHeight = min(p.FromHeight, from), min(p.NextHeight, from)
		p.TargetHeight = max(p.TargetHeight, c.tip.Height)
	}
	if err := putProto(tx, keyChainRescan, p); err != nil {
		return nil, err
	}
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Rescan{Rescan: proto.Clone(p).(*bankdv1.RescanProgress)}})
	return &bankdv1.RescanChainResponse{Rescan: p}, nil
}

func loadRescan(tx *txn) (*bankdv1.RescanProgress, error) {
	p := &bankdv1.RescanProgress{}
	found, err := getProto(tx, keyChainRescan, p)
	if err != nil || !found {
		return nil, err
	}
	return p, nil
}

// ValidateChainRescanBlock checks a rescan block command's shape.
func ValidateChainRescanBlock(req *bankdv1.ChainRescanBlock) *Error {
	if err := CheckHash("hash", req.Hash); err != nil {
		return err
	}
	if req.FinalDepth < 1 || req.FinalDepth > MaxFinalDepth {
		return invalid("final_depth: must be 1-%d, got %d", MaxFinalDepth, req.FinalDepth)
	}
	return checkTxMatches("txs", req.Txs)
}

func (a *applier) chainRescanBlock(tx *txn, req *bankdv1.ChainRescanBlock) (proto.Message, error) {
	if err := ValidateChainRescanBlock(req); err != nil {
		return nil, err
	}
	c, err := a.newChainApply(tx)
	if err != nil {
		return nil, err
	}
	p, err := loadRescan(tx)
	if err != nil {
		return nil, err
	}
	if p == nil || c.tip == nil || req.Height != p.NextHeight || req.Height > c.tip.Height {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, "block %d is not the next block of a running rescan", req.Height)
	}
	block := &bankdv1.ChainBlockRecord{}
	kept, err := getProto(tx, heightKey(tagChainBlock, req.Height), block)
	if err != nil {
		return nil, err
	}
	if kept && block.Tip.GetHash() != req.Hash {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT,
			"block %s is not the followed chain's block %s at %d", req.Hash, block.Tip.GetHash(), req.Height)
	}
	if !kept {
		// Too deep to be disconnected again: what connecting it records is not needed.
		block = &bankdv1.ChainBlockRecord{Tip: &bankdv1.ChainTip{Height: req.Height, Hash: req.Hash}}
	}
	for _, m := range req.Txs {
		rec, found, err := c.loadTx(m.Txid)
		if err != nil {
			return nil, err
		}
		if found && rec.State != bankdv1.TxState_TX_STATE_PENDING && rec.State != bankdv1.TxState_TX_STATE_REJECTED {
			// Matched when the block was followed, or by an earlier rescan; only outputs to
			// scripts watched since then are new.
			if err := c.addOutputs(rec, m.Outputs); err != nil {
				return nil, err
			}
			continue
		}
		if err := c.confirm(m, block); err != nil {
			return nil, err
		}
	}
	if kept {
		if err := putProto(tx, heightKey(tagChainBlock, req.Height), block); err != nil {
			return nil, err
		}
	}
	if c.tip.Height+1 >= req.FinalDepth {
		if err := c.finalize(c.tip.Height + 1 - req.FinalDepth); err != nil {
			return nil, err
		}
	}
	c.stats.save(tx)
	p.NextHeight++
	if p.NextHeight > p.TargetHeight {
		tx.delete(keyChainRescan)
	} else if err := putProto(tx, keyChainRescan, p); err != nil {
		return nil, err
	}
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Rescan{Rescan: proto.Clone(p).(*bankdv1.RescanProgress)}})
	return &bankdv1.RescanChainResponse{Rescan: p}, nil
}

// ChainRescan returns the running rescan, if any.
func (f *FSM) ChainRescan() (*bankdv1.RescanProgress, bool, error) {
	p := &bankdv1.RescanProgress{}
	err := f.get(keyChainRescan, p)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return p, err == nil, err
}

// clampRescan keeps a running rescan within the chain after a disconnect: it ends at the new
// tip, and is over if it already got there.
func (c *chainApply) clampRescan() error {
	p, err := loadRescan(c.tx)
	if err != nil || p == nil {
		return err
	}
	if c.tip == nil || p.NextHeight > c.tip.Height {
		c.tx.delete(keyChainRescan)
		p.TargetHeight = min(p.TargetHeight, p.NextHeight-1)
		c.a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Rescan{Rescan: p}})
		return nil
	}
	p.TargetHeight = min(p.TargetHeight, c.tip.Height)
	return putProto(c.tx, keyChainRescan, p)
}

// addOutputs records the outputs of a confirmed or final transaction that it did not have: they
// pay scripts that were not watched when its block was matched. Their deposits are credited at
// once if the transaction is already final.
func (c *chainApply) addOutputs(rec *bankdv1.ChainTx, outs []*bankdv1.TxOutputMatch) error {
	have := make(map[uint32]bool, len(rec.Outputs))
	for _, o := range rec.Outputs {
		have[o.Vout] = true
	}
	var fresh []*bankdv1.TxOutputMatch
	for _, o := range outs {
		if !have[o.Vout] {
			fresh = append(fresh, o)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	before := len(rec.Outputs)
	deposits, err := c.recordOutputs(rec, fresh, true)
	if err != nil {
		return err
	}
	if len(rec.Outputs) == before {
		return nil // none of them is ours after all
	}
	rec.UpdatedUnixMs = c.a.now
	if err := c.saveTx(rec); err != nil {
		return err
	}
	if err := c.sightDeposits(rec, deposits); err != nil {
		return err
	}
	if rec.State != bankdv1.TxState_TX_STATE_FINAL {
		return nil // finalize credits them with the rest of the transaction
	}
	return c.forEachDeposit(rec, c.creditDeposit)
}
