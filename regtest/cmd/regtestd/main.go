// Command regtestd runs a btcd regtest node through package regtest until it is interrupted,
// for `make run` and for poking at by hand. It prints how to reach the node and, with -env,
// writes the same as shell variable assignments for scripts to source:
//
//	BTCD_RPCHOST, BTCD_RPCUSER, BTCD_RPCPASS, BTCD_RPCCERT, BTCD_P2P, BTCD_LOG, BTCD_FAUCET,
//	BTCD_CONTROL
//
// BTCD_CONTROL is a loopback HTTP endpoint through which two side commands use the running
// node's faucet and miner:
//
//	regtestd pay  [-env FILE] ADDRESS SATS   pay an address from the faucet; prints the txid
//	regtestd mine [-env FILE] [N]            mine N blocks (default 1); prints heights and hashes
//
// btcd deletes its regtest chain at every start, so each run begins a new chain.
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
	flag.Parse()

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

	var lc net.ListenConfig
	controlLn, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	go serveControl(ctx, controlLn, btcd)

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
