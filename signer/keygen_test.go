package signer_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/signer"
)

func TestKeygen(t *testing.T) {
	tests := []struct {
		name       string
		net        *chaincfg.Params
		wantPrefix string
	}{
		{name: "a regtest wallet is BIP 84 account 0 of coin type 1", net: &chaincfg.RegressionNetParams, wantPrefix: "/84'/1'/0']tpub"},
		{name: "a testnet wallet is BIP 84 account 0 of coin type 1", net: &chaincfg.TestNet3Params, wantPrefix: "/84'/1'/0']tpub"},
		{name: "a mainnet wallet is BIP 84 account 0 of coin type 0", net: &chaincfg.MainNetParams, wantPrefix: "/84'/0'/0']xpub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			master, err := signer.GenerateMaster(tt.net)
			if err != nil {
				t.Fatal(err)
			}
			desc, err := signer.AccountDescriptor(master, tt.net)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(desc, "wpkh([") || !strings.Contains(desc, tt.wantPrefix) || !strings.Contains(desc, "/<0;1>/*)#") {
				t.Errorf("descriptor %s, want wpkh([fp%s.../<0;1>/*)#checksum", desc, tt.wantPrefix)
			}
			path := filepath.Join(t.TempDir(), "master.key")
			if err := signer.WriteKeyFile(path, master); err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := info.Mode().Perm(); perm != 0o600 {
				t.Errorf("key file mode %04o, want 0600", perm)
			}
			w, err := signer.LoadWallet(path, desc, tt.net)
			if err != nil {
				t.Fatalf("the generated key and descriptor do not load: %v", err)
			}
			if w.Descriptor() != desc {
				t.Errorf("loaded descriptor %s, want %s", w.Descriptor(), desc)
			}
			if err := signer.WriteKeyFile(path, master); !errors.Is(err, os.ErrExist) {
				t.Errorf("WriteKeyFile over an existing file = %v, want %v", err, os.ErrExist)
			}
		})
	}
}
