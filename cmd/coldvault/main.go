// Command coldvault keeps bankd's hot wallet inside its band by proposing moves between it and
// the multisig cold vault (package coldvault). It holds no key and no state of its own.
//
// Usage:
//
//	coldvault run -config coldvault.hcl          poll and propose until SIGINT/SIGTERM
//	coldvault check -config coldvault.hcl        look once, propose if needed, print what it did
//	coldvault psbt -config F -out FILE ID        write a move's PSBT (base64) for the cosigners
//	coldvault submit -config F ID FILE           hand the cluster a cosigner's signed PSBT
//	coldvault export -config F -format FMT       the cold wallet for cosigners: descriptor,
//	                                             coldcard (registration file) or bsms
//	coldvault sign -key FILE -in PSBT -out PSBT  sign as one cosigner (software; tests and
//	                                             small setups: a real vault signs on hardware)
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

	"github.com/prometheus/client_golang/prometheus"

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
  coldvault run -config FILE                   poll and propose until interrupted
  coldvault check -config FILE                 look once; propose if the hot wallet is outside its band
  coldvault psbt -config FILE -out FILE ID     write a move's PSBT (base64) for the cosigners
  coldvault submit -config FILE ID FILE        hand the cluster a cosigner's signed PSBT (base64)
  coldvault export -config FILE -format F      print the cold wallet for its cosigners: descriptor,
                                               coldcard (a Coldcard multisig registration file)
                                               or bsms (a BIP 129 descriptor record)
  coldvault sign -key FILE -in FILE -out FILE  sign a PSBT as one cosigner whose master key
                                               (xprv/tprv) is in the key file: for tests and
                                               small setups; a real vault signs on hardware

Flags:
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run", "check", "psbt", "submit", "export":
	case "sign":
		return sign(args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("coldvault "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "coldvault.hcl", "configuration file")
	out := fs.String("out", "", "psbt: the file to write")
	format := fs.String("format", "descriptor", "export: descriptor, coldcard or bsms")
	name := fs.String("name", "bankd-cold", "export: the wallet's name in a Coldcard file")
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
	clients := apiclient.New(hc, cfg.APIURL, token)
	d := coldvault.NewDaemon(cfg, coldvault.ClientAPI(clients), logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "psbt":
		return exportPSBT(ctx, clients, fs.Args(), *out, stdout, stderr)
	case "submit":
		return submit(ctx, clients, fs.Args(), stdout, stderr)
	case "export":
		return export(ctx, clients, cfg.ColdWalletID, *format, *name, stdout, stderr)
	}
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
	if cfg.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		m, err := coldvault.NewMetrics(reg)
		if err != nil {
			fmt.Fprintf(stderr, "coldvault: %v\n", err)
			return exitFail
		}
		d.SetMetrics(m)
		// A metrics port that cannot be opened stops coldvault: an operator who asked for
		// the band's alerts must not run without them.
		ln, err := coldvault.ListenMetrics(ctx, cfg.MetricsAddr)
		if err != nil {
			fmt.Fprintf(stderr, "coldvault: %v\n", err)
			return exitFail
		}
		logger.Info("metrics serving", "addr", ln.Addr().String())
		go func() {
			if err := coldvault.ServeMetrics(ctx, ln, reg); err != nil {
				logger.Error("metrics stopped", "err", err)
			}
		}()
	}
	if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("coldvault stopped with an error", "err", err)
		return exitFail
	}
	return exitOK
}
