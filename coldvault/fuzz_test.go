package coldvault

import (
	"bytes"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// FuzzSign: whatever PSBT file a cosigner is handed, Sign answers with a signed PSBT or an
// error, and never panics.
func FuzzSign(f *testing.F) {
	master, err := hdkeychain.NewMaster(bytes.Repeat([]byte{7}, 32), &chaincfg.RegressionNetParams)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("psbt\xff"))
	f.Add([]byte("psbt\xff\x01\x00\x33\x74\x01\xff\x07\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, n, err := Sign(master, raw)
		if err == nil && (n == 0 || len(out) == 0) {
			t.Fatalf("signed %d inputs into %d bytes without an error", n, len(out))
		}
	})
}
