// Command regtestd runs a btcd regtest node through package regtest until it is interrupted,
// for `make run` and for poking at by hand. It prints how to reach the node and, with -env,
// writes the same as shell variable assignments for scripts to source:
//
//	BTCD_RPCHOST, BTCD_RPCUSER, BTCD_RPCPASS, BTCD_RPCCERT, BTCD_P2P, BTCD_LOG, BTCD_FAUCET,
//	BTCD_CONTROL
//
// With -lnd it also starts a Lightning network on the node (regtest.StartLightning): -pool lnd
// nodes for bankd's pool and one external lnd with a channel to each, and adds
//
//	LND_DIR, LND_EXTERNAL_RPC, LND_EXTERNAL_CERT, LND_EXTERNAL_MACAROON, LND_HCL
//
// LND_HCL (-lnd-hcl) is a file of `lnd "pool-N" { address, tls_cert, macaroon }` blocks, one
// per pool node, for bankd's cluster configuration. The env file is written last, once
// everything is ready.
//
// BTCD_CONTROL is a loopback HTTP endpoint through which side commands use the running node's
// faucet, miner and external lnd:
//
//	regtestd pay  [-env FILE] ADDRESS SATS        pay an address from the faucet; prints the txid
//	regtestd mine [-env FILE] [N]                 mine N blocks (default 1); prints heights and hashes
//	regtestd lnpay [-env FILE] BOLT11             the external lnd pays an invoice; prints the
//	                                              preimage and the routing fee
//	regtestd lninvoice [-env FILE] [-memo M] SATS the external lnd creates an invoice; prints it
//	                                              and its payment hash
//	regtestd lnaddpool [-env FILE]                start one more pool lnd with a channel (and
//	                                              rewrite the -lnd-hcl file); prints its block
//
// btcd deletes its regtest chain at every start, so each run begins a new chain; the lnd
// directory (-lnd-dir) is deleted at every start for the same reason.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bankd/bankd/regtest"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "pay":
		err = pay(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "mine":
		err = mine(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "lnpay":
		err = lnpay(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "lninvoice":
		err = lninvoice(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "lnaddpool":
		err = lnaddpool(os.Args[2:])
	default:
		err = run()
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "regtestd:", err)
		os.Exit(1)
	}
}

func run() error {
	btcdPath := flag.String("btcd", "", "btcd binary (default: $BANKD_BTCD, else bin/btcd of the module)")
	dataDir := flag.String("datadir", "data/btcd", "btcd data directory (its chain is reset at every start)")
	blocks := flag.Int("blocks", regtest.DefaultInitialBlocks, "blocks to mine at start (0: none)")
	envFile := flag.String("env", "", "write the connection settings to this file as shell assignments")
	mineEvery := flag.Duration("mine-every", 0, "mine a block at this interval (0: only on request)")
	withLnd := flag.Bool("lnd", false, "also start a Lightning network: -pool lnd nodes and an external lnd")
	poolSize := flag.Int("pool", regtest.DefaultPoolSize, "pool lnd nodes to start with -lnd")
	lndPath := flag.String("lnd-path", "", "lnd binary (default: $BANKD_LND, else bin/lnd of the module)")
	lndDir := flag.String("lnd-dir", "data/lnd", "lnd data directories (deleted at every start)")
	lndHCL := flag.String("lnd-hcl", "", "with -lnd, write the pool nodes' lnd blocks for bankd's config to this file")
	flag.Parse()
	if *withLnd && *poolSize < 1 {
		return fmt.Errorf("-pool %d: need at least one pool node", *poolSize)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	btcd, err := regtest.Start(startCtx, regtest.Options{
		BtcdPath:          *btcdPath,
		DataDir:           *dataDir,
		InitialBlocks:     *blocks,
		SkipInitialBlocks: *blocks <= 0,
	})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := btcd.Stop(stopCtx); err != nil {
			slog.Error("regtestd: stopping btcd", "err", err)
		}
	}()

	var lg *regtest.Lightning
	if *withLnd {
		if lg, err = startLightning(ctx, btcd, *poolSize, *lndPath, *lndDir, *lndHCL); err != nil {
			return err
		}
		// Deferred after btcd's Stop, so it runs first: lnd does not stop without its btcd.
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := lg.Stop(stopCtx); err != nil {
				slog.Error("regtestd: stopping lnd", "err", err)
			}
		}()
	}

	var lc net.ListenConfig
	controlLn, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	go serveControl(ctx, controlLn, btcd, lg, *lndHCL)

	rpc := btcd.RPC()
	certPath, err := filepath.Abs(rpc.CertPath)
	if err != nil {
		return err
	}
	logPath, err := filepath.Abs(btcd.LogPath())
	if err != nil {
		return err
	}
	vars := [][2]string{
		{"BTCD_RPCHOST", rpc.Host},
		{"BTCD_RPCUSER", rpc.User},
		{"BTCD_RPCPASS", rpc.Pass},
		{"BTCD_RPCCERT", certPath},
		{"BTCD_P2P", btcd.P2PAddr()},
		{"BTCD_LOG", logPath},
		{"BTCD_FAUCET", btcd.Address().EncodeAddress()},
		{"BTCD_CONTROL", controlLn.Addr().String()},
	}
	if lg != nil {
		lndVars, err := lightningVars(lg, *lndHCL)
		if err != nil {
			return err
		}
		vars = append(vars, lndVars...)
	}
	var env strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&env, "%s=%s\n", v[0], v[1])
	}
	if *envFile != "" {
		if err := os.WriteFile(*envFile, []byte(env.String()), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", *envFile, err)
		}
	}
	fmt.Print(env.String())
	fmt.Printf("btcctl: bin/btcctl --regtest --rpcserver=%s --rpcuser=%s --rpcpass=%s --rpccert=%s getblockcount\n",
		rpc.Host, rpc.User, rpc.Pass, certPath)
	if lg != nil {
		ext := lg.External
		fmt.Printf("lncli (external lnd): bin/lncli --network=regtest --rpcserver=%s --tlscertpath=%s --macaroonpath=%s getinfo\n",
			ext.RPCAddr, ext.TLSCertPath, ext.MacaroonPath)
	}

	if *mineEvery <= 0 {
		select {
		case <-ctx.Done():
		case <-btcd.Exited():
			return errors.New("btcd exited; see " + logPath)
		}
		return nil
	}
	tick := time.NewTicker(*mineEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-btcd.Exited():
			return errors.New("btcd exited; see " + logPath)
		case <-tick.C:
			mineCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := btcd.Generate(mineCtx, 1)
			cancel()
			if err != nil && ctx.Err() == nil {
				slog.Warn("regtestd: mining a block", "err", err)
			}
		}
	}
}
