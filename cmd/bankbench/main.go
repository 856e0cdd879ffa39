// Command bankbench measures a 3-node bankd cluster of real processes (fsync on) on this
// machine and prints the figures: single-transfer requests from many concurrent clients and
// requests of 1,000 transfers, each with the clients on the leader and spread over all nodes,
// and the time from SIGKILL of the leader to the first acknowledged write. Then it runs the
// same accounts and transfers against a PostgreSQL double-entry ledger (Debian's package,
// started here with fsync and synchronous_commit on) and prints both side by side with their
// ratio. It passes or fails nothing.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
)

// workload is what both sides run: the same accounts, clients, request sizes and duration.
type workload struct {
	duration  time.Duration
	clients   int // concurrent clients sending single-transfer requests
	batchers  int // concurrent clients sending batchSize-transfer requests
	batchSize int
	accounts  int // customer accounts c0..c<accounts-1>, besides "reserve"
}

func main() {
	var (
		duration   = flag.Duration("duration", 15*time.Second, "how long each throughput run lasts")
		clients    = flag.Int("clients", 64, "concurrent clients sending single-transfer requests")
		batchers   = flag.Int("batch-clients", 4, "concurrent clients sending 1,000-transfer requests")
		batchSize  = flag.Int("batch-size", 1000, "transfers per request in the batch run")
		failovers  = flag.Int("failovers", 3, "leader kills to time")
		accounts   = flag.Int("accounts", 1000, "customer accounts")
		keepDir    = flag.Bool("keep", false, "keep the cluster's (and PostgreSQL's) data and logs")
		bin        = flag.String("bin", "", "bankd binary (default $BANKD_BIN or bin/bankd)")
		profileDir = flag.String("profile-dir", "", "save CPU profiles of the leader and a follower during each throughput run here")
		plaintext  = flag.Bool("plaintext", false, "run the cluster with insecure_plaintext (no TLS), to measure what TLS costs")
		spread     = flag.Bool("spread", true, "also run (a) and (b) with the clients spread round-robin over all nodes (followers forward to the leader)")
		postgres   = flag.Bool("postgres", true, "also run the workload on a PostgreSQL double-entry ledger (Debian's postgresql package, started here) and print both side by side")
		pgOnly     = flag.Bool("pg-only", false, "run only the PostgreSQL side")
		coalesce   = flag.Bool("coalesce", true, "let the leader coalesce concurrent transfer requests into shared Raft entries (raft.coalesce_in_flight); false measures without")
		inFlight   = flag.Int("coalesce-in-flight", 0, "raft.coalesce_in_flight for the cluster (0: the node's default)")
		linger     = flag.Duration("coalesce-linger", 0, "raft.coalesce_linger for the cluster (0: the node's default)")
	)
	flag.Parse()
	log.SetFlags(0)
	w := workload{duration: *duration, clients: *clients, batchers: *batchers, batchSize: *batchSize, accounts: *accounts}
	ctx := context.Background()

	var bankd, pg sideResults
	if !*pgOnly {
		bankd = benchBankd(ctx, w, bankdOptions{bin: *bin, keep: *keepDir, profileDir: *profileDir, plaintext: *plaintext, spread: *spread, failovers: *failovers, noCoalescing: !*coalesce, coalesceInFlight: *inFlight, coalesceLinger: *linger})
	}
	if *postgres || *pgOnly {
		var err error
		if pg, err = benchPostgres(ctx, w, *keepDir); err != nil {
			fmt.Printf("bankbench: no PostgreSQL figures: %v\n\n", err)
		}
	}
	if !*pgOnly && pg.single != nil {
		printComparison(os.Stdout, w, bankd, pg)
	}
}

// bankdOptions are the flags that only concern the bankd side.
type bankdOptions struct {
	bin, profileDir  string
	keep, plaintext  bool
	spread           bool
	noCoalescing     bool
	coalesceInFlight int
	coalesceLinger   time.Duration
	failovers        int
}

// sideResults are one side's throughput runs; a run that did not happen is nil.
type sideResults struct {
	single, singleSpread, batch, batchSpread *loadResult
}

