package lnd

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
)

// maxMacaroonSize bounds the macaroon file read; lnd's baked macaroons are a few hundred
// bytes.
const maxMacaroonSize = 64 << 10

// macaroonCredential sends a macaroon the way lnd expects it: hex-encoded in the
// "macaroon" metadata of every call. It implements credentials.PerRPCCredentials.
type macaroonCredential struct {
	hex string
}

// loadMacaroon reads a binary macaroon file as lnd writes it (admin.macaroon,
// invoice.macaroon...).
func loadMacaroon(path string) (macaroonCredential, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return macaroonCredential{}, fmt.Errorf("read macaroon: %w", err)
	}
	return newMacaroonCredential(path, raw)
}

func newMacaroonCredential(path string, raw []byte) (macaroonCredential, error) {
	switch {
	case len(raw) == 0:
		return macaroonCredential{}, fmt.Errorf("macaroon %s is empty", path)
	case len(raw) > maxMacaroonSize:
		return macaroonCredential{}, fmt.Errorf("macaroon %s is %d bytes, more than a macaroon can be",
			path, len(raw))
	case raw[0] != 0x02:
		// lnd only accepts version 2 macaroons, whose binary form starts with 0x02.
		hint := ""
		if _, err := hex.DecodeString(string(raw)); err == nil {
			hint = " (it looks hex-encoded; give the binary file lnd wrote)"
		}
		return macaroonCredential{}, fmt.Errorf("macaroon %s is not a binary version 2 macaroon%s",
			path, hint)
	}
	return macaroonCredential{hex: hex.EncodeToString(raw)}, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (m macaroonCredential) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"macaroon": m.hex}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the macaroon is a
// bearer token and must never travel in the clear.
func (m macaroonCredential) RequireTransportSecurity() bool { return true }
