package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bankd/bankd/clustertls"
	"github.com/bankd/bankd/node"
)

const tlsUsage = `bankd tls makes a cluster's certificates and gossip keyring.

Usage:
  bankd tls init -config cluster.hcl
      Create the cluster CA (tls block: ca_file, ca_key_file) unless it exists, a certificate
      for every node whose certificate file is missing (the hosts of its addresses as SANs),
      and the gossip keyring unless it exists. Existing files are never overwritten. Copy each
      node its own certificate and key, the CA certificate and the keyring; keep ca.key off
      the nodes.
  bankd tls client -config cluster.hcl -name NAME -out DIR [-days N]
      Issue an API client certificate (client usage only: it cannot serve or speak Raft) to
      DIR/NAME.crt and DIR/NAME.key, signed by the cluster CA.
`

func tlsCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, tlsUsage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "init":
		err = tlsInit(args[1:], stdout)
	case "client":
		err = tlsClient(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, tlsUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "bankd tls: unknown command %q\n\n%s", args[0], tlsUsage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, tlsUsage)
		return exitOK
	case errors.Is(err, errTLSUsage):
		fmt.Fprintf(stderr, "bankd tls: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "bankd tls: %v\n", err)
		return exitFail
	}
}

var errTLSUsage = errors.New("usage")

func loadTLSConfig(fs *flag.FlagSet, args []string, configPath *string) (*node.Config, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errTLSUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errTLSUsage, fs.Arg(0))
	}
	cfg, err := node.LoadConfig(*configPath)
	if err != nil {
		return nil, err
	}
	if cfg.InsecurePlaintext {
		return nil, fmt.Errorf("%s sets insecure_plaintext: its nodes use no certificates", cfg.Path)
	}
	return cfg, nil
}

func tlsInit(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bankd tls init", flag.ContinueOnError)
	config := fs.String("config", "cluster.hcl", "cluster configuration file")
	cfg, err := loadTLSConfig(fs, args, config)
	if err != nil {
		return err
	}
	var nodes []clustertls.NodeFiles
	for _, n := range cfg.Nodes {
		nodes = append(nodes, clustertls.NodeFiles{
			ID:       n.ID,
			Hosts:    clustertls.HostsOf(n.RaftAddr, n.GossipAddr, n.APIAddr),
			CertFile: n.TLSCert,
			KeyFile:  n.TLSKey,
		})
	}
	wrote, err := clustertls.Init(cfg.Name, cfg.TLS.CAFile, cfg.TLS.CAKeyFile, nodes)
	for _, f := range wrote {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	if err != nil {
		return err
	}
	keyring, err := clustertls.InitKeyring(cfg.Gossip.KeyringFile)
	if err != nil {
		return err
	}
	if keyring {
		fmt.Fprintf(stdout, "wrote %s\n", cfg.Gossip.KeyringFile)
	}
	if len(wrote) == 0 && !keyring {
		fmt.Fprintln(stdout, "every certificate was already there; nothing to do")
	}
	return nil
}

func tlsClient(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bankd tls client", flag.ContinueOnError)
	config := fs.String("config", "cluster.hcl", "cluster configuration file")
	name := fs.String("name", "", "client name (1-64 characters from [A-Za-z0-9._-])")
	out := fs.String("out", ".", "directory for NAME.crt and NAME.key")
	days := fs.Int("days", 365, "validity in days")
	cfg, err := loadTLSConfig(fs, args, config)
	if err != nil {
		return err
	}
	if !node.ValidID(*name) {
		return fmt.Errorf("%w: -name %q must be 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit", errTLSUsage, *name)
	}
	if *days < 1 || *days > 3650 {
		return fmt.Errorf("%w: -days must be between 1 and 3650", errTLSUsage)
	}
	ca, err := clustertls.LoadCA(cfg.TLS.CAFile, cfg.TLS.CAKeyFile)
	if err != nil {
		return err
	}
	leaf, err := ca.IssueClient(cfg.Name, *name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(*out, *name+".crt"), filepath.Join(*out, *name+".key")
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s exists; move it away to issue a new certificate", f)
		}
	}
	if err := leaf.Write(certFile, keyFile); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\nwrote %s\n", certFile, keyFile)
	return nil
}
