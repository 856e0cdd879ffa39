package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// problems lists what the drivers' commands met and applied around (a deposit credit the
// ledger refused, a settlement booked to ln-unattributed), oldest first. Each needs a look.
func problems(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	limit := fs.Int("limit", 1000, "most problems to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListProblemsResponse{}
		var err error
		res.Problems, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.Problem, string, *bankdv1.ReadMeta, error) {
				r, err := c.cluster.ListProblems(ctx, connect.NewRequest(&bankdv1.ListProblemsRequest{
					PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				res.Total = r.Msg.Total
				return r.Msg.Problems, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		rows := make([][]string, 0, len(res.Problems))
		for _, p := range res.Problems {
			rows = append(rows, []string{fmt.Sprint(p.GetIndex()), formatMs(p.GetAtUnixMs()), ownerName(p.GetOwner()),
				enumName(p.GetCommandType().String(), "COMMAND_TYPE_"), p.GetSubject(), p.GetMessage()})
		}
		a.printTable([]string{"INDEX", "AT", "DRIVER", "COMMAND", "SUBJECT", "PROBLEM"}, rows)
		fmt.Fprintf(a.stderr, "bankctl: %d problems recorded in all\n", res.Total)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more problems exist\n", *limit)
		}
		return nil
	}
}

func ownerName(o bankdv1.Owner) string { return enumName(o.String(), "OWNER_") }

func describeProblem(p *bankdv1.Problem) string {
	return fmt.Sprintf("problem %s %s: %s", ownerName(p.GetOwner()), p.GetSubject(), strings.TrimSpace(p.GetMessage()))
}
