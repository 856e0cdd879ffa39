package main

import (
	"context"
	"flag"
	"fmt"
	"math/bits"
	"strings"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// clusterUpgradeStatus shows what each node's binary applies and which command types the
// cluster may use: a type newer than the baseline is proposed only once every server applies
// it (node.checkUpgraded).
func clusterUpgradeStatus(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.MembersResponse, error) {
			r, err := c.cluster.Members(ctx, connect.NewRequest(&bankdv1.MembersRequest{}))
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
		usable, union := ^uint64(0), uint64(0)
		var rows [][]string
		for _, m := range res.Members {
			if m.Suffrage == "" {
				continue // not in the configuration: it does not gate anything
			}
			types := m.CommandTypes
			if types == 0 && m.GossipState != "unknown" {
				types = fsm.BaselineCommandTypes
			}
			usable &= types
			union |= types
			reads := "-"
			if m.ReadsFormat != 0 {
				reads = fmt.Sprintf("1-%d", m.ReadsFormat)
			}
			rows = append(rows, []string{m.NodeId, m.Suffrage, orDash(m.Version), fmt.Sprint(m.CommandVersion), fmt.Sprint(bits.OnesCount64(types)), reads, m.GossipState})
		}
		a.printTable([]string{"NODE", "SUFFRAGE", "VERSION", "CMD VERSION", "COMMAND TYPES", "READS FORMATS", "GOSSIP"}, rows)
		var waiting []string
		for t := 1; t < 64; t++ {
			bit := uint64(1) << uint(t)
			if union&bit != 0 && usable&bit == 0 {
				waiting = append(waiting, enumName(bankdv1.CommandType(t).String(), "COMMAND_TYPE_"))
			}
		}
		if len(waiting) == 0 {
			fmt.Fprintln(a.stdout, "every node applies every command type any node knows: the cluster may use them all")
		} else {
			fmt.Fprintf(a.stdout, "not yet usable (some node does not apply them; upgrade it): %s\n", strings.Join(waiting, ", "))
		}
		return nil
	}
}
