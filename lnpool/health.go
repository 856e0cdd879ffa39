package lnpool

import (
	"context"
	"fmt"
	"time"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// healthTimeout bounds one node's health check.
const healthTimeout = 5 * time.Second

// lndNetworks maps the chain network names of cluster.hcl to the names lnd's GetInfo reports.
var lndNetworks = map[string]string{"mainnet": "mainnet", "testnet": "testnet", "signet": "signet", "regtest": "regtest"}

// checkHealth checks every node that is not retired and commits the changes.
func (p *Pool) checkHealth(ctx context.Context) {
	nodes, err := p.state.LndNodes()
	if err != nil {
		p.log.Error("read pool nodes", "err", err)
		return
	}
	for _, n := range nodes {
		if n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED || isLost(n) || ctx.Err() != nil {
			continue
		}
		h := p.probe(ctx, n)
		p.metrics.healthy.WithLabelValues(n.Id).Set(boolGauge(h.Reachable && h.SyncedToChain))
		if sameHealth(n, h) {
			continue
		}
		if _, err := p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH, h); err != nil {
			p.log.Warn("record lnd health", "lnd", n.Id, "err", err)
			continue
		}
		p.log.Info("lnd health changed", "lnd", n.Id, "reachable", h.Reachable, "synced", h.SyncedToChain, "error", h.Error)
	}
}

// probe asks a node how it is. A node is reachable when GetInfo answers from the expected
// network; the first time, the opening balance is read too.
func (p *Pool) probe(ctx context.Context, n *bankdv1.LndNode) *bankdv1.LndNodeHealth {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	down := func(err error) *bankdv1.LndNodeHealth {
		msg := err.Error()
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return &bankdv1.LndNodeHealth{Id: n.Id, Error: msg}
	}
	c, err := p.client(ctx, n)
	if err != nil {
		return down(err)
	}
	info, err := c.GetInfo(ctx)
	if err != nil {
		return down(err)
	}
	if want := lndNetworks[p.cfg.Network]; info.Network != want {
		return down(fmt.Errorf("lnd is on %s, the cluster on %s", info.Network, p.cfg.Network))
	}
	h := &bankdv1.LndNodeHealth{Id: n.Id, Reachable: true, SyncedToChain: info.SyncedToChain, Pubkey: info.Pubkey}
	if !info.SyncedToChain {
		h.Error = "not synced to chain"
	}
	if n.Pubkey == "" {
		bal, err := c.ChannelBalance(ctx)
		if err != nil {
			return down(fmt.Errorf("read opening balance: %w", err))
		}
		h.OpeningBalanceSat = (bal.LocalMsat + bal.UnsettledLocalMsat) / 1000
	}
	return h
}

// sameHealth reports whether a health report would change nothing worth a Raft entry.
func sameHealth(n *bankdv1.LndNode, h *bankdv1.LndNodeHealth) bool {
	return n.Pubkey != "" && n.Reachable == h.Reachable && n.SyncedToChain == h.SyncedToChain &&
		(n.HealthError == "") == (h.Error == "") && (!h.Reachable || h.Pubkey == n.Pubkey)
}

// retireDrained retires each DRAINING node with no open invoice, no payment in flight and no
// HTLC pending on its channels.
func (p *Pool) retireDrained(ctx context.Context) {
	nodes, err := p.state.LndNodes()
	if err != nil {
		return
	}
	for _, n := range nodes {
		if n.State != bankdv1.LndNodeState_LND_NODE_STATE_DRAINING || n.OpenInvoices > 0 || n.InflightPayments > 0 {
			continue
		}
		c, err := p.client(ctx, n)
		if err != nil {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, healthTimeout)
		pending, err := c.PendingHTLCs(hctx)
		cancel()
		if err != nil || pending > 0 {
			continue
		}
		_, err = p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE, &bankdv1.SetLndNodeStateRequest{
			Id: n.Id, State: bankdv1.LndNodeState_LND_NODE_STATE_RETIRED,
		})
		if err != nil {
			p.log.Warn("retire drained lnd", "lnd", n.Id, "err", err)
			continue
		}
		p.log.Info("lnd drained and retired", "lnd", n.Id)
	}
}

// usableNodes returns the nodes that may take new work, the richest ledger account first.
func (p *Pool) usableNodes() ([]*bankdv1.LndNode, map[string]int64, error) {
	nodes, err := p.state.LndNodes()
	if err != nil {
		return nil, nil, err
	}
	var out []*bankdv1.LndNode
	avail := map[string]int64{}
	for _, n := range nodes {
		if !fsm.LndNodeUsable(n) {
			continue
		}
		acc, err := p.state.Account(n.AccountId)
		if err != nil {
			return nil, nil, err
		}
		avail[n.Id] = acc.GetBalance().GetAvailable()
		out = append(out, n)
	}
	for i := 1; i < len(out); i++ { // insertion sort: a handful of nodes
		for j := i; j > 0 && avail[out[j].Id] > avail[out[j-1].Id]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, avail, nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
