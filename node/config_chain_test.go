package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCertPEM writes a self-signed PEM certificate to dir and returns its path.
func testCertPEM(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "btcd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	path := filepath.Join(dir, "rpc.cert")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pemBytes
}

func TestParseConfigWithoutRPCHostHasNoWatcherAndTheDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte("name = \"c\"\nchain {\n  network = \"signet\"\n}\n"+nodeBlock("n1", 1, nil)), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultChainConfig()
	want.Network = "signet"
	if cfg.Chain.Watching() || cfg.Chain.Network != want.Network || cfg.Chain.FinalDepth != 6 || cfg.Chain.KeepHashes != 1000 ||
		cfg.Chain.StartHeight != 0 || cfg.Chain.PollInterval != time.Second || !cfg.Chain.Mempool || !cfg.Chain.RPCTLS {
		t.Fatalf("chain config %+v, want the defaults without a watcher", cfg.Chain)
	}
}

func TestParseConfigReadsTheChainWatcherSettings(t *testing.T) {
	dir := t.TempDir()
	certPath, certPEM := testCertPEM(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `name = "c"
chain {
  network       = "regtest"
  rpc_host      = "LocalHost:18334"
  rpc_user      = "bankd"
  rpc_pass_file = "pass"
  rpc_cert      = "rpc.cert"
  final_depth   = 3
  keep_hashes   = 50
  start_height  = 500
  poll_interval = "100ms"
  mempool       = false
}
` + nodeBlock("n1", 1, nil)
	cfg, err := ParseConfig([]byte(src), filepath.Join(dir, "cluster.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Chain
	if !c.Watching() || c.RPCHost != "localhost:18334" || c.RPCUser != "bankd" || c.RPCPass != "s3cret" ||
		c.RPCCertPath != certPath || !bytes.Equal(c.RPCCert, certPEM) || !c.RPCTLS ||
		c.FinalDepth != 3 || c.KeepHashes != 50 || c.StartHeight != 500 || c.PollInterval != 100*time.Millisecond || c.Mempool {
		t.Fatalf("chain config %+v", c)
	}

	plain, err := ParseConfig([]byte("name = \"c\"\nchain {\n  rpc_host = \"127.0.0.1:18443\"\n  rpc_user = \"u\"\n  rpc_pass = \"p\"\n  rpc_tls = false\n}\n"+nodeBlock("n1", 1, nil)), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Chain.RPCTLS || plain.Chain.RPCPass != "p" || plain.Chain.RPCCert != nil {
		t.Fatalf("plain-HTTP chain config %+v", plain.Chain)
	}
}

func TestParseConfigRejectsBadChainSettings(t *testing.T) {
	dir := t.TempDir()
	certPath, _ := testCertPEM(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n1 := nodeBlock("n1", 1, nil)
	chain := func(lines ...string) string {
		return "name = \"c\"\nchain {\n  " + strings.Join(lines, "\n  ") + "\n}\n" + n1
	}
	rpc := []string{`rpc_host = "127.0.0.1:18334"`, `rpc_user = "u"`, `rpc_pass = "p"`}
	with := func(extra ...string) string { return chain(append(append([]string(nil), rpc...), extra...)...) }
	tests := []struct {
		name     string
		src      string
		wantLine int
		wantText string
	}{
		{"rpc settings without rpc_host", chain(`rpc_user = "u"`), 3, "rpc_user is set but rpc_host is not"},
		{"rpc_host without a port", chain(`rpc_host = "127.0.0.1"`, `rpc_user = "u"`, `rpc_pass = "p"`), 3, "rpc_host \"127.0.0.1\""},
		{"rpc_host on a wildcard", chain(`rpc_host = "0.0.0.0:18334"`, `rpc_user = "u"`, `rpc_pass = "p"`), 3, "wildcard"},
		{"rpc_host without a user", chain(`rpc_host = "127.0.0.1:18334"`, `rpc_pass = "p"`), 2, "rpc_user is required with rpc_host"},
		{"rpc_host without a password", chain(`rpc_host = "127.0.0.1:18334"`, `rpc_user = "u"`), 2, "rpc_pass or rpc_pass_file is required"},
		{"both password keys", with(`rpc_pass_file = "x"`), 6, "either rpc_pass or rpc_pass_file"},
		{"a missing password file", chain(`rpc_host = "127.0.0.1:18334"`, `rpc_user = "u"`, `rpc_pass_file = "`+filepath.Join(dir, "absent")+`"`), 5, "no such file"},
		{"an empty password file", chain(`rpc_host = "127.0.0.1:18334"`, `rpc_user = "u"`, `rpc_pass_file = "`+empty+`"`), 5, "is empty"},
		{"an unreadable certificate", with(`rpc_cert = "` + filepath.Join(dir, "absent.cert") + `"`), 6, "no such file"},
		{"a certificate that is not PEM", with(`rpc_cert = "` + notPEM + `"`), 6, "holds no PEM certificate"},
		{"a certificate without TLS", with(`rpc_tls = false`, `rpc_cert = "`+certPath+`"`), 7, "rpc_tls is false"},
		{"rpc_tls not a bool", with(`rpc_tls = "no"`), 6, "rpc_tls must be true or false"},
		{"a zero final depth", chain(`final_depth = 0`), 3, "final_depth must be between 1 and 1000"},
		{"a final depth over 1000", chain(`final_depth = 1001`), 3, "final_depth must be between 1 and 1000"},
		{"keep_hashes below final_depth", chain(`final_depth = 10`, `keep_hashes = 5`), 4, "keep_hashes (5) must be at least final_depth (10)"},
		{"a negative start height", chain(`start_height = -1`), 3, "start_height must be between 0"},
		{"a poll interval too short", chain(`poll_interval = "1ms"`), 3, "poll_interval must be between 10ms and 1h"},
		{"a poll interval that is no duration", chain(`poll_interval = "often"`), 3, "poll_interval \"often\" is not a duration"},
		{"mempool not a bool", chain(`mempool = "yes"`), 3, "mempool must be true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src), "cluster.hcl")
			if err == nil {
				t.Fatalf("ParseConfig accepted:\n%s", tt.src)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantText) {
				t.Errorf("error %q does not mention %q", msg, tt.wantText)
			}
			if pos := "cluster.hcl:" + itoa(tt.wantLine) + ","; !strings.Contains(msg, pos) {
				t.Errorf("error %q does not point at %s", msg, pos)
			}
		})
	}
}
