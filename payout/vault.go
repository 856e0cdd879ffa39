package payout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcutil/psbt"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/payout/coinselect"
	"github.com/bankd/bankd/wallet/descriptor"
)

// Moves between the hot wallet and the cold vault (fsm/vault.go): the driver plans each
// APPROVED proposal as a batch in queue "vault" at the default queue's rate. Hot -> cold: output
// 0 to the cold wallet's next receive address, change to the hot wallet; the hot wallet's
// signerd signs it after proving output 0 the cold vault's. Cold -> hot: output 0 to the hot
// wallet's next change address, change to the cold wallet's change branch; the PSBT carries
// every cosigner's derivation and the witness script, and M cosigners sign it offline.

// VaultState is the read side of vault proposals (*fsm.FSM).
type VaultState interface {
	ListVaultProposals(state bankdv1.VaultProposalState, pageToken string, pageSize int) ([]*bankdv1.VaultProposal, string, error)
}

// planVaultMoves plans every approved proposal.
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
	fromID, toID, toBranch := p.HotWalletId, p.ColdWalletId, 0
	if p.Direction == bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT {
		fromID, toID, toBranch = p.ColdWalletId, p.HotWalletId, 1
	}
	from, err := d.state.Wallet(fromID)
	if err != nil {
		return fmt.Errorf("wallet %q: %w", fromID, err)
	}
	to, err := d.state.Wallet(toID)
	if err != nil {
		return fmt.Errorf("wallet %q: %w", toID, err)
	}
	if len(from.Branches) != 2 || len(to.Branches) <= toBranch {
		return fmt.Errorf("wallet %q needs a receive and a change branch, and %q branch %d", from.Id, to.Id, toBranch)
	}
	// Output 0: the cold wallet's next receive address, or the hot wallet's next change one.
	index := to.Branches[toBranch].NextIndex
	script, err := branchScript(to.Descriptor_, d.network, toBranch, index)
	if err != nil {
		return fmt.Errorf("wallet %q: %w", to.Id, err)
	}
	inputVBytes, changeVBytes, err := spendSizes(from.Descriptor_, d.network)
	if err != nil {
		return fmt.Errorf("wallet %q: %w", from.Id, err)
	}
	utxos, err := d.state.SpendableUtxos(from.Id)
	if err != nil {
		return err
	}
	inputs, change, rate, err := d.selectInputs(utxos, p.AmountSat, script, inputVBytes, changeVBytes)
	if errors.Is(err, coinselect.ErrInsufficientFunds) {
		return fmt.Errorf("wallet %q cannot pay %d sat (%d spendable UTXOs); the proposal waits", from.Id, p.AmountSat, len(utxos))
	}
	if err != nil {
		return err
	}
	plan := &bankdv1.PayoutPlan{Queue: fsm.VaultQueue, WalletId: from.Id, ChangeSat: change, FeeRateSatKvb: rate, VaultProposalId: p.Id}
	for _, in := range inputs {
		plan.Inputs = append(plan.Inputs, in.Outpoint)
	}
	outputs := []*bankdv1.BatchOutput{{ValueSat: p.AmountSat, Script: script, VaultIndex: index}}
	if change > 0 {
		next := from.Branches[1].NextIndex
		changeScript, err := branchScript(from.Descriptor_, d.network, 1, next)
		if err != nil {
			return err
		}
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: change, Script: changeScript, Change: true, ChangeIndex: next})
	}
	if plan.Psbt, err = fsm.BuildPayoutPSBT(from.Descriptor_, d.network, inputs, outputs); err != nil {
		return fmt.Errorf("build psbt: %w", err)
	}
	if p.Direction == bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT {
		// Hardware cosigners want each input's whole previous transaction too.
		if plan.Psbt, err = d.withParents(ctx, plan.Psbt); err != nil {
			return err
		}
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	if err != nil {
		return fmt.Errorf("plan the vault move: %w", err)
	}
	d.metrics.planned.WithLabelValues(fsm.VaultQueue).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("vault move planned", "proposal", p.Id, "direction", p.Direction, "batch", r.Batch.Id, "txid", r.Batch.Txid,
			"amount_sat", p.AmountSat, "fee_sat", r.Batch.FeeSat, "signatures_required", r.Batch.SignaturesRequired)
	}
	return nil
}

// branchScript derives the script of a wallet descriptor's branch (0 receive, 1 change; a
// descriptor without branches has only 0) at index.
func branchScript(desc, network string, branch int, index uint32) ([]byte, error) {
	params, ok := fsm.ChainParams(network)
	if !ok {
		return nil, fmt.Errorf("unknown network %q", network)
	}
	d, err := descriptor.Parse(desc, params)
	if err != nil {
		return nil, err
	}
	if d.IsMultipath() {
		branches := d.Multipath()
		if branch >= len(branches) {
			return nil, fmt.Errorf("descriptor has no branch %d", branch)
		}
		d = branches[branch]
	} else if branch != 0 {
		return nil, fmt.Errorf("descriptor has no branch %d", branch)
	}
	return d.Derive(index)
}

// spendSizes are the virtual bytes one input of a wallet adds (p2wpkh, or its wsh multisig
// with M signatures) and one of its change outputs.
func spendSizes(desc, network string) (inputVBytes, changeVBytes int64, err error) {
	params, ok := fsm.ChainParams(network)
	if !ok {
		return 0, 0, fmt.Errorf("unknown network %q", network)
	}
	d, err := descriptor.Parse(desc, params)
	if err != nil {
		return 0, 0, err
	}
	if d.IsMultipath() {
		d = d.Multipath()[0]
	}
	out, err := d.Expand(0)
	if err != nil {
		return 0, 0, err
	}
	changeVBytes = int64(8 + 1 + len(out.Script))
	if len(out.WitnessScript) == 0 {
		return fsm.P2WPKHInputVBytes, changeVBytes, nil
	}
	weight := (32+4+1+4)*4 + fsm.MultisigWitnessBytes(out.Threshold(), out.WitnessScript)
	return int64(weight+3) / 4, changeVBytes, nil
}

// withParents adds to a PSBT the previous transaction of every input (non_witness_utxo), which
// hardware signers check a segwit v0 input's amount against; the state machine checks each
// against the input. Without a chain node the PSBT goes without them.
func (d *Driver) withParents(ctx context.Context, raw []byte) ([]byte, error) {
	if d.chain == nil {
		return raw, nil
	}
	p, err := psbt.NewFromRawBytes(bytes.NewReader(raw), false)
	if err != nil {
		return nil, fmt.Errorf("decode psbt: %w", err)
	}
	for i, in := range p.UnsignedTx.TxIn {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		parent, err := d.chain.RawTransaction(cctx, in.PreviousOutPoint.Hash)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("input %d: previous transaction %s: %w", i, in.PreviousOutPoint.Hash, err)
		}
		p.Inputs[i].NonWitnessUtxo = parent
	}
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("serialize psbt: %w", err)
	}
	return buf.Bytes(), nil
}
