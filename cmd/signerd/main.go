// Command signerd is the hot wallet's signer: it holds the wallet's master private key, which
// never enters a bankd node, polls one node's API for the payout batches bankd planned for its
// wallet, checks each against its own view of the wallet and its own limits (package signer),
// signs the ones it accepts and submits the signed PSBTs through the API.
//
//	signerd [-config signerd.hcl] [-log-level info] [-log-format text|json]
//	signerd keygen -network regtest -out master.key
//	signerd version
//
// SIGINT or SIGTERM stops it between two batches. Exit status: 0 after a clean stop, 1 when it
// fails, 2 for bad flags or configuration (including a key that is not the descriptor's).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/cliutil"
	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/wallet/descriptor"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

const usage = `signerd signs the payout batches bankd plans for its hot wallet.

Usage:
  signerd [-config signerd.hcl] [-log-level LEVEL] [-log-format text|json]
  signerd keygen -network NETWORK -out FILE
  signerd address -network NETWORK -descriptor D [-index N] [-change]
  signerd version
  signerd help
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "keygen":
			return keygenCommand(args[1:], stdout, stderr)
		case "address":
			return addressCommand(args[1:], stdout, stderr)
		case "version", "-version", "--version":
			fmt.Fprintf(stdout, "signerd %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return exitOK
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return exitOK
		}
	}
	return serveCommand(args, stderr)
}

func serveCommand(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("signerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "signerd.hcl", "configuration file")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "signerd: unexpected arguments: %s\n\n%s", strings.Join(fs.Args(), " "), usage)
		return exitUsage
	}
	logger, err := cliutil.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "signerd: %v\n", err)
		return exitUsage
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "signerd: config: %v\n", err)
		return exitUsage
	}
	d, err := setup(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "signerd: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := d.run(ctx); err != nil {
		logger.Error("signerd stopped with an error", "err", err)
		return exitFail
	}
	return exitOK
}

// setup loads the key, the ledger and the token a configuration names and returns the daemon.
func setup(cfg *Config, logger *slog.Logger) (*daemon, error) {
	wallet, err := signer.LoadWallet(cfg.KeyFile, cfg.Descriptor, cfg.Network)
	if err != nil {
		return nil, err
	}
	ledger, err := signer.OpenLedger(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	sc := signer.Config{Wallet: wallet, Ledger: ledger, Limits: cfg.Limits}
	if cfg.SweepToWalletID != "" {
		d, err := descriptor.Parse(cfg.SweepToDescriptor, cfg.Network)
		if err != nil {
			return nil, fmt.Errorf("sweep_to_descriptor: %w", err)
		}
		branches := d.Multipath()
		if len(branches) != 2 {
			return nil, fmt.Errorf("sweep_to_descriptor: want the hot wallet's receive and change branches (/<0;1>/*)")
		}
		sc.SweepTo = &signer.SweepDestination{WalletID: cfg.SweepToWalletID, Change: branches[1]}
	}
	if cfg.ColdWalletID != "" {
		d, err := descriptor.Parse(cfg.ColdDescriptor, cfg.Network)
		if err != nil {
			return nil, fmt.Errorf("cold_descriptor: %w", err)
		}
		if !strings.HasPrefix(d.String(), "wsh(sortedmulti(") && !strings.HasPrefix(d.String(), "wsh(multi(") {
			return nil, fmt.Errorf("cold_descriptor: want the cold vault's wsh(sortedmulti(M, ...)) descriptor")
		}
		receive := d
		if d.IsMultipath() {
			receive = d.Multipath()[0]
		}
		sc.Vault = &signer.VaultDestination{WalletID: cfg.ColdWalletID, Receive: receive}
	}
	s, err := signer.New(sc)
	if err != nil {
		return nil, err
	}
	token, err := cliutil.ReadTokenFile(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	hc := apiclient.NewHTTPClient(nil)
	if cfg.CAFile != "" {
		if hc, _, err = apiclient.ForCluster(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
	}
	clients := apiclient.New(hc, cfg.APIURL, token)
	return newDaemon(clients.Payout, clients.Lightning, s, cfg.WalletID, cfg.PollInterval, logger), nil
}
