package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// --- chain state (read only: the leader's chain watcher writes it) ---

func chainStatus(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetChainStatusResponse, error) {
			r, err := c.chain.GetChainStatus(ctx, connect.NewRequest(&bankdv1.GetChainStatusRequest{Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		tip := "none (no block followed yet)"
		if t := res.GetTip(); t != nil {
			tip = fmt.Sprintf("%d %s (connected %s)", t.GetHeight(), t.GetHash(), formatMs(t.GetConnectedAtUnixMs()))
		}
		a.printFields([][2]string{
			{"network", orDash(res.GetNetwork())},
			{"tip", tip},
			{"pending txs", fmt.Sprint(res.GetPendingTxs())},
			{"confirmed txs (not final)", fmt.Sprint(res.GetConfirmedTxs())},
			{"utxos", fmt.Sprintf("%d, %d sat", res.GetUtxos(), res.GetUtxoValueSat())},
			{"rescan", describeRescan(res.GetRescan())},
			{"served by", describeMeta(res.GetMeta())},
		})
		return nil
	}
}

func chainTx(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "TXID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetChainTxResponse, error) {
			r, err := c.chain.GetChainTx(ctx, connect.NewRequest(&bankdv1.GetChainTxRequest{Txid: args[0], Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		tx := res.GetTx()
		state := enumName(tx.GetState().String(), "TX_STATE_")
		if tx.GetRejectReason() != bankdv1.RejectReason_REJECT_REASON_UNSPECIFIED {
			state += " (" + enumName(tx.GetRejectReason().String(), "REJECT_REASON_")
			if tx.GetConflictingTxid() != "" {
				state += " by " + tx.GetConflictingTxid()
			}
			state += ")"
		}
		fields := [][2]string{{"txid", tx.GetTxid()}, {"state", state}}
		if tx.GetBlockHash() != "" {
			fields = append(fields, [2]string{"block", fmt.Sprintf("%d %s, %d confirmations", tx.GetBlockHeight(), tx.GetBlockHash(), tx.GetConfirmations())})
		}
		fields = append(fields, [2]string{"first seen", formatMs(tx.GetFirstSeenUnixMs())}, [2]string{"served by", describeMeta(res.GetMeta())})
		a.printFields(fields)
		if len(res.GetDeposits()) > 0 {
			fmt.Fprintln(a.stdout)
			a.printDeposits(res.GetDeposits())
		}
		return nil
	}
}

func chainUtxos(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	wallet := fs.String("wallet", "", "only this wallet's UTXOs")
	limit := fs.Int("limit", 1000, "most UTXOs to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListUtxosResponse{}
		var err error
		res.Utxos, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.Utxo, string, *bankdv1.ReadMeta, error) {
				r, err := c.chain.ListUtxos(ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{
					WalletId: *wallet, PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Utxos, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		rows := make([][]string, 0, len(res.Utxos))
		for _, u := range res.Utxos {
			rows = append(rows, []string{
				fmt.Sprintf("%s:%d", u.GetOutpoint().GetTxid(), u.GetOutpoint().GetVout()), fmt.Sprint(u.GetValueSat()),
				u.GetWalletId(), orDash(u.GetAccountId()), u.GetAddress(), fmt.Sprint(u.GetHeight()), orDash(u.GetSpendingTxid()),
			})
		}
		a.printTable([]string{"OUTPOINT", "SAT", "WALLET", "ACCOUNT", "ADDRESS", "HEIGHT", "SPENDING TX"}, rows)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more UTXOs exist\n", *limit)
		}
		return nil
	}
}

func chainDeposits(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	account := fs.String("account", "", "account whose deposits to list (required)")
	limit := fs.Int("limit", 1000, "most deposits to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListDepositsResponse{}
		var err error
		res.Deposits, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.Deposit, string, *bankdv1.ReadMeta, error) {
				r, err := c.chain.ListDeposits(ctx, connect.NewRequest(&bankdv1.ListDepositsRequest{
					AccountId: *account, PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Deposits, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printDeposits(res.Deposits)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more deposits exist\n", *limit)
		}
		return nil
	}
}

func (a *app) printDeposits(ds []*bankdv1.Deposit) {
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		state := enumName(d.GetState().String(), "DEPOSIT_STATE_")
		if d.GetProblem() != "" {
			state += " (" + d.GetProblem() + ")"
		}
		rows = append(rows, []string{
			fmt.Sprintf("%s:%d", d.GetOutpoint().GetTxid(), d.GetOutpoint().GetVout()), d.GetAccountId(), fmt.Sprint(d.GetValueSat()),
			state, fmt.Sprint(d.GetBlockHeight()), fmt.Sprint(d.GetAttempt()), fmt.Sprint(d.GetReversals()), orDash(d.GetTransferId()),
		})
	}
	a.printTable([]string{"OUTPOINT", "ACCOUNT", "SAT", "STATE", "HEIGHT", "ATTEMPT", "REVERSALS", "TRANSFER"}, rows)
}

// enumName shortens a proto enum name: TX_STATE_PENDING -> pending.
func enumName(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func chainRescan(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	from := fs.Uint("from", 0, "first height to match again (a wallet's birthday); admin")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if *from > 1<<32-1 {
			return usageErrorf("-from must fit in 32 bits")
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.RescanChainResponse, error) {
			r, err := c.chain.Rescan(ctx, connect.NewRequest(&bankdv1.RescanChainRequest{FromHeight: uint32(*from)}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		p := res.GetRescan()
		fmt.Fprintf(a.stdout, "rescan from %d to %d; next block %d (progress: bankctl chain status)\n", p.GetFromHeight(), p.GetTargetHeight(), p.GetNextHeight())
		return nil
	}
}

func describeRescan(p *bankdv1.RescanProgress) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("from %d to %d, next %d", p.GetFromHeight(), p.GetTargetHeight(), p.GetNextHeight())
}
