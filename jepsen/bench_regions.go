package jepsen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/workload/ledger"
)

// RegionsBenchConfig shapes BenchRegions.
type RegionsBenchConfig struct {
	Bin string
	// Dir receives harness.log and the nodes' logs; it is created if needed.
	Dir string
	// Nodes [3] are placed round-robin in Regions [hosts.DefaultRegions(3)].
	Nodes   int
	Regions hosts.Regions
	// Writes is the number of timed writes through the leader for each leader placement [200];
	// FollowerWrites the number through each follower [100].
	Writes, FollowerWrites int
	// Out receives the figures as they come (nil: none).
	Out io.Writer
}

// WriteLatency is the latency of writes sent one at a time to one node, the leader or a
// follower that forwards them to the leader.
type WriteLatency struct {
	Leader, Via string
	// QuorumRTT is the round-trip time from the leader to the nearest quorum of the others:
	// the least a commit can take.
	QuorumRTT time.Duration
	// ForwardRTT is the round-trip time from Via to the leader (0 through the leader).
	ForwardRTT time.Duration
	Writes     int
	P50, P99   time.Duration
}

// RegionFailover is the time from cutting the leader's region off to the first write
// acknowledged through a node of another region.
type RegionFailover struct {
	Leader    string
	Region    int
	Took      time.Duration
	Via       string
	NewLeader string
}

// RegionsBench holds BenchRegions' figures.
type RegionsBench struct {
	Latencies   []WriteLatency
	Throughputs []WriteThroughput
	Failovers   []RegionFailover
}

// WriteThroughput is what throughputWriters concurrent clients, each writing one 1-sat
// transfer at a time through the leader, achieved in throughputWindow.
type WriteThroughput struct {
	Leader    string
	QuorumRTT time.Duration
	Writes    int
	PerSecond float64
	P50, P99  time.Duration
}

// The throughput phase of BenchRegions.
const (
	throughputWriters = 32
	throughputWindow  = 5 * time.Second
)

// Bounds of BenchRegions.
const (
	benchOpTimeout = 5 * time.Second
	// failoverAttempt bounds one write attempt while the leader's region is cut off: short, so
	// that a write stuck on a node that still forwards to the old leader is given up quickly.
	failoverAttempt = 400 * time.Millisecond
	// failoverLimit is how long BenchRegions waits for a write after cutting a region off.
	failoverLimit = 30 * time.Second
	// FailoverTarget is what a region partition with a surviving quorum should take at most.
	FailoverTarget = 5 * time.Second
)

// Accounts of the bench's writes.
const (
	benchReserve  = "bench-reserve"
	benchCustomer = "bench-c0"
)

