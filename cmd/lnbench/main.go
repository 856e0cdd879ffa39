// Command lnbench measures the Lightning pool against real lnd: the latency bankd adds to a
// payment over paying with lnd directly, and intraledger payments per second. It starts a
// regtest btcd, three pool lnd and an external lnd (regtest package) and a 3-process bankd
// cluster driving the pool, prints figures and never fails on them.
//
//	go run ./cmd/lnbench -payments 200 -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/regtest"
)

func main() {
	var (
		payments = flag.Int("payments", 200, "payments of each kind (direct lnd, through bankd), interleaved")
		amount   = flag.Int64("amount", 1000, "satoshis per Lightning payment")
		duration = flag.Duration("duration", 10*time.Second, "length of the intraledger run")
		clients  = flag.Int("clients", 32, "concurrent clients in the intraledger run")
		accounts = flag.Int("accounts", 100, "accounts in the intraledger run")
		bin      = flag.String("bin", "", "bankd binary (default $BANKD_BIN or bin/bankd)")
	)
	flag.Parse()
	log.SetFlags(0)
	if err := run(*payments, *amount, *duration, *clients, *accounts, *bin); err != nil {
		log.Fatalf("lnbench: %v", err)
	}
}

func run(payments int, amount int64, duration time.Duration, clients, accounts int, bin string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "lnbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	btcd, err := regtest.Start(ctx, regtest.Options{DataDir: dir + "/btcd"})
	if err != nil {
		return err
	}
	defer btcd.Stop(context.Background())
	start := time.Now()
	lg, err := regtest.StartLightning(ctx, btcd, regtest.LightningOptions{Dir: dir + "/lnd"})
	if err != nil {
		return err
	}
	defer lg.Stop(context.Background())
	ready := time.Since(start)

	c, err := testcluster.LaunchProcs(testcluster.Spec{Chain: &testcluster.Chain{Network: "regtest"}, Extra: lg.PoolHCL()}, testcluster.ProcOptions{Dir: dir + "/cluster", Bin: bin})
	if err != nil {
		return err
	}
	defer c.Close()
	leader, err := waitPool(ctx, c, len(lg.Pool))
	if err != nil {
		return err
	}
	cl := c.Client(leader, testcluster.AdminToken)
	if err := setup(ctx, cl, accounts, int64(payments)*(amount+100)); err != nil {
		return err
	}
	fmt.Printf("lnbench: btcd + %d pool lnd + 1 external lnd ready in %s; 3 bankd processes, raft-boltdb fsync on\n\n", len(lg.Pool), ready.Round(time.Millisecond))

	direct, viaBankd, err := payLatencies(ctx, lg, cl, payments, amount)
	if err != nil {
		return err
	}
	slices.Sort(direct)
	slices.Sort(viaBankd)
	p50d, p99d := pct(direct, 0.50), pct(direct, 0.99)
	p50b, p99b := pct(viaBankd, 0.50), pct(viaBankd, 0.99)
	fmt.Printf("(a) %d payments of %d sat to the external node, one at a time, interleaved\n", payments, amount)
	fmt.Printf("  lnd SendPaymentV2 directly:   p50 %s  p99 %s\n", ms(p50d), ms(p99d))
	fmt.Printf("  bankd PayInvoice (wait):      p50 %s  p99 %s\n", ms(p50b), ms(p99b))
	fmt.Printf("  added by bankd:               p50 %s  p99 %s   (target: < 5 ms at p50)\n", ms(p50b-p50d), ms(p99b-p99d))

	commit, err := sequentialCommits(ctx, cl, payments)
	if err != nil {
		return err
	}
	slices.Sort(commit)
	fmt.Printf("  for scale, one Raft commit (a PayInternal, one at a time): p50 %s  p99 %s; a payment through bankd makes two\n\n", ms(pct(commit, 0.5)), ms(pct(commit, 0.99)))

	n, lat, errs := intraledger(ctx, cl, clients, accounts, duration)
	slices.Sort(lat)
	fmt.Printf("(b) intraledger payments (PayInternal), %d concurrent clients, %d accounts, %s\n", clients, accounts, duration)
	fmt.Printf("  %d payments: %.0f payments/s, latency p50 %s p99 %s, %d errors\n", n, float64(n)/duration.Seconds(), ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), errs)
	return nil
}

