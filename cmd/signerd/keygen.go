package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/bankd/bankd/signer"
)

// keygenCommand is `signerd keygen -network NET -out FILE`: a new master key in FILE (mode 0600,
// never over an existing file) and its hot wallet descriptor on stdout.
func keygenCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("signerd keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	network := fs.String("network", "", "chain network: "+networkNames+" (required)")
	out := fs.String("out", "", "file to write the master key to; must not exist (required)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: signerd keygen -network NETWORK -out FILE\n\n"+
			"Writes a new master extended private key to FILE (mode 0600) and prints the hot wallet's\n"+
			"descriptor, BIP 84 account 0: give it to bankd (the wallet) and to signerd.hcl.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	net, ok := networks[*network]
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "signerd keygen: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return exitUsage
	case !ok:
		fmt.Fprintf(stderr, "signerd keygen: -network %q: want one of %s\n", *network, networkNames)
		return exitUsage
	case *out == "":
		fmt.Fprintln(stderr, "signerd keygen: -out is required")
		return exitUsage
	}
	master, err := signer.GenerateMaster(net)
	if err != nil {
		fmt.Fprintf(stderr, "signerd keygen: %v\n", err)
		return exitFail
	}
	defer master.Zero()
	desc, err := signer.AccountDescriptor(master, net)
	if err != nil {
		fmt.Fprintf(stderr, "signerd keygen: %v\n", err)
		return exitFail
	}
	if err := signer.WriteKeyFile(*out, master); err != nil {
		fmt.Fprintf(stderr, "signerd keygen: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(stdout, desc)
	return exitOK
}
