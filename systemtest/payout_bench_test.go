package systemtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// BenchmarkPayoutPipeline measures withdrawals through the whole pipeline on regtest: 1,000
// requests from 100 accounts (16 clients, spread over the three nodes), planned in batches of
// 100, signed by signerd, broadcast, mined (a block whenever a signed batch waits in the
// mempool) and booked at final depth 3. It reports requests/s (the API and Raft) and paid/s
// (request to booked, end to end). Run it once: go test -run '^$' -bench PayoutPipeline
// -benchtime 1x ./systemtest/ (make bench does).
func BenchmarkPayoutPipeline(b *testing.B) {
	const n, accounts = 1000, 100
	r := newPayoutRig(b, 100, 40, 2_000_000)
	cl := r.admin()
	createAccount(b, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	for i := range accounts {
		id := fmt.Sprintf("bench-%03d", i)
		createAccount(b, cl, id, liability, true)
		if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund-"+id, "capital", id, 200_000)})); err != nil {
			b.Fatal(err)
		}
	}
	r.startSigner(followerOf(r.c, -1))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, n)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				cli := r.c.Client(i%len(r.c.Nodes), testcluster.ClientToken)
				_, err := cli.Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
					Id: fmt.Sprintf("bench-w-%04d", i), AccountId: fmt.Sprintf("bench-%03d", i%accounts),
					Address: outsiderAddress(b, i%2 == 0), AmountSat: 5_000 + int64(i)}))
				errs <- err
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	requested := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	r.mineUntilPaid(n)
	paid := time.Since(start)
	b.StopTimer()
	batches := len(r.batches())
	b.ReportMetric(float64(n)/requested.Seconds(), "requests/s")
	b.ReportMetric(float64(n)/paid.Seconds(), "paid/s")
	b.ReportMetric(float64(batches), "batches")
	b.Logf("%d withdrawals: requested in %v, paid and booked in %v, %d batches", n, requested.Round(time.Millisecond), paid.Round(time.Millisecond), batches)
}
