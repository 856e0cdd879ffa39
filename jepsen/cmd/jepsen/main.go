// Command jepsen runs bankd under real faults and prints one verdict line:
//
//	go run ./jepsen/cmd/jepsen -workload bank -nemesis kill -nodes 3 -time 60s -seed 7
//
// It needs root (network namespaces, iptables) and a built bankd (`make build`). Exit status:
// 0 valid, 1 invalid (or unknown), 2 harness error.
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
	"github.com/bankd/bankd/jepsen/nemesis"
)

func main() {
	os.Exit(run())
}

func run() int {
	var kinds []string
	for _, k := range nemesis.Kinds {
		kinds = append(kinds, string(k))
	}
	var (
		workload = flag.String("workload", "bank", "workload: "+strings.Join(jepsen.Workloads, "|"))
		nem      = flag.String("nemesis", "kill", "nemesis: "+strings.Join(kinds, "|")+
			", or a comma list of them picked per fault window (kill,partition-leader); clock-skew is refused: namespaces share the host clock")
		nodes    = flag.Int("nodes", 3, "cluster size: 3 or 5")
		duration = flag.Duration("time", 60*time.Second, "how long the workload runs, faults included")
		seed     = flag.Uint64("seed", uint64(time.Now().UnixNano()%1_000_000), "seed of the workload and fault schedule")
		report   = flag.String("report", "", "report dir (default $TMPDIR/bankd-jepsen/<time>-<workload>-<nemesis>-s<seed>)")
		bin      = flag.String("bin", "bin/bankd", "bankd binary")
		clients  = flag.Int("clients", 5, "concurrent clients")
		faultW   = flag.Duration("fault-window", 5*time.Second, "how long each fault lasts")
		recoverW = flag.Duration("recovery-window", 5*time.Second, "quiet time before each fault")
		every    = flag.Duration("progress", 5*time.Second, "interval of progress lines")
		fp       = flag.String("failpoint", "", "break bankd on purpose: "+strings.Join(failpoint.Names, "|")+
			" (builds bin/bankd-failpoints with -tags failpoints unless -bin is given; the run should be INVALID)")
	)
	flag.Parse()
	if *fp != "" && !flagSet("bin") {
		*bin = filepath.Join("bin", "bankd-failpoints")
		fmt.Printf("jepsen: building %s with -tags failpoints\n", *bin)
		if err := jepsen.BuildFailpoints(context.Background(), *bin); err != nil {
			fmt.Fprintln(os.Stderr, "jepsen:", err)
			return 2
		}
	}
	kind, err := nemesis.ParseKind(*nem)
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
	fmt.Printf("jepsen %s/%s nodes=%d time=%s seed=%d report=%s\n", *workload, kind, *nodes, *duration, *seed, *report)
	rep, err := jepsen.Run(ctx, jepsen.Config{
		Workload: *workload, Nemesis: kind, Nodes: *nodes, Duration: *duration, Seed: *seed,
		ReportDir: *report, Bin: *bin, Clients: *clients, FaultWindow: *faultW, RecoveryWindow: *recoverW,
		Progress: os.Stdout, ProgressEvery: *every, Failpoint: *fp,
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