// benchBankd starts a 3-process cluster, runs the workload against it, times leader failovers
// and prints each figure as it comes. The cluster is gone when it returns.
func benchBankd(ctx context.Context, w workload, o bankdOptions) sideResults {
	dir, err := os.MkdirTemp("", "bankbench-")
	if err != nil {
		log.Fatal(err)
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	c, err := testcluster.LaunchProcs(testcluster.Spec{Plaintext: o.plaintext, Raft: testcluster.Raft{NoCoalescing: o.noCoalescing,
		CoalesceInFlight: o.coalesceInFlight, CoalesceLinger: o.coalesceLinger}}, testcluster.ProcOptions{Dir: dir, Bin: o.bin, Pprof: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	leader, err := within(ctx, 60*time.Second, c.WaitLeader)
	if err != nil {
		log.Fatal(err)
	}
	cl := c.Client(leader, testcluster.ClientToken)
	created := time.Now()
	if err := createAccounts(ctx, cl, w.accounts); err != nil {
		log.Fatal(err)
	}
	createdIn := time.Since(created)
	transport := "mutual TLS"
	if o.plaintext {
		transport = "plaintext"
	}
	fmt.Printf("bankbench: 3 bankd processes on 127.0.0.1 (%s), raft-boltdb fsync on, %d customer accounts, data in %s\n", transport, w.accounts, dir)
	fmt.Printf("  accounts created in %s with CreateAccounts; resident memory %s\n\n", createdIn.Round(time.Millisecond), residentMemory(c))

	var res sideResults
	run := func(name string, workers, perRequest int, spread bool, tag, title string) *loadResult {
		stopProfile := profileNodes(c, leader, o.profileDir, name, w.duration)
		before := scrapeStages(c)
		r := runLoad(ctx, bankdSenders(c, leader, spread), workers, perRequest, w.accounts, w.duration, tag)
		after := scrapeStages(c)
		stopProfile()
		r.print(title)
		printStages(c, leader, before, after)
		fmt.Println()
		return &r
	}
	res.single = run("single", w.clients, 1, false, "s",
		fmt.Sprintf("(a) single-transfer requests, %d concurrent clients on the leader", w.clients))
	if o.spread {
		res.singleSpread = run("single-spread", w.clients, 1, true, "S",
			fmt.Sprintf("(a') single-transfer requests, %d concurrent clients spread over %d nodes", w.clients, len(c.Nodes)))
	}
	res.batch = run("batch", w.batchers, w.batchSize, false, "b",
		fmt.Sprintf("(b) requests of %d transfers, %d concurrent clients on the leader", w.batchSize, w.batchers))
	if o.spread {
		res.batchSpread = run("batch-spread", w.batchers, w.batchSize, true, "B",
			fmt.Sprintf("(b') requests of %d transfers, %d concurrent clients spread over %d nodes", w.batchSize, w.batchers, len(c.Nodes)))
	}
	fmt.Printf("  after the runs: resident memory %s\n\n", residentMemory(c))

	var times []time.Duration
	for i := 0; i < o.failovers; i++ {
		d, err := timeFailover(ctx, c)
		if err != nil {
			log.Fatalf("failover %d: %v", i+1, err)
		}
		times = append(times, d)
	}
	if len(times) == 0 {
		return res
	}
	slices.Sort(times)
	fmt.Printf("(c) SIGKILL of the leader -> first acknowledged write, %d runs: min %s, median %s, max %s\n\n",
		len(times), ms(times[0]), ms(times[len(times)/2]), ms(times[len(times)-1]))
	return res
}

// within runs fn with a context that ends after d.
func within[T any](ctx context.Context, d time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return fn(ctx)
}

func createAccounts(ctx context.Context, cl *apiclient.Clients, n int) error {
	// "reserve" and c0..c(n-1), 8,000 (fsm.MaxAccountsPerCommand) per CreateAccounts request:
	// one Raft entry each.
	const perRequest = 8000
	accs := []*bankdv1.Account{{Id: "reserve", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET}}
	for i := 0; i < n; i++ {
		accs = append(accs, &bankdv1.Account{Id: fmt.Sprintf("c%d", i), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY})
	}
	for start := 0; start < len(accs); start += perRequest {
		chunk := accs[start:min(start+perRequest, len(accs))]
		req := &bankdv1.CreateAccountsRequest{Accounts: chunk}
		var (
			res *connect.Response[bankdv1.CreateAccountsResponse]
			err error
		)
		// CREATE_ACCOUNTS is proposed once the leader has seen in gossip that every node applies
		// it, which can take a moment after the cluster starts; every try is idempotent.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			res, err = within(ctx, time.Minute, func(ctx context.Context) (*connect.Response[bankdv1.CreateAccountsResponse], error) {
				return cl.Ledger.CreateAccounts(ctx, connect.NewRequest(req))
			})
			code := connect.CodeOf(err)
			if err == nil || (code != connect.CodeFailedPrecondition && code != connect.CodeUnavailable) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("create accounts %s to %s: %w", chunk[0].Id, chunk[len(chunk)-1].Id, err)
		}
		for _, r := range res.Msg.Results {
			if r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
				return fmt.Errorf("create account %s: %s: %s", r.Id, r.Code, r.Message)
			}
		}
	}
	return nil
}