// waitPool waits for a leader whose pool has every node usable.
func waitPool(ctx context.Context, c *testcluster.ProcCluster, n int) (int, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		leader, err := c.WaitLeader(ctx)
		if err != nil {
			return 0, err
		}
		res, err := c.Client(leader, testcluster.ClientToken).Lightning.ListNodes(ctx, connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
		if err == nil {
			usable := 0
			for _, node := range res.Msg.Nodes {
				if node.Reachable && node.SyncedToChain && node.Pubkey != "" {
					usable++
				}
			}
			if usable == n {
				return leader, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, fmt.Errorf("the pool's %d nodes were not all healthy within 2 minutes", n)
}

func setup(ctx context.Context, cl *apiclient.Clients, accounts int, payer int64) error {
	create := func(id string, kind bankdv1.AccountKind) error {
		_, err := cl.Ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{
			Account: &bankdv1.Account{Id: id, Currency: "BTC", Kind: kind, NonNegative: kind == bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}}))
		return err
	}
	if err := create("treasury", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY); err != nil {
		return err
	}
	ids := []string{"payer"}
	for i := range accounts {
		ids = append(ids, fmt.Sprintf("u%d", i))
	}
	for _, id := range ids {
		if err := create(id, bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY); err != nil {
			return fmt.Errorf("create %s: %w", id, err)
		}
		fund := int64(1_000_000_000)
		if id == "payer" {
			fund = payer
		}
		_, err := cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: &bankdv1.Transfer{
			Id: "fund-" + id, DebitAccountId: "treasury", CreditAccountId: id, Amount: fund, Currency: "BTC"}}))
		if err != nil {
			return fmt.Errorf("fund %s: %w", id, err)
		}
	}
	return nil
}

// payLatencies pays n external invoices with pool-1 directly and n through bankd, alternating.
func payLatencies(ctx context.Context, lg *regtest.Lightning, cl *apiclient.Clients, n int, amount int64) (direct, viaBankd []time.Duration, err error) {
	for i := range n {
		bolt11, _, err := lg.External.AddInvoice(ctx, amount, fmt.Sprintf("direct %d", i))
		if err != nil {
			return nil, nil, err
		}
		t0 := time.Now()
		if _, _, err := lg.Pool[0].PayInvoice(ctx, bolt11); err != nil {
			return nil, nil, err
		}
		direct = append(direct, time.Since(t0))

		bolt11, _, err = lg.External.AddInvoice(ctx, amount, fmt.Sprintf("bankd %d", i))
		if err != nil {
			return nil, nil, err
		}
		t0 = time.Now()
		res, err := cl.Lightning.PayInvoice(ctx, connect.NewRequest(&bankdv1.PayInvoiceRequest{
			Id: fmt.Sprintf("bench-%d", i), AccountId: "payer", PaymentRequest: bolt11, WaitMs: 60_000,
		}))
		if err != nil {
			return nil, nil, fmt.Errorf("bankd payment %d: %w", i, err)
		}
		if st := res.Msg.Payment.State; st != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
			return nil, nil, fmt.Errorf("bankd payment %d: %s (%s)", i, st, res.Msg.Payment.FailureReason)
		}
		viaBankd = append(viaBankd, time.Since(t0))
	}
	return direct, viaBankd, nil
}

// sequentialCommits times n PayInternal calls made one at a time: one Raft commit each.
func sequentialCommits(ctx context.Context, cl *apiclient.Clients, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := range n {
		t0 := time.Now()
		_, err := cl.Lightning.PayInternal(ctx, connect.NewRequest(&bankdv1.PayInternalRequest{
			Id: fmt.Sprintf("seq-%d", i), FromAccountId: "u0", ToAccountId: "u1", AmountSat: 1,
		}))
		if err != nil {
			return nil, fmt.Errorf("sequential payment %d: %w", i, err)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// intraledger sends PayInternal requests from `clients` goroutines for d.
func intraledger(ctx context.Context, cl *apiclient.Clients, clients, accounts int, d time.Duration) (int64, []time.Duration, int64) {
	var (
		done, errs atomic.Int64
		mu         sync.Mutex
		all        []time.Duration
		wg         sync.WaitGroup
	)
	end := time.Now().Add(d)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for i := 0; time.Now().Before(end); i++ {
				from, to := rand.IntN(accounts), rand.IntN(accounts-1)
				if to >= from {
					to++
				}
				t0 := time.Now()
				_, err := cl.Lightning.PayInternal(ctx, connect.NewRequest(&bankdv1.PayInternalRequest{
					Id: fmt.Sprintf("i-%d-%d", w, i), FromAccountId: fmt.Sprintf("u%d", from), ToAccountId: fmt.Sprintf("u%d", to), AmountSat: 1,
				}))
				if err != nil {
					errs.Add(1)
					continue
				}
				lat = append(lat, time.Since(t0))
				done.Add(1)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return done.Load(), all, errs.Load()
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
