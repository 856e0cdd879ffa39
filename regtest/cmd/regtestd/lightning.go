package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bankd/bankd/regtest"
)

// startLightning starts the Lightning network of -lnd in a fresh dir and writes the pool's
// HCL blocks to hclPath (unless empty).
func startLightning(ctx context.Context, btcd *regtest.Btcd, poolSize int, lndPath, dir, hclPath string) (*regtest.Lightning, error) {
	// The nodes' wallets and channels belong to the previous run's chain, which btcd has
	// deleted: start from scratch, as btcd does.
	if clean := filepath.Clean(dir); clean == "." || clean == "/" {
		return nil, fmt.Errorf("-lnd-dir %q: refusing to delete it at start", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clearing %s: %w", dir, err)
	}
	startCtx, cancel := context.WithTimeout(ctx, regtest.DefaultLightningTimeout)
	defer cancel()
	lg, err := regtest.StartLightning(startCtx, btcd, regtest.LightningOptions{
		PoolSize: poolSize,
		Dir:      dir,
		LndPath:  lndPath,
	})
	if err != nil {
		return nil, err
	}
	if err := writeHCL(hclPath, lg); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = lg.Stop(stopCtx)
		return nil, err
	}
	return lg, nil
}

// writeHCL replaces the file at path (unless empty) with the pool's lnd blocks.
func writeHCL(path string, lg *regtest.Lightning) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(lg.PoolHCL()), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// lightningVars are the -env assignments that describe the Lightning network.
func lightningVars(lg *regtest.Lightning, hclPath string) ([][2]string, error) {
	ext := lg.External
	vars := [][2]string{
		{"LND_DIR", lg.Dir()},
		{"LND_EXTERNAL_RPC", ext.RPCAddr},
		{"LND_EXTERNAL_CERT", ext.TLSCertPath},
		{"LND_EXTERNAL_MACAROON", ext.MacaroonPath},
	}
	if hclPath != "" {
		abs, err := filepath.Abs(hclPath)
		if err != nil {
			return nil, err
		}
		vars = append(vars, [2]string{"LND_HCL", abs})
	}
	return vars, nil
}

// handleLightning adds the control endpoint's Lightning operations to mux; lg is nil when
// regtestd runs without -lnd.
func handleLightning(mux *http.ServeMux, lg *regtest.Lightning, hclPath string) {
	handle := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if lg == nil {
				http.Error(w, "regtestd runs without -lnd: there is no Lightning network", http.StatusNotFound)
				return
			}
			h(w, r)
		})
	}
	handle("POST /lnpay", func(w http.ResponseWriter, r *http.Request) {
		bolt11 := r.FormValue("bolt11")
		if bolt11 == "" {
			http.Error(w, "no bolt11 invoice", http.StatusBadRequest)
			return
		}
		preimage, feeMsat, err := lg.External.PayInvoice(r.Context(), bolt11)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "preimage %s\nfee_msat %d\n", preimage, feeMsat)
	})
	handle("POST /lninvoice", func(w http.ResponseWriter, r *http.Request) {
		sats, err := strconv.ParseInt(r.FormValue("sats"), 10, 64)
		if err != nil || sats <= 0 || sats > 21e14 {
			http.Error(w, fmt.Sprintf("sats %q is not an amount", r.FormValue("sats")), http.StatusBadRequest)
			return
		}
		bolt11, hash, err := lg.External.AddInvoice(r.Context(), sats, r.FormValue("memo"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s\n%s\n", bolt11, hash)
	})
	handle("POST /lnaddpool", func(w http.ResponseWriter, r *http.Request) {
		n, err := lg.AddPoolNode(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := writeHCL(hclPath, lg); err != nil {
			slog.Warn("regtestd: rewriting the pool's HCL", "err", err)
		}
		fmt.Fprint(w, n.HCL())
	})
}

// lnpay is `regtestd lnpay [-env FILE] BOLT11`.
func lnpay(args []string) error {
	fs := flag.NewFlagSet("regtestd lnpay", flag.ContinueOnError)
	envFile := fs.String("env", "data/btcd/env", "the -env file of the running regtestd")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: regtestd lnpay [-env FILE] BOLT11\n\nThe external lnd of the running regtestd (-lnd) pays the invoice; prints the preimage and the routing fee.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("lnpay needs one BOLT11 invoice")
	}
	return control(*envFile, "lnpay", url.Values{"bolt11": {fs.Arg(0)}})
}

// lninvoice is `regtestd lninvoice [-env FILE] [-memo M] SATS`.
func lninvoice(args []string) error {
	fs := flag.NewFlagSet("regtestd lninvoice", flag.ContinueOnError)
	envFile := fs.String("env", "data/btcd/env", "the -env file of the running regtestd")
	memo := fs.String("memo", "", "the invoice's description")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: regtestd lninvoice [-env FILE] [-memo M] SATS\n\nThe external lnd of the running regtestd (-lnd) creates an invoice for SATS; prints it (BOLT11) and its payment hash, one per line.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("lninvoice needs SATS")
	}
	return control(*envFile, "lninvoice", url.Values{"sats": {fs.Arg(0)}, "memo": {*memo}})
}

// lnaddpool is `regtestd lnaddpool [-env FILE]`.
func lnaddpool(args []string) error {
	fs := flag.NewFlagSet("regtestd lnaddpool", flag.ContinueOnError)
	envFile := fs.String("env", "data/btcd/env", "the -env file of the running regtestd")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: regtestd lnaddpool [-env FILE]\n\nStarts one more pool lnd with a channel from the external lnd, rewrites the -lnd-hcl file and prints the new node's lnd block.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errors.New("lnaddpool takes no arguments")
	}
	return control(*envFile, "lnaddpool", nil)
}
