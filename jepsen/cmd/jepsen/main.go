// Command jepsen runs bankd under real faults and prints one verdict line:
//
//	go run ./jepsen/cmd/jepsen -workload bank -nemesis kill -nodes 3 -time 60s -seed 7
//
// It needs root (network namespaces, iptables) and a built bankd (`make build`). Exit status:
// 0 valid, 1 invalid (or unknown), 2 harness error. With -regions the nodes sit in regions with
// latency between them; -bench-regions prints latency and failover figures instead of a run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bankd/bankd/internal/failpoint"
	"github.com/bankd/bankd/jepsen"
	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/nemesis"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		kinds []string
		kind  nemesis.Kind
	)
	for _, k := range nemesis.Kinds {
		kinds = append(kinds, string(k))
	}
	var (
		workload = flag.String("workload", "bank", "workload: "+strings.Join(jepsen.Workloads, "|"))
		nem      = flag.String("nemesis", "kill", "nemesis: "+strings.Join(kinds, "|")+
			", or a comma list of them picked per fault window (kill,partition-leader); clock-skew is refused: namespaces share the host clock")
		nodes    = flag.Int("nodes", 3, "cluster size: 3 or 5")
		nonVoter = flag.Int("nonvoters", 0, "how many of the nodes, the last ones, are Raft non-voters (read replicas, voter = false); at least one stays a voter")
		duration = flag.Duration("time", 60*time.Second, "how long the workload runs, faults included")
		seed     = flag.Uint64("seed", uint64(time.Now().UnixNano()%1_000_000), "seed of the workload and fault schedule")
		report   = flag.String("report", "", "report dir (default $TMPDIR/bankd-jepsen/<time>-<workload>-<nemesis>-s<seed>)")
		bin      = flag.String("bin", "bin/bankd", "bankd binary")
		prevBin  = flag.String("prev-bin", "bin/bankd-prev", "the previous release's bankd, which -nemesis upgrade starts the cluster on (`make prev` builds it)")
		clients  = flag.Int("clients", 5, "concurrent clients")
		faultW   = flag.Duration("fault-window", 5*time.Second, "how long each fault lasts")
		recoverW = flag.Duration("recovery-window", 5*time.Second, "quiet time before each fault")
		every    = flag.Duration("progress", 5*time.Second, "interval of progress lines")
		fp       = flag.String("failpoint", "", "break bankd on purpose: "+strings.Join(failpoint.Names, "|")+
			" (builds bin/bankd-failpoints with -tags failpoints unless -bin is given; the run should be INVALID)")
		regionsN = flag.Int("regions", 0, "place the nodes round-robin in this many regions, with -rtt between them on every Raft and API connection (0: none)")
		rtt      = flag.String("rtt", "", "round-trip times between regions, comma-separated, for the pairs r0-r1, r0-r2, ..., r1-r2, ... (default for 2 or 3 regions: "+
			durations(hosts.DefaultRegionRTTs)+")")
		within  = flag.Duration("rtt-within", 0, "round-trip time added within a region, whole ms (the proxy hop alone costs a fraction of a ms)")
		jitter  = flag.Duration("jitter", hosts.DefaultRegionJitter, "jitter of each direction's delay between regions, whole ms")
		benchRg = flag.Bool("bench-regions", false, "instead of a run: measure write latency per leader placement and the time to a write after cutting the leader's region off (3 nodes, -regions or 3 regions); prints figures, fails nothing")
	)
	flag.Parse()
	regions, err := regionsFromFlags(*regionsN, *rtt, *within, *jitter, *benchRg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	if *benchRg {
		return benchRegions(*bin, *report, regions)
	}
	if *fp != "" && !flagSet("bin") {
		*bin = filepath.Join("bin", "bankd-failpoints")
		fmt.Printf("jepsen: building %s with -tags failpoints\n", *bin)
		if err := jepsen.BuildFailpoints(context.Background(), *bin); err != nil {
			fmt.Fprintln(os.Stderr, "jepsen:", err)
			return 2
		}
	}
	kind, err = nemesis.ParseKind(*nem)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	if *report == "" {
		*report = filepath.Join(os.TempDir(), "bankd-jepsen",
			fmt.Sprintf("%s-%s-%s-s%d", time.Now().Format("20060102-150405"), *workload, kind, *seed))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("jepsen %s/%s nodes=%d nonvoters=%d time=%s seed=%d report=%s\n", *workload, kind, *nodes, *nonVoter, *duration, *seed, *report)
	if regions.Count() > 0 {
		fmt.Printf("jepsen regions: %s\n", regions)
	}
	rep, err := jepsen.Run(ctx, jepsen.Config{
		Workload: *workload, Nemesis: kind, Nodes: *nodes, NonVoters: *nonVoter, Duration: *duration, Seed: *seed,
		ReportDir: *report, Bin: *bin, PrevBin: *prevBin, Clients: *clients, FaultWindow: *faultW, RecoveryWindow: *recoverW,
		Progress: os.Stdout, ProgressEvery: *every, Failpoint: *fp, Regions: regions,
	})
	if err != nil {
		fmt.Printf("ERROR %v  (report %s)\n", err, *report)
		return 2
	}
	fmt.Println(rep.Line())
	if rep.Verdict != checker.Valid {
		return 1
	}
	return 0
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// regionsFromFlags builds the regions of -regions, -rtt, -rtt-within and -jitter; the bench
// takes 3 regions when -regions is not given.
func regionsFromFlags(count int, rtt string, within, jitter time.Duration, bench bool) (hosts.Regions, error) {
	if count == 0 && bench {
		count = 3
	}
	if count == 0 {
		if rtt != "" {
			return hosts.Regions{}, fmt.Errorf("-rtt without -regions")
		}
		return hosts.Regions{}, nil
	}
	pairs := count * (count - 1) / 2
	var between []time.Duration
	switch {
	case rtt != "":
		for _, f := range strings.Split(rtt, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil {
				return hosts.Regions{}, fmt.Errorf("-rtt: %w", err)
			}
			between = append(between, d)
		}
	case pairs <= len(hosts.DefaultRegionRTTs):
		between = hosts.DefaultRegionRTTs[:pairs]
	default:
		return hosts.Regions{}, fmt.Errorf("-regions %d needs -rtt with %d round-trip times (r0-r1, r0-r2, ..., r1-r2, ...)", count, pairs)
	}
	return hosts.NewRegions(count, between, within, jitter)
}

// benchRegions runs jepsen.BenchRegions and prints its figures. Without root it says why and
// succeeds: `make bench` never fails on figures or on a machine that cannot make hosts.
func benchRegions(bin, report string, regions hosts.Regions) int {
	if err := hosts.Supported(); err != nil {
		fmt.Printf("jepsen -bench-regions: skipped: %v\n", err)
		return 0
	}
	if report == "" {
		report = filepath.Join(os.TempDir(), "bankd-jepsen", time.Now().Format("20060102-150405")+"-bench-regions")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("jepsen -bench-regions: logs in %s\n", report)
	if _, err := jepsen.BenchRegions(ctx, jepsen.RegionsBenchConfig{Bin: bin, Dir: report, Regions: regions, Out: os.Stdout}); err != nil {
		fmt.Printf("ERROR %v  (logs %s)\n", err, report)
		return 2
	}
	return 0
}

func durations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.String())
	}
	return strings.Join(s, ",")
}
