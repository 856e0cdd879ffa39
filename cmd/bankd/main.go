// Command bankd runs one node of a bankd cluster: the Raft-replicated ledger, locks and event
// log (node/, fsm/) behind the Connect/gRPC API (rpc/), and, when cluster.hcl's chain block
// names a Bitcoin node (rpc_host), the leader's chain watcher (chainwatch/).
//
//	bankd agent -config cluster.hcl -node n1 [-log-level info] [-log-format text|json]
//	bankd version
//
// SIGINT or SIGTERM stops the node gracefully: the API stops taking calls and lets the ones in
// flight finish, then the node hands leadership to a follower and shuts down. Exit status: 0
// after a clean stop, 1 when the node fails, 2 for bad flags or configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // only served when -pprof-addr is set
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/bankd/bankd/chainwatch"
	"github.com/bankd/bankd/lnpool"
	"github.com/bankd/bankd/node"
	"github.com/bankd/bankd/rpc"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `bankd runs one node of a bankd cluster.

Usage:
  bankd agent -config cluster.hcl -node ID [-log-level LEVEL] [-log-format text|json]
  bankd version
  bankd help

Run "bankd agent -h" for the agent's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "agent":
		return agent(args[1:], stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "bankd %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "bankd: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

// agentFlags are the flags of `bankd agent`.
type agentFlags struct {
	config          string
	nodeID          string
	logLevel        string
	logFormat       string
	shutdownTimeout time.Duration
	pprofAddr       string
}

func parseAgentFlags(args []string, stderr io.Writer) (agentFlags, error) {
	var f agentFlags
	fs := flag.NewFlagSet("bankd agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "cluster.hcl", "cluster configuration file shared by every node")
	fs.StringVar(&f.nodeID, "node", "", "id of this node: the label of its node block in the config (required)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "bound on a graceful stop")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof on this address (debugging; keep it on loopback)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bankd agent -config cluster.hcl -node ID [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case f.nodeID == "":
		return f, errors.New("-node is required")
	case f.shutdownTimeout <= 0:
		return f, errors.New("-shutdown-timeout must be > 0")
	}
	return f, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", format)
	}
}

func agent(args []string, stderr io.Writer) int {
	flags, err := parseAgentFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "bankd agent: %v\n", err)
		return exitUsage
	}
	logger, err := newLogger(stderr, flags.logLevel, flags.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "bankd agent: %v\n", err)
		return exitUsage
	}
	cfg, err := node.LoadConfig(flags.config)
	if err != nil {
		fmt.Fprintf(stderr, "bankd agent: config: %v\n", err)
		return exitUsage
	}
	self, ok := cfg.Node(flags.nodeID)
	if !ok {
		ids := make([]string, 0, len(cfg.Nodes))
		for _, n := range cfg.Nodes {
			ids = append(ids, n.ID)
		}
		fmt.Fprintf(stderr, "bankd agent: node %q is not in %s (nodes: %s)\n", flags.nodeID, flags.config, strings.Join(ids, ", "))
		return exitUsage
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	if err := runAgent(ctx, cfg, self, flags, logger); err != nil {
		logger.Error("bankd stopped with an error", "node", self.ID, "err", err)
		return exitFail
	}
	return exitOK
}

// runAgent runs the node and its API until ctx ends (a signal) or either fails, then stops
// both: first the API, so calls in flight still find a running node, then the node, which
// hands leadership over before it stops.
func runAgent(ctx context.Context, cfg *node.Config, self node.NodeConfig, flags agentFlags, logger *slog.Logger) error {
	log := logger.With("node", self.ID)
	log.Info("bankd starting", "version", version, "config", cfg.Path, "cluster", cfg.Name)
	if flags.pprofAddr != "" {
		go servePprof(flags.pprofAddr, log)
	}

	opts := node.Options{Logger: logger, Version: version}
	var index *chainwatch.Index
	if cfg.Chain.Watching() {
		// Kept on every node, so that whichever node leads finds it complete.
		index = chainwatch.NewIndex()
		opts.ScriptIndex = index
	}
	n, err := node.New(cfg, self.ID, opts)
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	pool, err := newLightningPool(n, cfg, logger.With("node", self.ID))
	if err != nil {
		return errors.Join(err, shutdownNode(n, flags.shutdownTimeout, log))
	}
	api, err := rpc.New(n, cfg, rpc.Options{Logger: logger, ShutdownTimeout: flags.shutdownTimeout / 2, Lightning: pool})
	if err != nil {
		return errors.Join(fmt.Errorf("create api: %w", err), shutdownNode(n, flags.shutdownTimeout, log))
	}
	if err := pool.RegisterMetrics(api.Registry()); err != nil {
		return errors.Join(err, shutdownNode(n, flags.shutdownTimeout, log))
	}
	if err := n.AddDriver(pool); err != nil {
		return errors.Join(err, shutdownNode(n, flags.shutdownTimeout, log))
	}
	if index != nil {
		if err := addChainWatcher(n, index, api, logger.With("node", self.ID)); err != nil {
			return errors.Join(err, shutdownNode(n, flags.shutdownTimeout, log))
		}
		log.Info("chain watcher configured", "rpc_host", cfg.Chain.RPCHost, "network", cfg.Chain.Network,
			"final_depth", cfg.Chain.FinalDepth, "start_height", cfg.Chain.StartHeight, "mempool", cfg.Chain.Mempool)
	}
	// Bind the API port before the node joins, so a taken port fails the start, not later.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", self.APIAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen for the api on %s: %w", self.APIAddr, err), shutdownNode(n, flags.shutdownTimeout, log))
	}
	startCtx, cancelStart := context.WithTimeout(ctx, time.Minute)
	err = n.Start(startCtx)
	cancelStart()
	if err != nil {
		_ = ln.Close()
		return errors.Join(fmt.Errorf("start node: %w", err), shutdownNode(n, flags.shutdownTimeout, log))
	}

	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAPI()
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Serve(apiCtx, ln) }()

	var apiErr error
	select {
	case <-ctx.Done():
		log.Info("signal received; stopping gracefully", "timeout", flags.shutdownTimeout)
		// A second signal kills the process at once.
		signal.Reset(syscall.SIGINT, syscall.SIGTERM)
		stopAPI()
		apiErr = <-apiDone
	case apiErr = <-apiDone:
		log.Error("api server failed; stopping the node", "err", apiErr)
	}
	return errors.Join(apiErr, shutdownNode(n, flags.shutdownTimeout, log))
}

// addChainWatcher makes the leader follow the chain node of cluster.hcl's chain block.
func addChainWatcher(n *node.Node, index *chainwatch.Index, api *rpc.Server, logger *slog.Logger) error {
	w, err := chainwatch.New(chainwatch.ConfigFromNode(n.Config().Chain), n, n.FSM(), index,
		chainwatch.Options{Logger: logger, NodeID: n.ID()})
	if err != nil {
		return fmt.Errorf("create chain watcher: %w", err)
	}
	if err := w.RegisterMetrics(api.Registry()); err != nil {
		return err
	}
	return n.AddDriver(w)
}

// newLightningPool makes the driver of the lnd pool: cluster.hcl's lnd blocks, and any node
// added at runtime. It runs on the leader only.
func newLightningPool(n *node.Node, cfg *node.Config, logger *slog.Logger) (*lnpool.Pool, error) {
	lc := lnpool.Config{Network: cfg.Chain.Network}
	for _, l := range cfg.Lightning {
		lc.Nodes = append(lc.Nodes, lnpool.NodeConfig{ID: l.ID, Address: l.Address, TLSCertPath: l.TLSCertPath, MacaroonPath: l.MacaroonPath})
	}
	pool, err := lnpool.New(lc, n, n.FSM(), lnpool.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("create lightning pool: %w", err)
	}
	return pool, nil
}

func shutdownNode(n *node.Node, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down node: %w", err)
	}
	log.Info("bankd stopped")
	return nil
}

// servePprof serves the profiling endpoints that net/http/pprof registers on the default mux.
func servePprof(addr string, log *slog.Logger) {
	log.Info("pprof listening", "addr", addr)
	srv := &http.Server{Addr: addr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Warn("pprof server stopped", "err", err)
	}
}