// BenchRegions measures a cluster whose nodes sit in regions: for each node as leader, the
// latency of 1-sat transfers sent one at a time through the leader and through each follower
// (from a client next to that node: the harness reaches every node without delay), against the
// round-trip time to the leader's nearest quorum; then, for each node as leader, the time from
// cutting its region off to the first write acknowledged through a node of another region. It
// prints figures to cfg.Out and never judges them.
func BenchRegions(ctx context.Context, cfg RegionsBenchConfig) (*RegionsBench, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Regions.Count() == 0 {
		r, err := hosts.DefaultRegions(3)
		if err != nil {
			return nil, err
		}
		cfg.Regions = r
	}
	if cfg.Writes == 0 {
		cfg.Writes = 200
	}
	if cfg.FollowerWrites == 0 {
		cfg.FollowerWrites = 100
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "harness.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))
	if err := hosts.CleanupStale(ctx, log); err != nil {
		log.Warn("stale cleanup", "err", err)
	}
	cluster, cleanup, err := startHosts(ctx, hosts.Options{Nodes: cfg.Nodes, Bin: cfg.Bin, Dir: dir, Logger: log, Regions: cfg.Regions}, log)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	err = ledger.CreateAccounts(sctx, cluster, benchOpTimeout, []*bankdv1.Account{
		{Id: benchReserve, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		{Id: benchCustomer, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
	})
	cancel()
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(out, "regions bench: %d nodes, %s (nodes round-robin: %s)\n", cfg.Nodes, cfg.Regions, placement(cluster))
	fmt.Fprintf(out, "write latency: 1-sat transfers one at a time, from a client next to the node it calls\n")
	res := &RegionsBench{}
	b := &regionsBench{cluster: cluster, log: log}
	for leader := range cluster.Hosts {
		if err := b.makeLeader(ctx, leader); err != nil {
			return res, err
		}
		vias := []int{leader}
		for i := range cluster.Hosts {
			if i != leader {
				vias = append(vias, i)
			}
		}
		for _, via := range vias {
			n := cfg.Writes
			if via != leader {
				n = cfg.FollowerWrites
			}
			lat, err := b.writeLatency(ctx, leader, via, n)
			if err != nil {
				return res, err
			}
			res.Latencies = append(res.Latencies, lat)
			fmt.Fprintf(out, "  leader %s (r%d)  nearest quorum rtt %-5s  via %-2s %-16s p50 %7s  p99 %7s  (%d writes)\n",
				lat.Leader, cluster.RegionOf(leader), lat.QuorumRTT, lat.Via, viaNote(cluster, leader, via),
				lat.P50.Round(100*time.Microsecond), lat.P99.Round(100*time.Microsecond), lat.Writes)
		}
	}

	fmt.Fprintf(out, "write throughput: %d clients writing 1-sat transfers one at a time each, through the leader, for %s\n", throughputWriters, throughputWindow)
	for leader := range cluster.Hosts {
		if err := b.makeLeader(ctx, leader); err != nil {
			return res, err
		}
		tp, err := b.throughput(ctx, leader)
		if err != nil {
			return res, err
		}
		res.Throughputs = append(res.Throughputs, tp)
		fmt.Fprintf(out, "  leader %s (r%d)  nearest quorum rtt %-5s  %7.0f writes/s  p50 %7s  p99 %7s  (%d writes)\n",
			tp.Leader, cluster.RegionOf(leader), tp.QuorumRTT, tp.PerSecond, tp.P50.Round(100*time.Microsecond), tp.P99.Round(100*time.Microsecond), tp.Writes)
	}

	fmt.Fprintf(out, "region partition: the leader's region cut off; time to the first write acknowledged through another region\n")
	for leader := range cluster.Hosts {
		f, err := b.failover(ctx, leader)
		if err != nil {
			return res, err
		}
		res.Failovers = append(res.Failovers, f)
		verdict := fmt.Sprintf("within %s", FailoverTarget)
		if f.Took > FailoverTarget {
			verdict = fmt.Sprintf("OVER %s", FailoverTarget)
		}
		fmt.Fprintf(out, "  leader %s (r%d) cut off: first write after %s through %s (new leader %s); %s\n",
			f.Leader, f.Region, f.Took.Round(time.Millisecond), f.Via, f.NewLeader, verdict)
	}
	return res, nil
}

// regionsBench is one BenchRegions run on its cluster.
type regionsBench struct {
	cluster *hosts.Cluster
	log     *slog.Logger
	// seq numbers the transfer ids.
	mu  sync.Mutex
	seq int
}

func (b *regionsBench) nextID(prefix string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return fmt.Sprintf("%s-%d", prefix, b.seq)
}

// write sends one 1-sat transfer through host via.
func (b *regionsBench) write(ctx context.Context, via int, id string) error {
	_, err := b.cluster.Client(via).Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: &bankdv1.Transfer{Id: id, DebitAccountId: benchReserve, CreditAccountId: benchCustomer, Amount: 1, Currency: ledger.Currency},
	}))
	return err
}

