package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/regtest"
)

// The control endpoint lets other processes use the running node's faucet and miner (btcd has
// no wallet, and the faucet's key lives in this process) and, with -lnd, the external lnd:
// `regtestd pay ADDRESS SATS`, `regtestd mine [N]`, `regtestd lnpay BOLT11`, `regtestd
// lninvoice SATS` and `regtestd lnaddpool` are its clients. It listens on loopback only.

// maxControlBlocks bounds one mine request.
const maxControlBlocks = 1000

// serveControl serves the control endpoint on ln until ctx ends.
func serveControl(ctx context.Context, ln net.Listener, btcd *regtest.Btcd, lg *regtest.Lightning, hclPath string) {
	mux := http.NewServeMux()
	handleLightning(mux, lg, hclPath)
	mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) {
		addr, err := btcutil.DecodeAddress(r.FormValue("address"), &chaincfg.RegressionNetParams)
		if err != nil || !addr.IsForNet(&chaincfg.RegressionNetParams) {
			http.Error(w, fmt.Sprintf("address %q is not a regtest address", r.FormValue("address")), http.StatusBadRequest)
			return
		}
		sats, err := strconv.ParseInt(r.FormValue("sats"), 10, 64)
		if err != nil || sats <= 0 || sats > 21e14 {
			http.Error(w, fmt.Sprintf("sats %q is not an amount", r.FormValue("sats")), http.StatusBadRequest)
			return
		}
		script, err := txscript.PayToAddrScript(addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tx, err := btcd.Send(r.Context(), []*wire.TxOut{{Value: sats, PkScript: script}}, 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, tx.TxHash())
	})
	mux.HandleFunc("POST /mine", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.FormValue("blocks"))
		if err != nil || n < 1 || n > maxControlBlocks {
			http.Error(w, fmt.Sprintf("blocks %q must be 1-%d", r.FormValue("blocks"), maxControlBlocks), http.StatusBadRequest)
			return
		}
		hashes, err := btcd.Generate(r.Context(), n)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		tip, err := btcd.Tip(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for i, h := range hashes {
			fmt.Fprintf(w, "%d %s\n", tip.Height-int64(len(hashes)-1-i), h)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Warn("regtestd: control endpoint stopped", "err", err)
	}
}

// pay is `regtestd pay [-env FILE] ADDRESS SATS`.
func pay(args []string) error {
	fs := flag.NewFlagSet("regtestd pay", flag.ContinueOnError)
	envFile := fs.String("env", "data/btcd/env", "the -env file of the running regtestd")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: regtestd pay [-env FILE] ADDRESS SATS\n\nPays SATS satoshis to a regtest ADDRESS from the running node's faucet and prints the txid.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("pay needs ADDRESS and SATS")
	}
	return control(*envFile, "pay", url.Values{"address": {fs.Arg(0)}, "sats": {fs.Arg(1)}})
}

// mine is `regtestd mine [-env FILE] [N]`.
func mine(args []string) error {
	fs := flag.NewFlagSet("regtestd mine", flag.ContinueOnError)
	envFile := fs.String("env", "data/btcd/env", "the -env file of the running regtestd")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: regtestd mine [-env FILE] [N]\n\nMines N blocks (default 1) on the running node and prints their heights and hashes.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	blocks := "1"
	switch fs.NArg() {
	case 0:
	case 1:
		blocks = fs.Arg(0)
	default:
		fs.Usage()
		return errors.New("mine takes at most one argument")
	}
	return control(*envFile, "mine", url.Values{"blocks": {blocks}})
}

// control sends one request to the control endpoint named in envFile and prints the reply.
func control(envFile, op string, form url.Values) error {
	addr, err := envValue(envFile, "BTCD_CONTROL")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/"+op, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w (is regtestd running?)", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", op, strings.TrimSpace(string(body)))
	}
	_, err = os.Stdout.Write(body)
	return err
}

// envValue reads one NAME=value line of an -env file.
func envValue(path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w (start regtestd with -env %s first)", err, path)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+"="); ok {
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return "", fmt.Errorf("%s has no %s", path, name)
}
