// Command coldvault keeps bankd's hot wallet inside its band by proposing moves between it and
// the multisig cold vault (package coldvault). It holds no key and no state of its own.
//
// Usage:
//
//	coldvault run -config coldvault.hcl     poll and propose until SIGINT/SIGTERM
//	coldvault check -config coldvault.hcl   look once, propose if needed, print what it did
//
// Exit codes: 0 fine, 1 failed, 2 bad flags or configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/bankd/bankd/coldvault"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/cliutil"
)

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

const usage = `coldvault keeps bankd's hot wallet inside its band by proposing moves to and from the cold vault.

Usage:
  coldvault run -config FILE     poll and propose until interrupted
  coldvault check -config FILE   look once; propose if the hot wallet is outside its band

Flags:
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "run" && args[0] != "check") {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("coldvault "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "coldvault.hcl", "configuration file")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	logger, err := cliutil.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "coldvault: %v\n", err)
		return exitUsage
	}
	cfg, err := coldvault.LoadConfig(*config)
	if err != nil {
		fmt.Fprintf(stderr, "coldvault: config: %v\n", err)
		return exitUsage
	}
	token, err := cliutil.ReadTokenFile(cfg.TokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "coldvault: %v\n", err)
		return exitUsage
	}
	hc := apiclient.NewHTTPClient(nil)
	if cfg.CAFile != "" {
		if hc, _, err = apiclient.ForCluster(cfg.CAFile); err != nil {
			fmt.Fprintf(stderr, "coldvault: ca_file: %v\n", err)
			return exitUsage
		}
	}
	d := coldvault.NewDaemon(cfg, coldvault.ClientAPI(apiclient.New(hc, cfg.APIURL, token)), logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if args[0] == "check" {
		p, err := d.Poll(ctx)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "coldvault: %v\n", err)
			return exitFail
		case p == nil:
			fmt.Fprintln(stdout, "no move proposed: the hot wallet is inside its band, or a move is under way")
		default:
			fmt.Fprintf(stdout, "proposed %s: %s of %d sat (%s)\n", p.GetId(), p.GetDirection(), p.GetAmountSat(), p.GetReason())
		}
		return exitOK
	}
	if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("coldvault stopped with an error", "err", err)
		return exitFail
	}
	return exitOK
}
