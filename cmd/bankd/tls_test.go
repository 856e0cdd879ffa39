package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bankd/bankd/clustertls"
	"github.com/bankd/bankd/node"
)

// bankd tls init makes everything a TLS cluster needs where cluster.hcl says, once; bankd tls
// client issues a client certificate the nodes accept as a client and nothing else.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", "cluster.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "cluster.hcl")
	if err := os.WriteFile(config, src, 0o600); err != nil {
		t.Fatal(err)
	}
	tls := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"tls"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := tls("init", "-config", config)
	if code != exitOK || strings.Count(out, "wrote ") != 9 {
		t.Fatalf("tls init: exit %d, out %q, err %q; want 9 files (CA cert and key, 3 nodes × 2, keyring)", code, out, errOut)
	}
	cfg, err := node.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cfg.Nodes {
		if _, err := clustertls.Load(clustertls.NodeIdentity(cfg.Name, n.ID), cfg.TLS.CAFile, n.TLSCert, n.TLSKey); err != nil {
			t.Errorf("node %s cannot load what tls init wrote: %v", n.ID, err)
		}
	}
	if code, out, _ := tls("init", "-config", config); code != exitOK || strings.Contains(out, "wrote") {
		t.Fatalf("a second tls init: exit %d, %q; want nothing written", code, out)
	}

	if code, _, errOut := tls("client", "-config", config, "-name", "cold vault", "-out", dir); code != exitUsage || !strings.Contains(errOut, "-name") {
		t.Fatalf("tls client with a bad name: exit %d, %q", code, errOut)
	}
	if code, out, errOut := tls("client", "-config", config, "-name", "coldvault", "-out", dir); code != exitOK || !strings.Contains(out, "coldvault.crt") {
		t.Fatalf("tls client: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := tls("client", "-config", config, "-name", "coldvault", "-out", dir); code != exitFail || !strings.Contains(errOut, "exists") {
		t.Fatalf("a second tls client over the same files: exit %d, %q", code, errOut)
	}
	if code, _, _ := tls("renew"); code != exitUsage {
		t.Fatalf("unknown tls command: exit %d", code)
	}

	plain := filepath.Join(dir, "plain.hcl")
	if err := os.WriteFile(plain, []byte("name = \"p\"\ninsecure_plaintext = true\nnode \"n1\" {\n  region = \"r\"\n  raft_addr = \"127.0.0.1:1\"\n  gossip_addr = \"127.0.0.1:2\"\n  api_addr = \"127.0.0.1:3\"\n  data_dir = \"d\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := tls("init", "-config", plain); code != exitFail || !strings.Contains(errOut, "insecure_plaintext") {
		t.Fatalf("tls init on a plaintext cluster: exit %d, %q", code, errOut)
	}
}
