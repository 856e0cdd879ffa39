package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

func parseVaultDirection(s string) (bankdv1.VaultDirection, error) {
	switch s {
	case "to-cold":
		return bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD, nil
	case "to-hot":
		return bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT, nil
	}
	return 0, usageErrorf("direction %q: want to-cold or to-hot", s)
}

func parseVaultState(s string) (bankdv1.VaultProposalState, error) {
	if s == "" {
		return bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_UNSPECIFIED, nil
	}
	v, ok := bankdv1.VaultProposalState_value["VAULT_PROPOSAL_STATE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageErrorf("-state %q: want proposed, approved, signing, broadcast, confirmed, final, rejected or abandoned", s)
	}
	return bankdv1.VaultProposalState(v), nil
}

func vaultPropose(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "proposal id, the idempotency key (generated when empty)")
	reason := fs.String("reason", "", "why the move (required)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 3, "to-cold|to-hot COLD_WALLET SATS"); err != nil {
			return err
		}
		dir, err := parseVaultDirection(args[0])
		if err != nil {
			return err
		}
		sats, err := parseSats("SATS", args[2])
		if err != nil {
			return err
		}
		if *reason == "" {
			return usageErrorf("-reason is required: say why the move")
		}
		if err := a.ensureID(id, "vault proposal id", "id"); err != nil {
			return err
		}
		req := &bankdv1.ProposeVaultTransferRequest{Id: *id, Direction: dir, ColdWalletId: args[1], AmountSat: sats, Reason: *reason}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.ProposeVaultTransferResponse, error) {
			r, err := c.vault.Propose(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("vault proposal %s: %w", *id, err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printVaultProposal(res.Proposal, nil)
		return nil
	}
}

func vaultList(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	state := fs.String("state", "", "only proposals in this state")
	limit := fs.Int("limit", 1000, "most proposals to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		st, err := parseVaultState(*state)
		if err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListVaultProposalsResponse{}
		res.Proposals, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.VaultProposal, string, *bankdv1.ReadMeta, error) {
				r, err := c.vault.List(ctx, connect.NewRequest(&bankdv1.ListVaultProposalsRequest{State: st, PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Proposals, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		rows := make([][]string, 0, len(res.Proposals))
		for _, p := range res.Proposals {
			rows = append(rows, []string{p.Id, vaultDirectionName(p.Direction), p.ColdWalletId, fmt.Sprint(p.AmountSat), vaultStateName(p.State), orDash(p.ProposedBy), orDash(p.DecidedBy), orDash(p.Txid)})
		}
		a.printTable([]string{"ID", "DIRECTION", "COLD", "SAT", "STATE", "PROPOSED BY", "DECIDED BY", "TXID"}, rows)
		return nil
	}
}

func vaultGet(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetVaultProposalResponse, error) {
			r, err := c.vault.Get(ctx, connect.NewRequest(&bankdv1.GetVaultProposalRequest{Id: args[0], Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("vault proposal %s: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printVaultProposal(res.Proposal, res.Batch)
		return nil
	}
}

func vaultDecide(approve bool) func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
		var reason *string
		if !approve {
			reason = fs.String("reason", "", "why the move is rejected (required)")
		}
		return func(ctx context.Context, args []string) error {
			if err := wantArgs(args, 1, "ID"); err != nil {
				return err
			}
			req := &bankdv1.DecideVaultProposalRequest{Id: args[0], Approve: approve}
			if !approve {
				if *reason == "" {
					return usageErrorf("-reason is required: say why the move is rejected")
				}
				req.Reason = *reason
			}
			res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.DecideVaultProposalResponse, error) {
				decide := c.vault.Reject
				if approve {
					decide = c.vault.Approve
				}
				r, err := decide(ctx, connect.NewRequest(req))
				if err != nil {
					return nil, err
				}
				return r.Msg, nil
			})
			if err != nil {
				return fmt.Errorf("vault proposal %s: %w", args[0], err)
			}
			if a.json() {
				return a.printJSON(res)
			}
			a.printVaultProposal(res.Proposal, nil)
			return nil
		}
	}
}

func vaultAbandon(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	reason := fs.String("reason", "", "why the move is given up (required)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		if *reason == "" {
			return usageErrorf("-reason is required: say why the move is given up")
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.AbandonVaultProposalResponse, error) {
			r, err := c.vault.Abandon(ctx, connect.NewRequest(&bankdv1.AbandonVaultProposalRequest{Id: args[0], Reason: *reason}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("vault proposal %s: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printVaultProposal(res.Proposal, nil)
		return nil
	}
}

func vaultStateName(s bankdv1.VaultProposalState) string {
	return enumName(s.String(), "VAULT_PROPOSAL_STATE_")
}

func vaultDirectionName(d bankdv1.VaultDirection) string {
	return strings.ReplaceAll(enumName(d.String(), "VAULT_DIRECTION_"), "_", "-")
}

func (a *app) printVaultProposal(p *bankdv1.VaultProposal, b *bankdv1.PayoutBatch) {
	state := vaultStateName(p.GetState())
	if p.GetEndReason() != "" {
		state += ": " + p.GetEndReason()
	}
	decided := "-"
	if p.GetDecidedBy() != "" {
		decided = fmt.Sprintf("%s at %s", p.GetDecidedBy(), formatMs(p.GetDecidedUnixMs()))
	}
	fields := [][2]string{
		{"id", p.GetId()},
		{"direction", vaultDirectionName(p.GetDirection())},
		{"state", state},
		{"hot wallet", p.GetHotWalletId()},
		{"cold wallet", p.GetColdWalletId()},
		{"amount", fmt.Sprintf("%d sat", p.GetAmountSat())},
		{"reason", p.GetReason()},
		{"proposed", fmt.Sprintf("%s by %s (index %d)", formatMs(p.GetProposedUnixMs()), orDash(p.GetProposedBy()), p.GetIndex())},
		{"decided", decided},
		{"batch", orDash(p.GetBatchId())},
		{"txid", orDash(p.GetTxid())},
	}
	if b != nil {
		fields = append(fields,
			[2]string{"batch state", batchStateName(b.GetState())},
			[2]string{"batch fee", fmt.Sprintf("%d sat at %s sat/vB", b.GetFeeSat(), formatFeeRate(b.GetFeeRateSatKvb()))},
		)
		if b.GetSignaturesRequired() > 0 {
			got := b.GetSignatures()
			if b.GetState() != bankdv1.BatchState_BATCH_STATE_PLANNED {
				got = b.GetSignaturesRequired()
			}
			fields = append(fields, [2]string{"signatures", fmt.Sprintf("%d of %d cosigners", got, b.GetSignaturesRequired())})
		}
		fields = append(fields, [2]string{"psbt", base64.StdEncoding.EncodeToString(b.GetPsbt())})
	}
	fields = append(fields, [2]string{"resolved", formatMs(p.GetResolvedUnixMs())})
	a.printFields(fields)
}

func vaultSignImport(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 2, "ID FILE"); err != nil {
			return err
		}
		raw, err := os.ReadFile(args[1])
		if err != nil {
			return usageErrorf("%v", err)
		}
		psbt, ok := decodePSBT(raw)
		if !ok {
			return usageErrorf("%s is neither a base64 nor a binary PSBT (BIP 174: base64 starts with \"cHNidP8\", binary with \"psbt\\xff\")", args[1])
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.SubmitPayoutSignatureResponse, error) {
			got, err := c.vault.Get(ctx, connect.NewRequest(&bankdv1.GetVaultProposalRequest{Id: args[0]}))
			if err != nil {
				return nil, err
			}
			if got.Msg.GetProposal().GetBatchId() == "" {
				return nil, fmt.Errorf("vault proposal %s has no transaction yet (it is %s)", args[0], vaultStateName(got.Msg.GetProposal().GetState()))
			}
			r, err := c.vault.SubmitSignature(ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: got.Msg.GetProposal().GetBatchId(), Psbt: psbt}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("vault proposal %s: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		b := res.Batch
		a.printFields([][2]string{
			{"batch", b.GetId()},
			{"state", batchStateName(b.GetState())},
			{"signatures", fmt.Sprintf("%d of %d", min(b.GetSignatures(), b.GetSignaturesRequired()), b.GetSignaturesRequired())},
			{"txid", orDash(b.GetTxid())},
		})
		return nil
	}
}
