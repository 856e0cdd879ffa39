package coldvault

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// API is what coldvault calls on the cluster (bankdv1connect clients are it).
type API interface {
	ReconcileWallets(context.Context, *connect.Request[bankdv1.ReconcileWalletsRequest]) (*connect.Response[bankdv1.ReconcileWalletsResponse], error)
	ListVaultProposals(context.Context, *connect.Request[bankdv1.ListVaultProposalsRequest]) (*connect.Response[bankdv1.ListVaultProposalsResponse], error)
	ProposeVaultTransfer(context.Context, *connect.Request[bankdv1.ProposeVaultTransferRequest]) (*connect.Response[bankdv1.ProposeVaultTransferResponse], error)
}

// callTimeout bounds each API call.
const callTimeout = 10 * time.Second

// activeStates are the states of a proposal that is under way.
var activeStates = []bankdv1.VaultProposalState{
	bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED, bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_APPROVED,
	bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_SIGNING, bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_BROADCAST,
	bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED,
}

// Daemon keeps one hot wallet in its band.
type Daemon struct {
	cfg *Config
	api API
	log *slog.Logger
	now func() time.Time
	// lastErr is the last poll's error, logged only when it changes.
	lastErr string
	// metrics, when set by SetMetrics, receive every look's figures.
	metrics *Metrics
}

// SetMetrics makes the daemon record every look in m. Call it before Run.
func (d *Daemon) SetMetrics(m *Metrics) { d.metrics = m }

// NewDaemon returns the daemon of cfg calling api.
func NewDaemon(cfg *Config, api API, log *slog.Logger) *Daemon {
	return &Daemon{cfg: cfg, api: api, log: log.With("cold_wallet", cfg.ColdWalletID), now: time.Now}
}

// Run polls until ctx ends, then returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		_, err := d.Poll(ctx)
		switch {
		case err != nil && err.Error() != d.lastErr && ctx.Err() == nil:
			d.log.Warn("poll failed; trying again", "err", err)
			d.lastErr = err.Error()
		case err == nil:
			d.lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll looks once: while no move of the cold wallet is under way and the hot wallet is outside
// its band, it proposes the move back to the target. It returns the proposal it made, if any.
func (d *Daemon) Poll(ctx context.Context) (*bankdv1.VaultProposal, error) {
	p, err := d.poll(ctx)
	d.metrics.polled(err, d.now())
	return p, err
}

func (d *Daemon) poll(ctx context.Context) (*bankdv1.VaultProposal, error) {
	// The books are read first, even while a move is under way, so the metrics say where the
	// hot wallet stands at every look.
	rec, err := call(ctx, d.api.ReconcileWallets, &bankdv1.ReconcileWalletsRequest{Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		return nil, fmt.Errorf("reconcile wallets: %w", err)
	}
	var hot *bankdv1.WalletReconciliation
	for _, w := range rec.Msg.GetWallets() {
		if w.GetWalletId() == d.cfg.HotWalletID {
			hot = w
		}
	}
	if hot == nil {
		return nil, fmt.Errorf("the cluster has no hot wallet %q", d.cfg.HotWalletID)
	}
	liabilities := rec.Msg.GetSolvency().GetCustomerLiabilitiesSat()
	lo, target, hi := d.cfg.Band.Sats(liabilities)
	d.metrics.observe(d.cfg.HotWalletID, hot.GetLedgerSat(), lo, target, hi)

	active, err := d.active(ctx)
	if err != nil || active != nil {
		return nil, err
	}
	if hot.GetUnsettledBatches() > 0 || hot.GetUnsettledInflowSat() > 0 {
		return nil, nil // the books move: look again once they are settled
	}
	dir, amount := d.cfg.Band.Decide(hot.GetLedgerSat(), liabilities)
	if dir == bankdv1.VaultDirection_VAULT_DIRECTION_UNSPECIFIED || amount <= 0 {
		return nil, nil
	}
	req := &bankdv1.ProposeVaultTransferRequest{
		Id: fmt.Sprintf("cv-%s-%d", d.cfg.ColdWalletID, d.now().Unix()), Direction: dir, ColdWalletId: d.cfg.ColdWalletID, AmountSat: amount,
		Reason: fmt.Sprintf("hot wallet %s holds %d sat, outside its band [%d, %d] (target %d, customer liabilities %d sat)",
			d.cfg.HotWalletID, hot.GetLedgerSat(), lo, hi, target, liabilities),
	}
	res, err := call(ctx, d.api.ProposeVaultTransfer, req)
	if err != nil {
		return nil, fmt.Errorf("propose %s of %d sat: %w", dir, amount, err)
	}
	p := res.Msg.GetProposal()
	d.log.Info("move proposed; it waits for another identity's approval", "proposal", p.GetId(), "direction", dir, "amount_sat", amount, "reason", req.Reason)
	return p, nil
}

// active returns the cold wallet's proposal under way, if any.
func (d *Daemon) active(ctx context.Context) (*bankdv1.VaultProposal, error) {
	for _, state := range activeStates {
		token := ""
		for range 100 {
			res, err := call(ctx, d.api.ListVaultProposals, &bankdv1.ListVaultProposalsRequest{State: state, PageToken: token,
				Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE})
			if err != nil {
				return nil, fmt.Errorf("list vault proposals: %w", err)
			}
			for _, p := range res.Msg.GetProposals() {
				if p.GetColdWalletId() == d.cfg.ColdWalletID {
					return p, nil
				}
			}
			if token = res.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
	}
	return nil, nil
}

func call[Req, Resp any](ctx context.Context, f func(context.Context, *connect.Request[Req]) (*connect.Response[Resp], error), req *Req) (*connect.Response[Resp], error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return f(ctx, connect.NewRequest(req))
}
