// Command fakelnd runs a simulated Lightning network (package jepsen/fakelnd): one lnd gRPC
// listener per simulated node and an HTTP control endpoint for the jepsen harness. Once it
// serves it writes the control address and the nodes to the file -ready names; it stops on
// SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/bankd/bankd/jepsen/fakelnd"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakelnd:", err)
		os.Exit(1)
	}
}

func run() error {
	ip := flag.String("ip", "127.0.0.1", "address the nodes and the control endpoint listen on")
	dir := flag.String("dir", "", "directory for each node's tls.cert and admin.macaroon")
	nodes := flag.Int("nodes", 3, "simulated pool nodes")
	seed := flag.Uint64("seed", 1, "seed of the error knob")
	ready := flag.String("ready", "", "file to write the control address and nodes to once serving")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	network, err := fakelnd.New(fakelnd.Config{Nodes: *nodes, IP: *ip, Dir: *dir, Seed: *seed, Logger: log})
	if err != nil {
		return err
	}
	defer network.Close()
	lis, err := net.Listen("tcp", net.JoinHostPort(*ip, "0"))
	if err != nil {
		return fmt.Errorf("control listener: %w", err)
	}
	srv := &http.Server{Handler: network.Handler()}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	if *ready != "" {
		b, err := json.Marshal(fakelnd.Ready{Control: lis.Addr().String(), Nodes: network.Nodes()})
		if err != nil {
			return err
		}
		tmp := *ready + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *ready); err != nil {
			return err
		}
	}
	log.Info("serving", "control", lis.Addr().String(), "nodes", len(network.Nodes()))
	<-ctx.Done()
	return nil
}
