package lnd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testMacaroon starts like a binary version 2 macaroon; lnd checks the rest, not we.
var testMacaroon = []byte{0x02, 0x01, 0x03, 'l', 'n', 'd', 0x02, 0x04, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00}

func TestMacaroonCredential(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		path    string
		wantErr string // "" when valid
	}{
		{name: "binary v2", path: write("admin.macaroon", testMacaroon)},
		{name: "missing file", path: filepath.Join(dir, "nope.macaroon"), wantErr: "read macaroon"},
		{name: "empty", path: write("empty.macaroon", nil), wantErr: "is empty"},
		{name: "hex text", path: write("hex.macaroon", []byte("0201036c6e64")), wantErr: "looks hex-encoded"},
		{name: "v1 base64", path: write("v1.macaroon", []byte("MDAxY2xvY2F0aW9u")), wantErr: "not a binary version 2 macaroon"},
		{name: "huge", path: write("huge.macaroon", append([]byte{0x02}, make([]byte, maxMacaroonSize)...)), wantErr: "more than a macaroon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cred, err := loadMacaroon(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			md, err := cred.GetRequestMetadata(context.Background(), "https://lnd/lnrpc.Lightning/GetInfo")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := md["macaroon"], "0201036c6e640204deadbeef0000"; got != want || len(md) != 1 {
				t.Fatalf("metadata = %v, want macaroon=%s", md, want)
			}
			if !cred.RequireTransportSecurity() {
				t.Fatal("a macaroon must not be sent without TLS")
			}
		})
	}
}
