package node

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

const validConfig = `
name = "local"

raft {
  heartbeat_timeout = "200ms"
  snapshot_threshold = 64
}

tokens {
  admin = ["dev-admin-token"]
  write = ["dev-client-token"]
}

node "n1" {
  region      = "local-a"
  raft_addr   = "127.0.0.1:7001"
  gossip_addr = "127.0.0.1:7101"
  api_addr    = "127.0.0.1:7201"
  data_dir    = "data/n1"
}

node "n2" {
  region      = "local-b"
  raft_addr   = "127.0.0.1:7002"
  gossip_addr = "127.0.0.1:7102"
  api_addr    = "0.0.0.0:7202"
  data_dir    = "/var/lib/bankd/n2"
}
`

func TestParseConfigAcceptsAValidFileAndFillsDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(validConfig), "/etc/bankd/cluster.hcl")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Name != "local" || len(cfg.Nodes) != 2 {
		t.Fatalf("got name %q and %d nodes", cfg.Name, len(cfg.Nodes))
	}
	want := DefaultRaftConfig()
	want.HeartbeatTimeout = 200 * time.Millisecond
	want.SnapshotThreshold = 64
	if cfg.Raft != want {
		t.Errorf("raft config = %+v, want %+v", cfg.Raft, want)
	}
	if cfg.InsecurePlaintext || cfg.TLS.CAFile != "/etc/bankd/tls/ca.crt" || cfg.Gossip.KeyringFile != "/etc/bankd/tls/gossip.keyring" {
		t.Errorf("transport security = plaintext %v, ca %q, keyring %q; want TLS with the default files beside cluster.hcl",
			cfg.InsecurePlaintext, cfg.TLS.CAFile, cfg.Gossip.KeyringFile)
	}
	n1, ok := cfg.Node("n1")
	if !ok {
		t.Fatal("Node(n1) not found")
	}
	if n1.DataDir != "/etc/bankd/data/n1" {
		t.Errorf("relative data_dir resolved to %q, want it relative to the config file", n1.DataDir)
	}
	if n2, _ := cfg.Node("n2"); n2.DataDir != "/var/lib/bankd/n2" {
		t.Errorf("absolute data_dir changed to %q", n2.DataDir)
	}
	if _, ok := cfg.Node("n9"); ok {
		t.Error("Node(n9) found in a config without it")
	}
}

func TestParseConfigAcceptsAMinimalSingleNodeFile(t *testing.T) {
	src := `name = "solo"
node "a" {
  region = "r"
  raft_addr = "localhost:1"
  gossip_addr = "localhost:2"
  api_addr = "localhost:3"
  data_dir = "d"
}`
	cfg, err := ParseConfig([]byte(src), "c.hcl")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Raft != DefaultRaftConfig() {
		t.Errorf("defaults not applied: %+v", cfg.Raft)
	}
	if cfg.Chain.Network != DefaultChainNetwork {
		t.Errorf("chain network = %q, want the default %q", cfg.Chain.Network, DefaultChainNetwork)
	}
	if cfg.HoldStoredFormat != 0 {
		t.Errorf("hold_stored_format = %d without the key, want 0 (no hold)", cfg.HoldStoredFormat)
	}
	held, err := ParseConfig([]byte("hold_stored_format = 1\n"+src), "c.hcl")
	if err != nil || held.HoldStoredFormat != 1 {
		t.Fatalf("hold_stored_format = 1: %v, %+v", err, held)
	}
}

func TestParseConfigReadsTheChainNetwork(t *testing.T) {
	for _, network := range []string{"mainnet", "testnet", "signet", "regtest"} {
		cfg, err := ParseConfig([]byte("name = \"c\"\nchain {\n  network = \""+network+"\"\n}\n"+nodeBlock("n1", 1, nil)), "c.hcl")
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if cfg.Chain.Network != network {
			t.Errorf("chain network = %q, want %q", cfg.Chain.Network, network)
		}
	}
}

