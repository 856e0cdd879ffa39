package main

import (
	"context"
	"flag"
	"fmt"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// clusterCompact drops old records now, as the retention block would with these windows.
func clusterCompact(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	history := fs.Duration("history", 0, "drop events, account history and problems older than this")
	keep := fs.Uint64("keep-indexes", 0, "but keep those of the newest N log indexes")
	window := fs.Duration("idempotency-window", 0, "drop finished client transfers (their ids) older than this; a retry after it is a new transfer")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		if *history < 0 || *window < 0 {
			return fmt.Errorf("-history and -idempotency-window must not be negative")
		}
		if *history == 0 && *keep == 0 && *window == 0 {
			return fmt.Errorf("give -history, -keep-indexes or -idempotency-window: nothing to drop")
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CompactClusterResponse, error) {
			r, err := c.cluster.Compact(ctx, connect.NewRequest(&bankdv1.CompactClusterRequest{
				HistoryMs: history.Milliseconds(), KeepIndexes: *keep, IdempotencyWindowMs: window.Milliseconds(),
			}))
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
		c := res.GetCompaction()
		fmt.Fprintf(a.stdout, "dropped %d events, %d history keys, %d transfers, %d problems; events are kept from index %d\n",
			c.GetEventsDeleted(), c.GetHistoryDeleted(), c.GetTransfersDeleted(), c.GetProblemsDeleted(), c.GetHorizonIndex())
		return nil
	}
}
