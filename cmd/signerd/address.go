package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/bankd/bankd/wallet/descriptor"
)

// addressCommand is `signerd address -network NET -descriptor D [-index N] [-change]`: an
// address of the hot wallet, e.g. to fund it. It needs no key.
func addressCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("signerd address", flag.ContinueOnError)
	fs.SetOutput(stderr)
	network := fs.String("network", "", "chain network: "+networkNames+" (required)")
	desc := fs.String("descriptor", "", "the hot wallet's descriptor, as keygen printed it (required)")
	index := fs.Uint("index", 0, "address index on the branch")
	change := fs.Bool("change", false, "the change branch instead of the receive branch")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	net, ok := networks[*network]
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "signerd address: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return exitUsage
	case !ok:
		fmt.Fprintf(stderr, "signerd address: -network %q: want one of %s\n", *network, networkNames)
		return exitUsage
	case *index >= descriptor.HardenedKeyStart:
		fmt.Fprintf(stderr, "signerd address: -index %d: must be below 2^31\n", *index)
		return exitUsage
	}
	d, err := descriptor.Parse(*desc, net)
	if err != nil {
		fmt.Fprintf(stderr, "signerd address: %v\n", err)
		return exitUsage
	}
	branches := d.Multipath()
	branch := 0
	if *change {
		branch = 1
	}
	if branch >= len(branches) {
		fmt.Fprintln(stderr, "signerd address: the descriptor has no change branch")
		return exitUsage
	}
	addr, err := branches[branch].Address(uint32(*index), nil)
	if err != nil {
		fmt.Fprintf(stderr, "signerd address: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(stdout, addr.EncodeAddress())
	return exitOK
}
