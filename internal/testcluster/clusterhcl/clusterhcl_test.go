package clusterhcl_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bankd/bankd/clustertls"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
	"github.com/bankd/bankd/node"
)

// The written file is what node.LoadConfig reads back, field by field.
func TestWriteLoopbackIsReadBackByTheNode(t *testing.T) {
	dir := t.TempDir()
	spec := clusterhcl.Spec{
		Name: "roundtrip",
		Size: 3,
		Raft: clusterhcl.Raft{SnapshotInterval: time.Second, SnapshotThreshold: 50, TrailingLogs: 20, MaxAppendEntries: 64,
			CoalesceInFlight: 2, CoalesceLinger: 500 * time.Microsecond}.Or(clusterhcl.InProcessRaft),
		Tokens: clusterhcl.Tokens{
			Admin:  []string{"adm-1", "adm-2"},
			Client: []string{"cli-1"},
		},
		Chain: &clusterhcl.Chain{Network: "regtest", RPCHost: "127.0.0.1:18443", RPCUser: "u", RPCPass: "p",
			FinalDepth: 3, KeepHashes: 100, StartHeight: 7, PollInterval: 100 * time.Millisecond},
		Extra: `lnd "lnd1" {
  address  = "127.0.0.1:10009"
  tls_cert = "/lnd/tls.cert"
  macaroon = "/lnd/admin.macaroon"
}`,
	}
	layout, err := clusterhcl.WriteLoopback(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(layout.Path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("cluster.hcl: %v, mode %v; want 0600 (it holds tokens)", err, info.Mode().Perm())
	}
	cfg, err := node.LoadConfig(layout.Path)
	if err != nil {
		t.Fatalf("node refuses the written file: %v\n%s", err, clusterhcl.Render(spec, layout.Nodes))
	}

	raft := node.RaftConfig{
		HeartbeatTimeout: 250 * time.Millisecond, ElectionTimeout: 250 * time.Millisecond,
		LeaderLeaseTimeout: 125 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		ApplyTimeout: 3 * time.Second, SnapshotInterval: time.Second, SnapshotThreshold: 50,
		TrailingLogs: 20, MaxAppendEntries: 64, MaxEntryBytes: 4 << 20,
		CoalesceInFlight: 2, CoalesceLinger: 500 * time.Microsecond,
	}
	if cfg.Name != "roundtrip" || cfg.Raft != raft {
		t.Errorf("name %q raft %+v, want roundtrip %+v", cfg.Name, cfg.Raft, raft)
	}
	if got := tokenNames(cfg); !slices.Equal(got, []string{
		"dev-read-1=" + digest(clusterhcl.ReadToken), "dev-signer-1=" + digest(clusterhcl.SignerToken), "dev-write-1=" + digest("cli-1"),
		"dev-operator-1=" + digest(clusterhcl.OperatorToken), "dev-admin-1=" + digest("adm-1"), "dev-admin-2=" + digest("adm-2"),
	}) {
		t.Errorf("tokens %+v", cfg.Tokens)
	}
	c := cfg.Chain
	if c.Network != "regtest" || c.RPCHost != "127.0.0.1:18443" || c.RPCUser != "u" || c.RPCPass != "p" ||
		c.FinalDepth != 3 || c.KeepHashes != 100 || c.StartHeight != 7 || c.PollInterval != 100*time.Millisecond {
		t.Errorf("chain %+v", c)
	}
	if len(cfg.Lightning) != 1 || cfg.Lightning[0].ID != "lnd1" {
		t.Errorf("lnd blocks %+v", cfg.Lightning)
	}
	if len(cfg.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(cfg.Nodes))
	}
	seen := map[string]bool{}
	for i, n := range cfg.Nodes {
		want := layout.Nodes[i]
		if n.ID != want.ID || n.RaftAddr != want.RaftAddr || n.GossipAddr != want.GossipAddr ||
			n.APIAddr != want.APIAddr || n.DataDir != want.DataDir || n.Region != want.Region {
			t.Errorf("node %d: %+v, want %+v", i, n, want)
		}
		for _, addr := range []string{n.RaftAddr, n.GossipAddr, n.APIAddr} {
			host, _, err := net.SplitHostPort(addr)
			if err != nil || host != "127.0.0.1" || seen[addr] {
				t.Errorf("address %s: loopback and unique expected", addr)
			}
			seen[addr] = true
		}
		if filepath.Dir(n.DataDir) != filepath.Join(dir, "data") {
			t.Errorf("data dir %s outside %s", n.DataDir, dir)
		}
		// The node's certificate is where the node looks for it and names it.
		if _, err := clustertls.Load(clustertls.NodeIdentity("roundtrip", n.ID), cfg.TLS.CAFile, n.TLSCert, n.TLSKey); err != nil {
			t.Errorf("node %s: %v", n.ID, err)
		}
	}
	if info, err := os.Stat(cfg.Gossip.KeyringFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("gossip keyring: %v; want a private file", err)
	}
}