// makeLeader moves leadership to host i, retrying, and waits until it commits a write.
func (b *regionsBench) makeLeader(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	want := b.cluster.NodeID(i)
	for {
		if b.cluster.Leader(ctx) == i {
			wctx, wcancel := context.WithTimeout(ctx, benchOpTimeout)
			err := b.write(wctx, i, b.nextID("bench-warm"))
			wcancel()
			if err == nil {
				return nil
			}
			b.log.Info("bench: warm-up write failed", "leader", want, "err", err)
		} else if _, err := b.cluster.TransferLeadership(ctx, want); err != nil {
			b.log.Info("bench: transfer leadership", "to", want, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("make %s leader: %w", want, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeLatency times n writes through host via while host leader leads, after a few
// untimed ones that open the connections.
func (b *regionsBench) writeLatency(ctx context.Context, leader, via, n int) (WriteLatency, error) {
	const warmup = 5
	took := make([]time.Duration, 0, n)
	for k := range warmup + n {
		wctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
		start := time.Now()
		err := b.write(wctx, via, b.nextID("bench-lat"))
		d := time.Since(start)
		cancel()
		if err != nil {
			return WriteLatency{}, fmt.Errorf("write %d through %s (leader %s): %w", k, b.cluster.NodeID(via), b.cluster.NodeID(leader), err)
		}
		if k >= warmup {
			took = append(took, d)
		}
	}
	if l := b.cluster.Leader(ctx); l != leader {
		return WriteLatency{}, fmt.Errorf("leadership moved from %s during the timed writes", b.cluster.NodeID(leader))
	}
	slices.Sort(took)
	lat := WriteLatency{Leader: b.cluster.NodeID(leader), Via: b.cluster.NodeID(via), QuorumRTT: quorumRTT(b.cluster, leader),
		Writes: n, P50: percentile(took, 50), P99: percentile(took, 99)}
	if via != leader {
		lat.ForwardRTT = b.cluster.RTT(via, leader)
	}
	return lat, nil
}

// throughput runs throughputWriters concurrent writers through leader for throughputWindow.
func (b *regionsBench) throughput(ctx context.Context, leader int) (WriteThroughput, error) {
	var (
		mu    sync.Mutex
		took  []time.Duration
		first error
		wg    sync.WaitGroup
	)
	wctx, cancel := context.WithTimeout(ctx, throughputWindow)
	defer cancel()
	start := time.Now()
	for range throughputWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				octx, ocancel := context.WithTimeout(ctx, benchOpTimeout)
				t0 := time.Now()
				err := b.write(octx, leader, b.nextID("bench-tp"))
				d := time.Since(t0)
				ocancel()
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					took = append(took, d)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return WriteThroughput{}, fmt.Errorf("throughput writes through %s: %w", b.cluster.NodeID(leader), first)
	}
	if l := b.cluster.Leader(ctx); l != leader {
		return WriteThroughput{}, fmt.Errorf("leadership moved from %s during the throughput writes", b.cluster.NodeID(leader))
	}
	slices.Sort(took)
	return WriteThroughput{Leader: b.cluster.NodeID(leader), QuorumRTT: quorumRTT(b.cluster, leader), Writes: len(took),
		PerSecond: float64(len(took)) / elapsed.Seconds(), P50: percentile(took, 50), P99: percentile(took, 99)}, nil
}

// failover makes host leader the leader, cuts its region off and times the first write
// acknowledged through any host outside that region, each of which is tried in a loop of its
// own; then it heals and waits for every host to catch up.
func (b *regionsBench) failover(ctx context.Context, leader int) (RegionFailover, error) {
	if err := b.makeLeader(ctx, leader); err != nil {
		return RegionFailover{}, err
	}
	region := b.cluster.RegionOf(leader)
	cut := b.cluster.Regions()[region]
	f := RegionFailover{Leader: b.cluster.NodeID(leader), Region: region}

	fctx, cancel := context.WithTimeout(ctx, failoverLimit)
	defer cancel()
	type ack struct {
		via  int
		took time.Duration
	}
	acks := make(chan ack, len(b.cluster.Hosts))
	start := time.Now()
	if err := b.cluster.Partition(fctx, [][]int{cut}); err != nil {
		return f, err
	}
	var wg sync.WaitGroup
	for i := range b.cluster.Hosts {
		if slices.Contains(cut, i) {
			continue
		}
		wg.Go(func() {
			for fctx.Err() == nil {
				actx, acancel := context.WithTimeout(fctx, failoverAttempt)
				err := b.write(actx, i, b.nextID("bench-fo"))
				acancel()
				if err == nil {
					acks <- ack{via: i, took: time.Since(start)}
					return
				}
				select {
				case <-fctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
	var err error
	select {
	case a := <-acks:
		f.Took, f.Via = a.took, b.cluster.NodeID(a.via)
	case <-fctx.Done():
		err = fmt.Errorf("no write acknowledged within %s of cutting off region r%d", failoverLimit, region)
	}
	cancel()
	wg.Wait()
	if l := b.cluster.Leader(ctx); l >= 0 {
		f.NewLeader = b.cluster.NodeID(l)
	}
	hctx, hcancel := context.WithTimeout(ctx, time.Minute)
	defer hcancel()
	if herr := b.cluster.Heal(hctx); herr != nil {
		return f, errors.Join(err, herr)
	}
	if _, herr := b.cluster.StateHashes(hctx); herr != nil {
		return f, errors.Join(err, fmt.Errorf("after healing r%d: %w", region, herr))
	}
	return f, err
}

// quorumRTT is the round-trip time from host leader to the nearest quorum: with n hosts a
// commit needs n/2 acknowledgements besides the leader's own, so the n/2-th nearest peer.
func quorumRTT(c *hosts.Cluster, leader int) time.Duration {
	var rtts []time.Duration
	for i := range c.Hosts {
		if i != leader {
			rtts = append(rtts, c.RTT(leader, i))
		}
	}
	slices.Sort(rtts)
	return rtts[len(c.Hosts)/2-1]
}

// percentile returns the p-th percentile (nearest rank) of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func placement(c *hosts.Cluster) string {
	s := ""
	for i, h := range c.Hosts {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=r%d", h.ID, c.RegionOf(i))
	}
	return s
}

func viaNote(c *hosts.Cluster, leader, via int) string {
	if via == leader {
		return "(the leader)"
	}
	return fmt.Sprintf("(r%d, +%s)", c.RegionOf(via), c.RTT(via, leader))
}