func TestLoadConfigReadsTheRepositoryExample(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "cluster.hcl"))
	if err != nil {
		t.Fatalf("LoadConfig(../cluster.hcl): %v", err)
	}
	if len(cfg.Nodes) != 3 {
		t.Fatalf("example has %d nodes, want 3", len(cfg.Nodes))
	}
	for i, n := range cfg.Nodes {
		if !filepath.IsAbs(n.DataDir) || !strings.HasSuffix(n.DataDir, filepath.Join("data", n.ID)) {
			t.Errorf("node %d data_dir = %q", i, n.DataDir)
		}
	}
}

func TestLoadConfigReportsAMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "absent.hcl"))
	if err == nil || !os.IsNotExist(errorsUnwrapAll(err)) {
		t.Fatalf("err = %v, want a not-exist error", err)
	}
}

func errorsUnwrapAll(err error) error {
	for i := 0; i < 10; i++ {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
	return err
}

// nodeBlock renders a node block whose fields can be overridden one at a time.
func nodeBlock(id string, n int, override map[string]string) string {
	fields := map[string]string{
		"region":      `"r"`,
		"raft_addr":   `"127.0.0.1:70` + string(rune('0'+n)) + `1"`,
		"gossip_addr": `"127.0.0.1:71` + string(rune('0'+n)) + `1"`,
		"api_addr":    `"127.0.0.1:72` + string(rune('0'+n)) + `1"`,
		"data_dir":    `"data/` + id + `"`,
	}
	for k, v := range override {
		fields[k] = v
	}
	var b strings.Builder
	b.WriteString("node \"" + id + "\" {\n")
	for _, k := range []string{"region", "raft_addr", "gossip_addr", "api_addr", "data_dir", "tls_cert", "tls_key", "voter", "extra"} {
		if v, ok := fields[k]; ok && v != "-" {
			b.WriteString("  " + k + " = " + v + "\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func TestParseConfigRejects(t *testing.T) {
	base := "name = \"c\"\n"
	n1 := nodeBlock("n1", 1, nil)
	tests := []struct {
		name string
		src  string
		// wantLine is the line the error must point at; wantText must appear in the message.
		wantLine int
		wantText string
	}{
		{"a file that is not HCL", "name = \n", 1, "cluster.hcl:1"},
		{"a missing name", n1, 0, `"name" is required`},
		{"a name with a slash", "name = \"a/b\"\n" + n1, 1, "cluster name"},
		{"a name that is not a string", "name = [1]\n" + n1, 1, "name must be a string"},
		{"an unknown top-level key", base + "colour = \"red\"\n" + n1, 2, "colour"},
		{"an unknown block", base + "gossips {}\n" + n1, 2, "gossips"},
		{"no node blocks", base, 0, "at least one node block"},
		{"a second raft block", base + "raft {}\nraft {}\n" + n1, 3, "duplicate raft block"},
		{"a second tokens block", base + "tokens {}\ntokens {}\n" + n1, 3, "duplicate tokens block"},
		{"a second chain block", base + "chain {}\nchain {}\n" + n1, 3, "duplicate chain block"},
		{"an unknown chain network", base + "chain {\n  network = \"testnet3\"\n}\n" + n1, 3, `network must be one of mainnet, testnet, signet, regtest, got "testnet3"`},
		{"a chain network that is not a string", base + "chain {\n  network = [\"regtest\"]\n}\n" + n1, 3, "network must be a string"},
		{"an unknown chain key", base + "chain {\n  rpc = \"x\"\n}\n" + n1, 3, "rpc"},
		{"an unknown raft key", base + "raft {\n  heartbeat = \"1s\"\n}\n" + n1, 3, "heartbeat"},
		{"an unparsable duration", base + "raft {\n  heartbeat_timeout = \"fast\"\n}\n" + n1, 3, "heartbeat_timeout \"fast\" is not a duration"},
		{"a duration that is a number", base + "raft {\n  apply_timeout = 5\n}\n" + n1, 3, "apply_timeout"},
		{"a zero duration", base + "raft {\n  commit_timeout = \"0s\"\n}\n" + n1, 3, "commit_timeout must be between"},
		{"an election timeout below the heartbeat", base + "raft {\n  heartbeat_timeout = \"1s\"\n  election_timeout = \"500ms\"\n  leader_lease_timeout = \"500ms\"\n}\n" + n1, 4, "election_timeout (500ms) must be at least"},
		{"a lease above the heartbeat", base + "raft {\n  leader_lease_timeout = \"1s\"\n}\n" + n1, 3, "leader_lease_timeout (1s) must not exceed"},
		{"a negative snapshot threshold", base + "raft {\n  snapshot_threshold = -1\n}\n" + n1, 3, "snapshot_threshold must be between"},
		{"a fractional trailing_logs", base + "raft {\n  trailing_logs = 1.5\n}\n" + n1, 3, "trailing_logs must be a whole number"},
		{"append entries that could carry more than 256 MiB", base + "raft {\n  max_append_entries = 512\n  max_entry_bytes = 4194304\n}\n" + n1, 3, "must not exceed 268435456 bytes"},
		{"an entry size below 64 KiB", base + "raft {\n  max_entry_bytes = 1000\n}\n" + n1, 3, "max_entry_bytes must be between 65536 and 67108864"},
		{"a coalescing linger over a millisecond", base + "raft {\n  coalesce_linger = \"2ms\"\n}\n" + n1, 3, "coalesce_linger must be between 0s and 1ms"},
		{"a negative coalescing linger", base + "raft {\n  coalesce_linger = \"-1us\"\n}\n" + n1, 3, "coalesce_linger must be between 0s and 1ms"},
		{"a coalescing linger that is no duration", base + "raft {\n  coalesce_linger = \"soon\"\n}\n" + n1, 3, "is not a duration"},
		{"more coalesced entries in flight than 64", base + "raft {\n  coalesce_in_flight = 65\n}\n" + n1, 3, "coalesce_in_flight must be between 0 and 64"},
		{"too many append entries", base + "raft {\n  max_append_entries = 4096\n}\n" + n1, 3, "max_append_entries must be between 1 and 1024"},
		{"a stored format hold of 0", base + "hold_stored_format = 0\n" + n1, 2, "hold_stored_format must be between 1 and 65535"},
		{"a stored format hold that is no number", base + "hold_stored_format = \"latest\"\n" + n1, 2, "hold_stored_format must be a whole number"},
		{"an empty retention block", base + "retention {}\n" + n1, 2, "must set history, keep_indexes or idempotency_window"},
		{"a retention window below a second", base + "retention {\n  history = \"10ms\"\n}\n" + n1, 3, "history must be between 1s"},
		{"a retention interval that is not a duration", base + "retention {\n  idempotency_window = \"1h\"\n  interval = \"often\"\n}\n" + n1, 4, `interval "often" is not a duration`},
		{"a negative keep_indexes", base + "retention {\n  keep_indexes = -1\n}\n" + n1, 3, "keep_indexes must be between 1"},
		{"an unknown retention key", base + "retention {\n  events = \"1h\"\n}\n" + n1, 3, "events"},
		{"an unknown tokens key", base + "tokens {\n  root = [\"x\"]\n}\n" + n1, 3, "root"},
		{"tokens that are not a list", base + "tokens {\n  admin = \"x\"\n}\n" + n1, 3, "admin must be a list of strings"},
		{"an empty token", base + "tokens {\n  write = [\"\"]\n}\n" + n1, 3, "write[0] is empty"},
		{"a token with a space", base + "tokens {\n  write = [\"a b\"]\n}\n" + n1, 3, "whitespace"},
		{"a token in two scopes", base + "tokens {\n  admin = [\"t\"]\n  write = [\"t\"]\n}\n" + n1, 3, `token "dev-admin-1" has the same secret as token "dev-write-1"`},
		{"a token block without a secret", base + "tokens {\n  token \"app\" {\n    scopes = [\"write\"]\n  }\n}\n" + n1, 3, "set exactly one of token_file"},
		{"a token block with two secrets", base + "tokens {\n  token \"app\" {\n    scopes = [\"write\"]\n    token_sha256 = \"" + strings.Repeat("ab", 32) + "\"\n    token_file = \"x\"\n  }\n}\n" + n1, 3, "set exactly one of token_file"},
		{"a token block without scopes", base + "tokens {\n  token \"app\" {\n    token_sha256 = \"" + strings.Repeat("ab", 32) + "\"\n  }\n}\n" + n1, 3, `"scopes" is required`},
		{"an unknown scope", base + "tokens {\n  token \"app\" {\n    scopes = [\"root\"]\n    token_sha256 = \"" + strings.Repeat("ab", 32) + "\"\n  }\n}\n" + n1, 4, `unknown scope "root"`},
		{"a token_sha256 that is not a digest", base + "tokens {\n  token \"app\" {\n    scopes = [\"read\"]\n    token_sha256 = \"abc\"\n  }\n}\n" + n1, 5, "token_sha256 must be 64 hex digits"},
		{"a token name kept for the development lists", base + "tokens {\n  token \"dev-x\" {\n    scopes = [\"read\"]\n    token_sha256 = \"" + strings.Repeat("ab", 32) + "\"\n  }\n}\n" + n1, 3, "not start with dev-"},
		{"two tokens of one name", base + "tokens {\n  token \"app\" {\n    scopes = [\"read\"]\n    token_sha256 = \"" + strings.Repeat("ab", 32) + "\"\n  }\n  token \"app\" {\n    scopes = [\"read\"]\n    token_sha256 = \"" + strings.Repeat("cd", 32) + "\"\n  }\n}\n" + n1, 7, `a token named "app" is already defined`},
		{"development tokens on mainnet", base + "chain {\n  network = \"mainnet\"\n}\ntokens {\n  write = [\"t\"]\n}\n" + n1, 5, "a mainnet cluster takes its tokens from token blocks"},
		{"the retired tokens.gossip_key", base + "tokens {\n  gossip_key = \"AAAA\"\n}\n" + n1, 3, "gossip_key"},
		{"plaintext on mainnet", base + "insecure_plaintext = true\nchain {\n  network = \"mainnet\"\n}\n" + n1, 2, "insecure_plaintext on mainnet"},
		{"plaintext beside a tls block", base + "insecure_plaintext = true\ntls {\n  ca_file = \"x.crt\"\n}\n" + n1, 2, "conflicting insecure_plaintext"},
		{"plaintext beside a node certificate", base + "insecure_plaintext = true\n" + nodeBlock("n1", 1, map[string]string{"tls_cert": `"n1.crt"`}), 2, "conflicting insecure_plaintext"},
		{"plaintext that is not a bool", base + "insecure_plaintext = \"yes\"\n" + n1, 2, "insecure_plaintext must be true or false"},
		{"an empty ca_file", base + "tls {\n  ca_file = \"\"\n}\n" + n1, 3, "ca_file must not be empty"},
		{"an unknown gossip key", base + "gossip {\n  key = \"x\"\n}\n" + n1, 3, "key"},
		{"a node without a label", base + "node {\n}\n", 2, "node"},
		{"a node id with a space", base + nodeBlock("n 1", 1, nil), 2, "node id \"n 1\""},
		{"a duplicate node id", base + n1 + nodeBlock("n1", 2, nil), 9, "node \"n1\" is defined twice"},
		{"a missing region", base + nodeBlock("n1", 1, map[string]string{"region": "-"}), 2, `"region" is required`},
		{"an empty region", base + nodeBlock("n1", 1, map[string]string{"region": `""`}), 3, "region must not be empty"},
		{"an unknown node key", base + nodeBlock("n1", 1, map[string]string{"extra": `"x"`}), 8, "extra"},
		{"a raft_addr without a port", base + nodeBlock("n1", 1, map[string]string{"raft_addr": `"127.0.0.1"`}), 4, "raft_addr \"127.0.0.1\""},
		{"a gossip_addr with a bad port", base + nodeBlock("n1", 1, map[string]string{"gossip_addr": `"127.0.0.1:99999"`}), 5, "gossip_addr"},
		{"a raft_addr on a wildcard", base + nodeBlock("n1", 1, map[string]string{"raft_addr": `"0.0.0.0:7001"`}), 4, "wildcard"},
		{"an api_addr without a host", base + nodeBlock("n1", 1, map[string]string{"api_addr": `":7201"`}), 6, "host is empty"},
		{"an address reused inside a node", base + nodeBlock("n1", 1, map[string]string{"gossip_addr": `"127.0.0.1:7011"`}), 5, "already used by node \"n1\" raft_addr"},
		{"an address reused across nodes", base + n1 + nodeBlock("n2", 2, map[string]string{"api_addr": `"127.0.0.1:7111"`}), 13, "already used by node \"n1\" gossip_addr"},
		{"a data_dir shared by two nodes", base + n1 + nodeBlock("n2", 2, map[string]string{"data_dir": `"./data/n1"`}), 14, "data_dir"},
		{"a variable reference", base + nodeBlock("n1", 1, map[string]string{"region": "var.region"}), 3, "region must be a string"},
		{"a voter that is not a bool", base + nodeBlock("n1", 1, map[string]string{"voter": `"no"`}), 8, "voter must be true or false"},
		{"no voter at all", base + nodeBlock("n1", 1, map[string]string{"voter": "false"}), 0, "at least one node must vote"},
		{"an unknown profile", base + "profile = \"metro\"\n" + n1, 2, `profile must be one of lan, wan, got "metro"`},
		{"a leader region without a voter", base + "placement {\n  leader_region = \"elsewhere\"\n}\n" + n1, 2, `leader_region "elsewhere" holds no voter; voters are in r`},
		{"a leader region of non-voters only", base + "placement {\n  leader_region = \"b\"\n}\n" + n1 + nodeBlock("n2", 2, map[string]string{"region": `"b"`, "voter": "false"}), 2, `leader_region "b" holds no voter`},
		{"a leader region settle of 1ms", base + "placement {\n  leader_region = \"r\"\n  leader_region_settle = \"1ms\"\n}\n" + n1, 4, "leader_region_settle must be between"},
		{"a probe timeout longer than the interval", base + "gossip {\n  probe_interval = \"1s\"\n  probe_timeout = \"2s\"\n}\n" + n1, 2, "probe_timeout (2s) must be shorter than probe_interval (1s)"},
		{"a suspicion multiplier of 0", base + "gossip {\n  suspicion_mult = 0\n}\n" + n1, 3, "suspicion_mult must be a whole number between 1 and 20"},
		{"plaintext beside a gossip keyring", base + "insecure_plaintext = true\ngossip {\n  keyring_file = \"k\"\n}\n" + n1, 2, "conflicting insecure_plaintext"},
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
			if tt.wantLine > 0 {
				pos := "cluster.hcl:" + itoa(tt.wantLine) + ","
				if !strings.Contains(msg, pos) {
					t.Errorf("error %q does not point at %s", msg, pos)
				}
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Add([]byte("name = \"c\"\n" + nodeBlock("n1", 1, nil)))
	f.Add([]byte(`name = "x" raft { max_append_entries = 1e99 }`))
	f.Add([]byte(`tokens { gossip_key = "${"x"}" admin = [for s in ["a"]: s] }`))
	f.Add([]byte(`node "a" "b" { region = null }`))
	f.Add([]byte("name = \"c\"\n" + nodeBlock("n1", 1, nil) + lndBlock("lnd1", map[string]string{"address": `"[::1]"`})))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := ParseConfig(src, "fuzz.hcl")
		if err == nil && (cfg == nil || len(cfg.Nodes) == 0 || cfg.Name == "") {
			t.Fatalf("accepted a config without name or nodes: %+v", cfg)
		}
	})
}

func TestTokenFiles(t *testing.T) {
	const secret = "0123456789abcdef-payments"
	write := func(t *testing.T, dir, name, content string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	config := func(file string) string {
		return "name = \"c\"\ntokens {\n  token \"payments\" {\n    scopes = [\"write\", \"operator\"]\n    token_file = \"" + file + "\"\n  }\n}\n" + nodeBlock("n1", 1, nil)
	}
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr string
	}{
		{"a private file holding the secret and a newline", secret + "\n", 0o600, ""},
		{"a file the owner's group may read", secret, 0o640, ""},
		{"a world-readable file", secret, 0o644, "is open to other users (mode 0644); make it private with chmod 600"},
		{"a world-writable file", secret, 0o602, "is open to other users"},
		{"a secret too short to resist guessing", "k3Y9q", 0o600, "must be at least 16 characters"},
		{"an empty file", "", 0o600, "is empty"},
		{"a secret with a space inside", "0123456789 abcdef", 0o600, "whitespace"},
		{"a file larger than any token", strings.Repeat("x", 5000), 0o600, "larger than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "payments.token", tt.content, tt.mode)
			path := filepath.Join(dir, "cluster.hcl")
			if err := os.WriteFile(path, []byte(config("payments.token")), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(tt.content)) && len(strings.TrimSpace(tt.content)) >= 5 {
					t.Fatalf("the error repeats the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok := cfg.Tokens.Tokens[0]
			if tok.Name != "payments" || strings.Join(tok.Scopes, ",") != "write,operator" || tok.Development {
				t.Fatalf("token = %+v", tok)
			}
			if tok.SHA256 != sha256.Sum256([]byte(strings.TrimSpace(tt.content))) {
				t.Fatal("the token is not held as the SHA-256 of the file's secret")
			}
		})
	}
	t.Run("a missing file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "cluster.hcl")
		if err := os.WriteFile(path, []byte(config("nowhere.token")), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "nowhere.token") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a mainnet cluster with token files only", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "payments.token", secret, 0o600)
		path := filepath.Join(dir, "cluster.hcl")
		hcl := strings.Replace(config("payments.token"), "tokens {", "chain {\n  network = \"mainnet\"\n}\ntokens {", 1)
		if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(path); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTransportSecurityConfig(t *testing.T) {
	src := `name = "c"
tls {
  ca_file     = "pki/ca.pem"
  ca_key_file = "/offline/ca.key"
}
gossip {
  keyring_file = "/etc/bankd/keyring"
}
` + nodeBlock("n1", 1, nil) + nodeBlock("n2", 2, map[string]string{"tls_cert": `"/certs/n2.pem"`, "tls_key": `"keys/n2.pem"`})
	cfg, err := ParseConfig([]byte(src), "/etc/bankd/cluster.hcl")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.TLS.CAFile != "/etc/bankd/pki/ca.pem" || cfg.TLS.CAKeyFile != "/offline/ca.key" || cfg.Gossip.KeyringFile != "/etc/bankd/keyring" {
		t.Errorf("tls = %+v, gossip = %+v", cfg.TLS, cfg.Gossip)
	}
	n1, _ := cfg.Node("n1")
	n2, _ := cfg.Node("n2")
	if n1.TLSCert != "/etc/bankd/pki/n1.crt" || n1.TLSKey != "/etc/bankd/pki/n1.key" {
		t.Errorf("n1's certificate defaults to %q and %q, want them beside the CA", n1.TLSCert, n1.TLSKey)
	}
	if n2.TLSCert != "/certs/n2.pem" || n2.TLSKey != "/etc/bankd/keys/n2.pem" {
		t.Errorf("n2's certificate is %q and %q", n2.TLSCert, n2.TLSKey)
	}

	plain, err := ParseConfig([]byte("name = \"c\"\ninsecure_plaintext = true\n"+nodeBlock("n1", 1, nil)), "/etc/bankd/cluster.hcl")
	if err != nil {
		t.Fatalf("ParseConfig with insecure_plaintext: %v", err)
	}
	if p1, _ := plain.Node("n1"); !plain.InsecurePlaintext || plain.TLS.CAFile != "" || plain.Gossip.KeyringFile != "" || p1.TLSCert != "" {
		t.Errorf("insecure_plaintext kept TLS settings: %+v %+v %+v", plain.TLS, plain.Gossip, p1)
	}
}

func TestReadKeyring(t *testing.T) {
	dir := t.TempDir()
	k1 := "MDEyMzQ1Njc4OWFiY2RlZg=="                     // 16 bytes
	k2 := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	write := func(name, body string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keys, err := readKeyring(write("good", "# primary first\n"+k2+"\n\n"+k1+"\n", 0o600))
	if err != nil || len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 16 {
		t.Fatalf("readKeyring = %d keys, %v; want the 32-byte primary then the 16-byte key", len(keys), err)
	}
	for _, tt := range []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"world-readable", k1 + "\n", 0o644, "open to other users"},
		{"empty", "# nothing\n", 0o600, "holds no key"},
		{"not base64", "!!!\n", 0o600, "line 1: not base64"},
		{"wrong length", "AAAA\n", 0o600, "16, 24 or 32 bytes, got 3"},
		{"a key twice", k1 + "\n" + k1 + "\n", 0o600, "line 2: the key is listed twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readKeyring(write(tt.name, tt.body, tt.mode))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("readKeyring error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := readKeyring(filepath.Join(dir, "missing")); err == nil {
		t.Error("readKeyring of a missing file succeeded")
	}
}

func TestRetentionBoundsFromTheBlock(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	tests := []struct {
		name string
		rc   RetentionConfig
		// applied is the leader's applied index.
		applied uint64
		want    *bankdv1.CompactRequest
	}{
		{"nothing asked", RetentionConfig{}, 100, nil},
		{"an age only: any index below the applied one", RetentionConfig{History: time.Second}, 100,
			&bankdv1.CompactRequest{BeforeIndex: 100, BeforeUnixMs: 9_999_000, MaxDeletes: retentionDeletesPerCommand}},
		{"indexes only: any age", RetentionConfig{KeepIndexes: 30}, 100,
			&bankdv1.CompactRequest{BeforeIndex: 70, BeforeUnixMs: 10_000_000, MaxDeletes: retentionDeletesPerCommand}},
		{"both", RetentionConfig{History: 2 * time.Second, KeepIndexes: 30}, 100,
			&bankdv1.CompactRequest{BeforeIndex: 70, BeforeUnixMs: 9_998_000, MaxDeletes: retentionDeletesPerCommand}},
		{"more indexes kept than there are, idempotency only", RetentionConfig{KeepIndexes: 300, IdempotencyWindow: time.Minute}, 100,
			&bankdv1.CompactRequest{BeforeIndex: 0, BeforeUnixMs: 10_000_000, TransfersBeforeUnixMs: 9_940_000, MaxDeletes: retentionDeletesPerCommand}},
		{"more indexes kept than there are", RetentionConfig{KeepIndexes: 300}, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compactRequest(tt.rc, tt.applied, now)
			if !proto.Equal(got, tt.want) {
				t.Fatalf("compactRequest = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProfilesAndPlacement(t *testing.T) {
	three := func(regions ...string) string {
		var b strings.Builder
		for i, r := range regions {
			voter := "true"
			if strings.HasSuffix(r, "*") {
				r, voter = strings.TrimSuffix(r, "*"), "false"
			}
			b.WriteString(nodeBlock("n"+itoa(i+1), i+1, map[string]string{"region": `"` + r + `"`, "voter": voter}))
		}
		return b.String()
	}
	t.Run("wan profile sets Raft timings the raft block can still override", func(t *testing.T) {
		cfg, err := ParseConfig([]byte("name = \"c\"\nprofile = \"wan\"\nraft {\n  commit_timeout = \"20ms\"\n}\n"+three("a", "b", "c")), "cluster.hcl")
		if err != nil {
			t.Fatal(err)
		}
		want := ProfileRaftConfig(ProfileWAN)
		want.CommitTimeout = 20 * time.Millisecond
		if cfg.Profile != ProfileWAN || cfg.Raft != want || cfg.Raft.HeartbeatTimeout != time.Second {
			t.Fatalf("profile %q raft %+v, want wan %+v", cfg.Profile, cfg.Raft, want)
		}
	})
	t.Run("gossip timings: block keys over the profile, the profile over memberlist", func(t *testing.T) {
		cfg, err := ParseConfig([]byte("name = \"c\"\nprofile = \"wan\"\ninsecure_plaintext = true\ngossip {\n  probe_timeout = \"1s\"\n}\n"+three("a", "b", "c")), "cluster.hcl")
		if err != nil {
			t.Fatal(err)
		}
		got := cfg.Gossip.Timing.merge(ProfileGossipTiming(cfg.Profile, false))
		if got.ProbeTimeout != time.Second || got.ProbeInterval != 5*time.Second || got.SuspicionMult != 6 {
			t.Fatalf("gossip timing %+v", got)
		}
		if lan := ProfileGossipTiming(ProfileLAN, true); lan.ProbeInterval != 200*time.Millisecond {
			t.Fatalf("one machine keeps its fast failure detection, got %+v", lan)
		}
	})
	t.Run("the default profile is lan with the raft defaults", func(t *testing.T) {
		cfg, err := ParseConfig([]byte("name = \"c\"\n"+three("a")), "cluster.hcl")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Profile != ProfileLAN || cfg.Raft != DefaultRaftConfig() || cfg.Placement.LeaderRegionSettle != DefaultLeaderRegionSettle {
			t.Fatalf("profile %q raft %+v placement %+v", cfg.Profile, cfg.Raft, cfg.Placement)
		}
	})
	t.Run("non-voters and a leader region", func(t *testing.T) {
		cfg, err := ParseConfig([]byte("name = \"c\"\nplacement {\n  leader_region = \"b\"\n}\n"+three("a", "b", "c", "a*", "b*")), "cluster.hcl")
		if err != nil {
			t.Fatal(err)
		}
		var voters []string
		for _, n := range cfg.Voters() {
			voters = append(voters, n.ID)
		}
		if strings.Join(voters, ",") != "n1,n2,n3" || !cfg.Nodes[3].NonVoter || cfg.Placement.LeaderRegion != "b" {
			t.Fatalf("voters %v, n4 non-voter %v, leader region %q", voters, cfg.Nodes[3].NonVoter, cfg.Placement.LeaderRegion)
		}
	})

	warnings := []struct {
		name    string
		regions []string
		want    []string // substrings, one per warning, in order
	}{
		{"three voters in three regions", []string{"a", "b", "c"}, nil},
		{"replicas do not count", []string{"a", "b", "c", "a*", "a*"}, nil},
		{"a single voter", []string{"a"}, nil},
		{"two of three voters in one region", []string{"a", "a", "b"}, []string{`region "a" holds 2 of 3 voters (n1, n2), a quorum`}},
		{"all voters in one region", []string{"a", "a", "a"}, []string{`all 3 voters are in region "a"`}},
		{"three of five voters in one region", []string{"a", "b", "a", "c", "a"}, []string{`region "a" holds 3 of 5 voters (n1, n3, n5)`}},
		{"four voters", []string{"a", "b", "c", "d"}, []string{"4 voters tolerate no more failures than 3"}},
		{"two regions of two voters", []string{"a", "a", "b", "b"}, []string{"4 voters tolerate no more failures than 3"}},
	}
	for _, tt := range warnings {
		t.Run("placement: "+tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte("name = \"c\"\n"+three(tt.regions...)), "cluster.hcl")
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.PlacementWarnings()
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not say %q", got[i], w)
				}
			}
		})
	}
}