type loadResult struct {
	transfers int64
	errors    int64
	firstErr  error
	elapsed   time.Duration
	latencies []time.Duration
}

func (r loadResult) print(title string) {
	slices.Sort(r.latencies)
	fmt.Printf("%s\n  %d transfers in %s: %.0f transfers/s, %d requests, latency p50 %s p99 %s max %s, %d errors\n",
		title, r.transfers, r.elapsed.Round(time.Millisecond), float64(r.transfers)/r.elapsed.Seconds(),
		len(r.latencies), ms(pct(r.latencies, 0.50)), ms(pct(r.latencies, 0.99)), ms(pct(r.latencies, 1)), r.errors)
	if r.firstErr != nil {
		fmt.Printf("  first error: %v\n", r.firstErr)
	}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// sendFunc sends one request of transfers. It fails for a failed request and for a request of
// which any transfer was refused.
type sendFunc func(ctx context.Context, ts []*bankdv1.Transfer) error

// runLoad sends requests of perRequest transfers from `workers` goroutines for d; worker w sends
// through newSender(w). Every transfer moves 1 BTC from "reserve" to a customer account, in turn.
func runLoad(ctx context.Context, newSender func(worker int) sendFunc, workers, perRequest, accounts int, d time.Duration, tag string) loadResult {
	var (
		mu      sync.Mutex
		res     loadResult
		counter atomic.Int64
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	timeout := 10 * time.Second
	if perRequest > 1 {
		timeout = 30 * time.Second
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send := newSender(w)
			var lat []time.Duration
			var done, failed int64
			for time.Now().Before(deadline) {
				ts := make([]*bankdv1.Transfer, perRequest)
				for j := range ts {
					n := counter.Add(1)
					ts[j] = &bankdv1.Transfer{Id: fmt.Sprintf("%s%d", tag, n), DebitAccountId: "reserve",
						CreditAccountId: fmt.Sprintf("c%d", n%int64(accounts)), Amount: 1, Currency: "BTC"}
				}
				t0 := time.Now()
				_, err := within(ctx, timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, send(ctx, ts) })
				if err != nil {
					failed++
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, time.Since(t0))
				done += int64(perRequest)
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.transfers += done
			res.errors += failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// bankdSenders makes each worker's sender to the cluster: on the leader, or (spread) on node
// worker mod 3, a follower forwarding to the leader for two workers of three. A single transfer
// goes as CreateTransfer, more as CreateTransfers.
func bankdSenders(c *testcluster.ProcCluster, leader int, spread bool) func(worker int) sendFunc {
	return func(worker int) sendFunc {
		node := leader
		if spread {
			node = worker % len(c.Nodes)
		}
		cl := c.Client(node, testcluster.ClientToken)
		return func(ctx context.Context, ts []*bankdv1.Transfer) error {
			if len(ts) == 1 {
				_, err := cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: ts[0]}))
				return err
			}
			resp, err := cl.Ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: ts}))
			if err != nil {
				return err
			}
			for _, r := range resp.Msg.Results {
				if r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
					return fmt.Errorf("transfer %q: %s: %s", r.Id, r.Code, r.Message)
				}
			}
			return nil
		}
	}
}

