package payout

import (
	"context"
	"errors"
	"fmt"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/payout/coinselect"
	"github.com/bankd/bankd/wallet/descriptor"
)

// Moves to the cold vault (fsm/vault.go): the driver plans each APPROVED hot -> cold proposal
// as a batch in queue "vault", output 0 to the cold wallet's next receive address, change to the
// hot wallet, at the default queue's rate. The hot wallet's signerd signs it after proving output
// 0 the cold vault's.

// VaultState is the read side of vault proposals (*fsm.FSM).
type VaultState interface {
	ListVaultProposals(state bankdv1.VaultProposalState, pageToken string, pageSize int) ([]*bankdv1.VaultProposal, string, error)
}

// planVaultMoves plans every approved hot -> cold proposal.
func (d *Driver) planVaultMoves(ctx context.Context) error {
	if d.opts.Vault == nil {
		return nil
	}
	token := ""
	for range 1000 {
		ps, next, err := d.opts.Vault.ListVaultProposals(bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_APPROVED, token, fsm.MaxPageSize)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Direction != bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD {
				continue // cold -> hot is coldvault's to build
			}
			if err := d.planVaultMove(ctx, p); err != nil && ctx.Err() == nil {
				d.log.Warn("vault move not planned", "proposal", p.Id, "err", err)
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
	return nil
}

func (d *Driver) planVaultMove(ctx context.Context, p *bankdv1.VaultProposal) error {
	hot, err := d.state.Wallet(p.HotWalletId)
	if err != nil {
		return fmt.Errorf("hot wallet %q: %w", p.HotWalletId, err)
	}
	if len(hot.Branches) != 2 {
		return fmt.Errorf("hot wallet %q has no change branch", hot.Id)
	}
	cold, err := d.state.Wallet(p.ColdWalletId)
	if err != nil {
		return fmt.Errorf("cold wallet %q: %w", p.ColdWalletId, err)
	}
	params, ok := fsm.ChainParams(d.network)
	if !ok {
		return fmt.Errorf("unknown network %q", d.network)
	}
	cd, err := descriptor.Parse(cold.Descriptor_, params)
	if err != nil {
		return fmt.Errorf("cold wallet %q: %w", cold.Id, err)
	}
	if cd.IsMultipath() {
		cd = cd.Multipath()[0]
	}
	index := cold.Branches[0].NextIndex
	script, err := cd.Derive(index)
	if err != nil {
		return fmt.Errorf("cold wallet %q receive index %d: %w", cold.Id, index, err)
	}
	utxos, err := d.state.SpendableUtxos(hot.Id)
	if err != nil {
		return err
	}
	coins, byID := coinsOf(utxos)
	q, _ := d.cfg.Queue("")
	rate := d.rate(q)
	sel, err := coinselect.Select(coins, coinselect.Params{
		Target: p.AmountSat, FeeRate: rate, LongTermFeeRate: q.MinFeeRate * 1000, BaseVBytes: fsm.PayoutTxVSize(0, [][]byte{script}) + 2,
		ChangeVBytes: fsm.P2WPKHChangeVBytes, ChangeSpendVBytes: fsm.P2WPKHInputVBytes, MinChange: 1000,
	}, d.rng)
	if errors.Is(err, coinselect.ErrInsufficientFunds) {
		return fmt.Errorf("the hot wallet cannot pay %d sat (%d spendable UTXOs); the proposal waits", p.AmountSat, len(utxos))
	}
	if err != nil {
		return err
	}
	selected := make([]*bankdv1.Utxo, 0, len(sel.Coins))
	for _, c := range sel.Coins {
		selected = append(selected, byID[c.ID])
	}
	inputs, _, err := d.inputsOf(selected)
	if err != nil {
		return err
	}
	plan := &bankdv1.PayoutPlan{Queue: fsm.VaultQueue, WalletId: hot.Id, ChangeSat: sel.Change, FeeRateSatKvb: rate, VaultProposalId: p.Id}
	for _, in := range inputs {
		plan.Inputs = append(plan.Inputs, in.Outpoint)
	}
	outputs := []*bankdv1.BatchOutput{{ValueSat: p.AmountSat, Script: script, VaultIndex: index}}
	if sel.Change > 0 {
		next := hot.Branches[1].NextIndex
		change, err := changeScript(hot.Descriptor_, d.network, next)
		if err != nil {
			return err
		}
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: sel.Change, Script: change, Change: true, ChangeIndex: next})
	}
	if plan.Psbt, err = fsm.BuildPayoutPSBT(hot.Descriptor_, d.network, inputs, outputs); err != nil {
		return fmt.Errorf("build psbt: %w", err)
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	if err != nil {
		return fmt.Errorf("plan the vault move: %w", err)
	}
	d.metrics.planned.WithLabelValues(fsm.VaultQueue).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("vault move planned", "proposal", p.Id, "batch", r.Batch.Id, "txid", r.Batch.Txid, "amount_sat", p.AmountSat, "fee_sat", r.Batch.FeeSat)
	}
	return nil
}
