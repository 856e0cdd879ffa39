package signer_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
	"github.com/bankd/bankd/wallet/descriptor"
)

func TestLoadWallet(t *testing.T) {
	w := signertest.NewWallet(t)
	other := signertest.NewWallet(t)
	regtest := &chaincfg.RegressionNetParams
	h := func(i uint32) uint32 { return hdkeychain.HardenedKeyStart + i }

	// xpubAt is the extended public key at path of master.
	xpubAt := func(t *testing.T, master *hdkeychain.ExtendedKey, path ...uint32) string {
		k := master
		for _, step := range path {
			var err error
			if k, err = k.Derive(step); err != nil {
				t.Fatal(err)
			}
		}
		pub, err := k.Neuter()
		if err != nil {
			t.Fatal(err)
		}
		return pub.String()
	}
	keyFile := func(t *testing.T, content string, mode os.FileMode) string {
		path := filepath.Join(t.TempDir(), "master.key")
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return path
	}
	child, err := w.Master.Derive(h(0))
	if err != nil {
		t.Fatal(err)
	}
	mainnetMaster, err := hdkeychain.NewMaster(make([]byte, 32), &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	accountXpub := xpubAt(t, w.Master, h(84), h(1), h(0))

	tests := []struct {
		name       string
		keyFile    func(t *testing.T) string
		descriptor string
		wantErr    error
		wantIn     string
	}{
		{
			name:       "the key file and descriptor of one wallet load",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String()+"\n", 0o600) },
			descriptor: w.Descriptor,
		},
		{
			name:       "a descriptor written with h and without checksum loads",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o400) },
			descriptor: fmt.Sprintf("wpkh([%x/84h/1h/0h]%s/<0;1>/*)", w.Fingerprint[:], accountXpub),
		},
		{
			name:       "a key file readable by its group is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o640) },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "open to other users (mode 0640); make it private with chmod 600",
		},
		{
			name:       "a key file readable by anyone is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o604) },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "mode 0604",
		},
		{
			name:       "a missing key file is refused",
			keyFile:    func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "no such file",
		},
		{
			name:       "a key file of two lines is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String()+"\n"+other.Master.String()+"\n", 0o600) },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "one extended private key on one line",
		},
		{
			name:       "a key file with a corrupted key is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String()[:100]+"zzzzzzzzzzz", 0o600) },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "does not hold an extended key",
		},
		{
			name:       "an extended public key is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, accountXpub, 0o600) },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "extended public key",
		},
		{
			name:       "a child key instead of the master is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, child.String(), 0o600) },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "depth 1",
		},
		{
			name:       "a mainnet key on regtest is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, mainnetMaster.String(), 0o600) },
			descriptor: w.Descriptor,
			wantErr:    signer.ErrKeyFile, wantIn: "not for regtest",
		},
		{
			name:       "the descriptor of another key is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: other.Descriptor,
			wantErr:    signer.ErrKeyMismatch, wantIn: "fingerprint",
		},
		{
			name:       "another key's account under this master's fingerprint is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: fmt.Sprintf("wpkh([%x/84'/1'/0']%s/<0;1>/*)", w.Fingerprint[:], xpubAt(t, other.Master, h(84), h(1), h(0))),
			wantErr:    signer.ErrKeyMismatch, wantIn: "derives another key",
		},
		{
			name:       "another account of this master labelled as account 0 is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: fmt.Sprintf("wpkh([%x/84'/1'/0']%s/<0;1>/*)", w.Fingerprint[:], xpubAt(t, w.Master, h(84), h(1), h(1))),
			wantErr:    signer.ErrKeyMismatch, wantIn: "derives another key",
		},
		{
			name:       "a descriptor without a key origin is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: fmt.Sprintf("wpkh(%s/<0;1>/*)", accountXpub),
			wantErr:    signer.ErrKeyMismatch, wantIn: "fingerprint",
		},
		{
			name:       "a descriptor without a change branch is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: fmt.Sprintf("wpkh([%x/84'/1'/0']%s/0/*)", w.Fingerprint[:], accountXpub),
			wantErr:    signer.ErrKeyMismatch, wantIn: "/<0;1>/*",
		},
		{
			name:       "branches in another order are refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: fmt.Sprintf("wpkh([%x/84'/1'/0']%s/<1;0>/*)", w.Fingerprint[:], accountXpub),
			wantErr:    signer.ErrKeyMismatch, wantIn: "not <origin>/0/0",
		},
		{
			name:       "a pkh descriptor is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: fmt.Sprintf("pkh([%x/84'/1'/0']%s/<0;1>/*)", w.Fingerprint[:], accountXpub),
			wantErr:    signer.ErrKeyMismatch, wantIn: "only wpkh",
		},
		{
			name:       "a descriptor holding a private key is refused",
			keyFile:    func(t *testing.T) string { return keyFile(t, w.Master.String(), 0o600) },
			descriptor: fmt.Sprintf("wpkh(%s/84'/1'/0'/<0;1>/*)", w.Master.String()),
			wantErr:    signer.ErrKeyMismatch, wantIn: "private key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signer.LoadWallet(tt.keyFile(t), tt.descriptor, regtest)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("LoadWallet: %v", err)
				}
				if got.Fingerprint() != w.Fingerprint {
					t.Errorf("Fingerprint = %x, want %x", got.Fingerprint(), w.Fingerprint)
				}
				if want, _ := descriptor.Parse(w.Descriptor, regtest); got.Descriptor() != want.String() {
					t.Errorf("Descriptor = %s, want %s", got.Descriptor(), want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadWallet = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("LoadWallet = %q, want it to contain %q", err, tt.wantIn)
			}
			for _, secret := range []string{w.Master.String(), other.Master.String(), child.String(), w.Master.String()[4:40]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error repeats a private key: %q", err)
				}
			}
		})
	}
}

func TestWalletScripts(t *testing.T) {
	w := signertest.NewWallet(t)
	loaded, err := signer.LoadWallet(w.KeyFile(t), w.Descriptor, w.Net)
	if err != nil {
		t.Fatal(err)
	}
	for _, bi := range [][2]uint32{{0, 0}, {0, 17}, {1, 0}, {1, 5}} {
		got, err := loaded.Script(bi[0], bi[1])
		if err != nil {
			t.Fatal(err)
		}
		if want := w.Script(t, bi[0], bi[1]); string(got) != string(want) {
			t.Errorf("Script(%d, %d) = %x, want %x", bi[0], bi[1], got, want)
		}
	}
	if _, err := loaded.Script(2, 0); err == nil {
		t.Error("Script of branch 2 succeeded")
	}
	if got, want := signer.FormatPath(loaded.Path(1, 5)), "m/84'/1'/0'/1/5"; got != want {
		t.Errorf("Path(1, 5) = %s, want %s", got, want)
	}
}