// Plaintext writes the development flag and no secrets.
func TestPlaintext(t *testing.T) {
	dir := t.TempDir()
	layout, err := clusterhcl.WriteLoopback(dir, clusterhcl.Spec{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(layout.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.InsecurePlaintext {
		t.Error("a Plaintext spec wrote a TLS cluster")
	}
	if _, err := os.Stat(filepath.Join(dir, "tls")); err == nil {
		t.Error("a Plaintext spec wrote certificates")
	}
}

// A default Spec writes the test tokens and no chain block.
func TestDefaults(t *testing.T) {
	layout, err := clusterhcl.WriteLoopback(t.TempDir(), clusterhcl.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(layout.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Nodes) != 3 || cfg.Name != "test" || cfg.Chain.Watching() ||
		!slices.Equal(tokenNames(cfg), []string{"dev-read-1=" + digest(clusterhcl.ReadToken), "dev-signer-1=" + digest(clusterhcl.SignerToken),
			"dev-write-1=" + digest(clusterhcl.ClientToken),
			"dev-operator-1=" + digest(clusterhcl.OperatorToken), "dev-admin-1=" + digest(clusterhcl.AdminToken)}) ||
		cfg.InsecurePlaintext {
		t.Fatalf("default spec gave %+v", cfg)
	}
	if cfg.Raft != node.DefaultRaftConfig() {
		t.Fatalf("an empty raft spec changed the node's defaults: %+v", cfg.Raft)
	}
}

// Values are written as literals: quotes, backslashes and HCL's template sequences in a value
// come back unchanged instead of breaking the file or being interpolated.
func TestValuesAreQuotedForHCL(t *testing.T) {
	hostile := []string{`say "hi"`, `back\slash`, "${file(\"/etc/passwd\")}", "%{ if true }x%{ endif }", "$$", "%", "a\x01b\tc"}
	for _, v := range hostile {
		t.Run(v, func(t *testing.T) {
			nodes := []clusterhcl.Node{{ID: "n1", Region: v, RaftAddr: "127.0.0.1:1", GossipAddr: "127.0.0.1:2", APIAddr: "127.0.0.1:3", DataDir: "/tmp/d"}}
			src := clusterhcl.Render(clusterhcl.Spec{}, nodes)
			cfg, err := node.ParseConfig(src, "cluster.hcl")
			if err != nil {
				t.Fatalf("%v\n%s", err, src)
			}
			if cfg.Nodes[0].Region != v {
				t.Fatalf("region read back as %q, want %q", cfg.Nodes[0].Region, v)
			}
		})
	}
}

func TestOrFillsOnlyZeroFields(t *testing.T) {
	got := clusterhcl.Raft{ApplyTimeout: 2 * time.Second, TrailingLogs: 4}.Or(clusterhcl.InProcessRaft)
	want := clusterhcl.InProcessRaft
	want.ApplyTimeout, want.TrailingLogs = 2*time.Second, 4
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	nodes, err := clusterhcl.LoopbackNodes(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	spec := clusterhcl.Spec{Raft: clusterhcl.ProcessRaft, Chain: &clusterhcl.Chain{Network: "regtest"}}
	if a, b := clusterhcl.Render(spec, nodes), clusterhcl.Render(spec, nodes); !bytes.Equal(a, b) {
		t.Fatalf("two renders differ:\n%s\n%s", a, b)
	}
}

func TestWriteRefusesNoNodes(t *testing.T) {
	if err := clusterhcl.Write(filepath.Join(t.TempDir(), "cluster.hcl"), clusterhcl.Spec{}, nil); err == nil {
		t.Fatal("wrote a cluster.hcl without nodes")
	}
}

// tokenNames lists a config's tokens as name=sha256, in file order.
func tokenNames(cfg *node.Config) []string {
	var out []string
	for _, t := range cfg.Tokens.Tokens {
		out = append(out, t.Name+"="+hex.EncodeToString(t.SHA256[:]))
	}
	return out
}

func digest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TestNoCoalescingTurnsItOff checks that NoCoalescing writes coalesce_in_flight = 0, which the
// node reads as coalescing off.
func TestNoCoalescingTurnsItOff(t *testing.T) {
	layout, err := clusterhcl.WriteLoopback(t.TempDir(), clusterhcl.Spec{Size: 1, Raft: clusterhcl.Raft{NoCoalescing: true}.Or(clusterhcl.InProcessRaft)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(layout.Path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Raft.CoalesceInFlight != 0 {
		t.Fatalf("coalesce_in_flight = %d, want 0", cfg.Raft.CoalesceInFlight)
	}
}
