package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bankd/bankd/internal/cliutil"
	"github.com/bankd/bankd/node"
)

// recoverCommand is `bankd recover`: the offline rewrite of a stopped node's Raft
// configuration to the survivors of a cluster that lost its quorum for good (node.Recover).
func recoverCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bankd recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "cluster.hcl", "cluster configuration file shared by every node")
	nodeID := fs.String("node", "", "id of this node (required); the node must be stopped")
	survivors := fs.String("survivors", "", "comma-separated node ids of every surviving node, this one included (required); the same list on each")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bankd recover -config cluster.hcl -node ID -survivors ID,ID\n\n"+
			"Run on every surviving node, stopped, with the same -survivors; then start them.\n"+
			"Entries the lost quorum never committed may be applied as committed (see docs/ARCHITECTURE.md).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *nodeID == "" || *survivors == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "bankd recover: -node and -survivors are required, and nothing else")
		return exitUsage
	}
	var ids []string
	for _, id := range strings.Split(*survivors, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	logger, err := cliutil.NewLogger(stderr, "info", "text")
	if err != nil {
		fmt.Fprintf(stderr, "bankd recover: %v\n", err)
		return exitUsage
	}
	cfg, err := node.LoadConfig(*config)
	if err != nil {
		fmt.Fprintf(stderr, "bankd recover: config: %v\n", err)
		return exitUsage
	}
	n, err := node.New(cfg, *nodeID, node.Options{Logger: logger.With("node", *nodeID)})
	if err != nil {
		fmt.Fprintf(stderr, "bankd recover: %v\n", err)
		return exitFail
	}
	conf, err := n.Recover(ids)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if serr := n.Shutdown(ctx); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		fmt.Fprintf(stderr, "bankd recover: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s now has the configuration:", *nodeID)
	for _, s := range conf.Servers {
		fmt.Fprintf(stdout, " %s@%s", s.ID, s.Address)
	}
	fmt.Fprintln(stdout, "\nstart it (and every other survivor, recovered with the same list)")
	return exitOK
}
