// Command bankd runs one node of a bankd cluster: the Raft-replicated ledger, locks and event
// log (node/, fsm/) behind the Connect/gRPC API (rpc/), the leader's Lightning pool driver
// (lnpool/) and, when cluster.hcl's chain block names a Bitcoin node (rpc_host), the leader's
// chain watcher (chainwatch/). The wiring lives in agent/; this main keeps flags, logging,
// signals and exit statuses.
//
//	bankd agent -config cluster.hcl -node n1 [-log-level info] [-log-format text|json]
//	bankd tls init -config cluster.hcl   (the CA, node certificates, gossip keyring)
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
	"github.com/bankd/bankd/internal/cliutil"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // only served when -pprof-addr is set
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/bankd/bankd/agent"
	"github.com/bankd/bankd/node"
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
  bankd recover -config cluster.hcl -node ID -survivors ID,ID   (the node stopped)
  bankd tls init -config cluster.hcl
  bankd tls client -config cluster.hcl -name NAME -out DIR
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
		return agentCommand(args[1:], stderr)
	case "tls":
		return tlsCommand(args[1:], stdout, stderr)
	case "recover":
		return recoverCommand(args[1:], stdout, stderr)
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

func agentCommand(args []string, stderr io.Writer) int {
	flags, err := parseAgentFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "bankd agent: %v\n", err)
		return exitUsage
	}
	logger, err := cliutil.NewLogger(stderr, flags.logLevel, flags.logFormat)
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

// runAgent runs the node and its API until ctx ends (a signal) or the API fails, then stops
// both: first the API, so calls in flight still find a running node, then the node, which
// hands leadership over before it stops.
func runAgent(ctx context.Context, cfg *node.Config, self node.NodeConfig, flags agentFlags, logger *slog.Logger) error {
	log := logger.With("node", self.ID)
	log.Info("bankd starting", "version", version, "config", cfg.Path, "cluster", cfg.Name)
	if flags.pprofAddr != "" {
		go servePprof(flags.pprofAddr, log)
	}

	a, err := agent.New(cfg, self.ID, agent.Options{Logger: logger, Version: version, ShutdownTimeout: flags.shutdownTimeout})
	if err != nil {
		return err
	}
	startCtx, cancelStart := context.WithTimeout(ctx, time.Minute)
	err = a.Start(startCtx)
	cancelStart()
	if err != nil {
		return errors.Join(err, a.Shutdown(context.Background()))
	}

	// SIGHUP reloads what can change without a restart (tokens, certificates, gossip keys).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := a.Reload(); err != nil {
				log.Error("reload refused; the configuration in force stays", "err", err)
			} else {
				log.Info("configuration reloaded", "config", cfg.Path)
			}
			continue
		case <-ctx.Done():
			log.Info("signal received; stopping gracefully", "timeout", flags.shutdownTimeout)
			// A second signal kills the process at once.
			signal.Reset(syscall.SIGINT, syscall.SIGTERM)
		case <-a.Failed():
		}
		return a.Shutdown(context.Background())
	}
}

// servePprof serves the profiling endpoints that net/http/pprof registers on the default mux.
func servePprof(addr string, log *slog.Logger) {
	log.Info("pprof listening", "addr", addr)
	srv := &http.Server{Addr: addr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Warn("pprof server stopped", "err", err)
	}
}