// timeFailover kills the leader and measures until a write is acknowledged by the new one,
// then restarts the killed node and waits for it to catch up.
func timeFailover(ctx context.Context, c *testcluster.ProcCluster) (time.Duration, error) {
	leader, err := within(ctx, 30*time.Second, c.WaitLeader)
	if err != nil {
		return 0, err
	}
	killed := time.Now()
	if err := c.Kill(leader); err != nil {
		return 0, err
	}
	var n int
	for time.Since(killed) < 30*time.Second {
		for i := range c.Nodes {
			if i == leader {
				continue
			}
			n++
			cl := c.Client(i, testcluster.ClientToken)
			_, err := within(ctx, 250*time.Millisecond, func(ctx context.Context) (*connect.Response[bankdv1.CreateTransferResponse], error) {
				return cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
					Transfer: &bankdv1.Transfer{Id: fmt.Sprintf("fo-%d-%d", killed.UnixNano(), n), DebitAccountId: "reserve", CreditAccountId: "c0", Amount: 1, Currency: "BTC"},
				}))
			})
			if err == nil {
				d := time.Since(killed)
				if err := c.Restart(leader); err != nil {
					return 0, err
				}
				st, err := within(ctx, 5*time.Second, func(ctx context.Context) (*connect.Response[bankdv1.StatusResponse], error) {
					return cl.Cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
				})
				if err != nil {
					return 0, err
				}
				_, err = within(ctx, 60*time.Second, func(ctx context.Context) (struct{}, error) {
					return struct{}{}, c.WaitApplied(ctx, st.Msg.AppliedIndex)
				})
				return d, err
			}
		}
	}
	return 0, fmt.Errorf("no write acknowledged within 30s of the leader kill")
}

// profileNodes fetches CPU profiles of the leader and of one follower covering a run of length d
// into dir (<name>-leader.pprof, <name>-follower.pprof); the returned func waits for them.
func profileNodes(c *testcluster.ProcCluster, leader int, dir, name string, d time.Duration) func() {
	if dir == "" {
		return func() {}
	}
	follower := (leader + 1) % len(c.Nodes)
	var wg sync.WaitGroup
	for role, i := range map[string]int{"leader": leader, "follower": follower} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fetchProfile(c.Nodes[i].PprofAddr, filepath.Join(dir, name+"-"+role+".pprof"), d); err != nil {
				log.Printf("profile %s of the %s: %v", name, role, err)
			}
		}()
	}
	return wg.Wait
}

// fetchProfile saves a CPU profile of d (less a second, so that it ends with the run) from the
// pprof server at addr into path.
func fetchProfile(addr, path string, d time.Duration) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())-1))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET profile: %s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// residentMemory reports each node's resident set size (VmRSS, from /proc) and its live heap:
// the Go heap in use right after a collection, which is what the node holds rather than the
// garbage the collector lets grow up to GOGC (or GOMEMLIMIT) beyond it.
func residentMemory(c *testcluster.ProcCluster) string {
	var parts []string
	for i := range c.Nodes {
		rss := "?"
		if pid := c.Pid(i); pid != 0 {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
						if kb, err := strconv.Atoi(f[1]); err == nil {
							rss = fmt.Sprintf("%d MiB", kb/1024)
						}
					}
				}
			}
		}
		live := "?"
		if n, err := liveHeap(c.Nodes[i].PprofAddr); err == nil {
			live = fmt.Sprintf("%d MiB", n>>20)
		}
		parts = append(parts, fmt.Sprintf("%s %s (live heap %s)", c.Nodes[i].ID, rss, live))
	}
	return strings.Join(parts, ", ")
}

// liveHeap has the node at pprof address addr collect its garbage (the heap profile's gc=1) and
// returns its heap in use right after, from the profile's runtime.MemStats footer.
func liveHeap(addr string) (uint64, error) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET heap profile: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read heap profile: %w", err)
	}
	return 0, fmt.Errorf("no HeapAlloc in the heap profile")
}
