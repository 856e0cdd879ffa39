package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
)

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"keygen", "-network", "regtest", "-out", keyFile}, &stdout, &stderr); code != exitOK {
		t.Fatalf("keygen exited %d: %s", code, stderr.String())
	}
	desc := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(desc, "wpkh([") || !strings.Contains(desc, "/84'/1'/0']tpub") || !strings.Contains(desc, "/<0;1>/*)#") {
		t.Errorf("keygen printed %q, want wpkh([fp/84'/1'/0']tpub.../<0;1>/*)#checksum", desc)
	}
	info, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stdout.String()+stderr.String(), strings.TrimSpace(string(key))) {
		t.Error("keygen printed the private key")
	}
	if _, err := signer.LoadWallet(keyFile, desc, &chaincfg.RegressionNetParams); err != nil {
		t.Errorf("the key and descriptor keygen made do not load: %v", err)
	}

	t.Run("it never overwrites a key file", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"keygen", "-network", "regtest", "-out", keyFile}, &stdout, &stderr); code != exitFail {
			t.Errorf("keygen over an existing file exited %d, want %d", code, exitFail)
		}
		after, err := os.ReadFile(keyFile)
		if err != nil || !bytes.Equal(after, key) {
			t.Errorf("the key file changed (%v)", err)
		}
	})
	for _, args := range [][]string{
		{"keygen", "-out", filepath.Join(dir, "x.key")},
		{"keygen", "-network", "regtest"},
		{"keygen", "-network", "moon", "-out", filepath.Join(dir, "y.key")},
	} {
		t.Run("usage: "+strings.Join(args, " "), func(t *testing.T) {
			if code := run(args, io.Discard, io.Discard); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
		})
	}
}

// writeConfig writes a signerd.hcl for wallet w, with private key and token files, and returns
// its path.
func writeConfig(t *testing.T, w *signertest.Wallet, descriptor string, tokenMode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	token := filepath.Join(dir, "signer.token")
	if err := os.WriteFile(token, []byte("signer-token\n"), tokenMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(token, tokenMode); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
network             = "regtest"
api_url             = "https://127.0.0.1:7201"
token_file          = "signer.token"
wallet_id           = "hot"
descriptor          = %q
key_file            = %q
max_fee_sat         = 50000
max_fee_rate_sat_vb = 25
daily_limit_sat     = 10000000
state_file          = "signerd-state.json"
`, descriptor, w.KeyFile(t))
	path := filepath.Join(dir, "signerd.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSetup(t *testing.T) {
	w := signertest.NewWallet(t)
	other := signertest.NewWallet(t)
	tests := []struct {
		name    string
		config  func(t *testing.T) string
		wantErr string
	}{
		{"the key and descriptor of one wallet start a daemon", func(t *testing.T) string { return writeConfig(t, w, w.Descriptor, 0o600) }, ""},
		{"the descriptor of another key is refused", func(t *testing.T) string { return writeConfig(t, w, other.Descriptor, 0o600) }, "descriptor is not the master key's"},
		{"a token file open to others is refused", func(t *testing.T) string { return writeConfig(t, w, w.Descriptor, 0o644) }, "token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(tt.config(t))
			if err != nil {
				t.Fatal(err)
			}
			d, err := setup(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("setup: %v", err)
			case tt.wantErr == "" && d.walletID != "hot":
				t.Errorf("daemon of wallet %q, want hot", d.walletID)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("setup = %v, want an error containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), w.Master.String()) {
				t.Error("the error holds the master key")
			}
		})
	}
}

func TestServeRefusesABadConfigWithUsageStatus(t *testing.T) {
	w := signertest.NewWallet(t)
	other := signertest.NewWallet(t)
	var stderr bytes.Buffer
	if code := run([]string{"-config", writeConfig(t, w, other.Descriptor, 0o600)}, io.Discard, &stderr); code != exitUsage {
		t.Errorf("exit %d, want %d: %s", code, exitUsage, stderr.String())
	}
	if code := run([]string{"-config", filepath.Join(t.TempDir(), "none.hcl")}, io.Discard, io.Discard); code != exitUsage {
		t.Errorf("a missing config exited %d, want %d", code, exitUsage)
	}
}

// TestAddress: the published BIP 84 test account's first receive and change addresses
// (wallet/descriptor/testdata/bip84.json, re-encoded for mainnet's xpub), and bad input.
func TestAddress(t *testing.T) {
	const desc = "wpkh(xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V/<0;1>/*)"
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-network", "mainnet", "-descriptor", desc}, exitOK, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"},
		{[]string{"-network", "mainnet", "-descriptor", desc, "-index", "1"}, exitOK, "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"},
		{[]string{"-network", "mainnet", "-descriptor", desc, "-change"}, exitOK, "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"},
		{[]string{"-network", "regtest", "-descriptor", desc}, exitUsage, ""},
		{[]string{"-network", "mainnet", "-descriptor", desc, "-index", "2147483648"}, exitUsage, ""},
		{[]string{"-network", "nope", "-descriptor", desc}, exitUsage, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"address"}, c.args...), &stdout, &stderr)
		if code != c.code || strings.TrimSpace(stdout.String()) != c.out {
			t.Errorf("address %v: exit %d, %q (%s); want %d, %q", c.args, code, stdout.String(), stderr.String(), c.code, c.out)
		}
	}
}
