package node

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// lndBlock renders an lnd block whose fields can be overridden one at a time; "-" leaves a field
// out.
func lndBlock(id string, override map[string]string) string {
	fields := map[string]string{
		"address":  `"127.0.0.1:10009"`,
		"tls_cert": `"/etc/lnd/` + id + `/tls.cert"`,
		"macaroon": `"/etc/lnd/` + id + `/bankd.macaroon"`,
	}
	for k, v := range override {
		fields[k] = v
	}
	var b strings.Builder
	b.WriteString("lnd \"" + id + "\" {\n")
	for _, k := range []string{"address", "tls_cert", "macaroon", "extra"} {
		if v, ok := fields[k]; ok && v != "-" {
			b.WriteString("  " + k + " = " + v + "\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func TestParseConfigReadsTheLndPool(t *testing.T) {
	src := "name = \"c\"\n" + nodeBlock("n1", 1, nil) +
		lndBlock("lnd-a", nil) +
		lndBlock("lnd_b.2", map[string]string{"address": `"lnd-b.internal:10010"`, "tls_cert": `"lnd/b/tls.cert"`, "macaroon": `"lnd/b/bankd.macaroon"`}) +
		lndBlock("C", map[string]string{"address": `"[::1]:10011"`})
	cfg, err := ParseConfig([]byte(src), "/etc/bankd/cluster.hcl")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := []LndConfig{
		{ID: "lnd-a", Address: "127.0.0.1:10009", TLSCertPath: "/etc/lnd/lnd-a/tls.cert", MacaroonPath: "/etc/lnd/lnd-a/bankd.macaroon"},
		{ID: "lnd_b.2", Address: "lnd-b.internal:10010", TLSCertPath: "/etc/bankd/lnd/b/tls.cert", MacaroonPath: "/etc/bankd/lnd/b/bankd.macaroon"},
		{ID: "C", Address: "[::1]:10011", TLSCertPath: "/etc/lnd/C/tls.cert", MacaroonPath: "/etc/lnd/C/bankd.macaroon"},
	}
	if !reflect.DeepEqual(cfg.Lightning, want) {
		t.Errorf("Lightning = %+v\nwant        %+v", cfg.Lightning, want)
	}
}

func TestParseConfigWithoutLndBlocksHasNoPool(t *testing.T) {
	cfg, err := ParseConfig([]byte("name = \"c\"\n"+nodeBlock("n1", 1, nil)), "/etc/bankd/cluster.hcl")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if len(cfg.Lightning) != 0 {
		t.Errorf("Lightning = %+v, want none", cfg.Lightning)
	}
}

func TestParseConfigResolvesRelativeLndPaths(t *testing.T) {
	tests := []struct {
		written, want string
	}{
		{"tls.cert", "/etc/bankd/tls.cert"},
		{"lnd/tls.cert", "/etc/bankd/lnd/tls.cert"},
		{"./lnd/../tls.cert", "/etc/bankd/tls.cert"},
		{"../lnd/tls.cert", "/etc/lnd/tls.cert"},
		{"/var/lib/lnd//tls.cert", "/var/lib/lnd/tls.cert"},
	}
	for _, tt := range tests {
		t.Run(tt.written, func(t *testing.T) {
			src := "name = \"c\"\n" + nodeBlock("n1", 1, nil) +
				lndBlock("lnd1", map[string]string{"tls_cert": `"` + tt.written + `"`, "macaroon": `"` + tt.written + `.mac"`})
			cfg, err := ParseConfig([]byte(src), "/etc/bankd/cluster.hcl")
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			got := cfg.Lightning[0]
			if got.TLSCertPath != tt.want || got.MacaroonPath != tt.want+".mac" {
				t.Errorf("tls_cert %q -> %q, macaroon -> %q; want %q and %q", tt.written, got.TLSCertPath, got.MacaroonPath, tt.want, tt.want+".mac")
			}
		})
	}
}

func TestLoadConfigResolvesLndPathsAgainstTheFilesDirectory(t *testing.T) {
	dir := t.TempDir()
	src := "name = \"c\"\n" + nodeBlock("n1", 1, nil) +
		lndBlock("lnd1", map[string]string{"tls_cert": `"lnd1/tls.cert"`, "macaroon": `"bankd.macaroon"`})
	path := filepath.Join(dir, "cluster.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	got := cfg.Lightning[0]
	if got.TLSCertPath != filepath.Join(dir, "lnd1", "tls.cert") || got.MacaroonPath != filepath.Join(dir, "bankd.macaroon") {
		t.Errorf("paths %q and %q, want them under %s", got.TLSCertPath, got.MacaroonPath, dir)
	}
}

func TestParseConfigRejectsBadLndBlocks(t *testing.T) {
	// The first lnd block starts on line 9, its address on line 10.
	base := "name = \"c\"\n" + nodeBlock("n1", 1, nil)
	tests := []struct {
		name string
		src  string
		// wantLine is the line the error must point at; wantText must appear in the message.
		wantLine int
		wantText string
	}{
		{"a missing address", lndBlock("lnd1", map[string]string{"address": "-"}), 9, `The argument "address" is required`},
		{"a missing tls_cert", lndBlock("lnd1", map[string]string{"tls_cert": "-"}), 9, `The argument "tls_cert" is required`},
		{"a missing macaroon", lndBlock("lnd1", map[string]string{"macaroon": "-"}), 9, `The argument "macaroon" is required`},
		{"an empty tls_cert", lndBlock("lnd1", map[string]string{"tls_cert": `""`}), 9, `lnd "lnd1": tls_cert_path: required`},
		{"an empty macaroon", lndBlock("lnd1", map[string]string{"macaroon": `""`}), 9, `lnd "lnd1": macaroon_path: required`},
		{"an id with a space", lndBlock("lnd 1", nil), 9, `"lnd 1" has a character outside [A-Za-z0-9._-]`},
		{"an id with a slash", lndBlock("lnd/1", nil), 9, `"lnd/1" has a character outside [A-Za-z0-9._-]`},
		{"an id longer than 32 characters", lndBlock(strings.Repeat("a", 33), nil), 9, "must be 1-32 characters, got 33"},
		{"an empty id", lndBlock("", nil), 9, "must be 1-32 characters, got 0"},
		{"an lnd block without an id", "lnd {\n  address = \"h:1\"\n}\n", 9, "Missing id for lnd"},
		{"an lnd block with two labels", "lnd \"a\" \"b\" {\n}\n", 9, "Extraneous label for lnd"},
		{"an address without a port", lndBlock("lnd1", map[string]string{"address": `"localhost"`}), 10, `lnd "lnd1": address "localhost": address localhost: missing port in address`},
		{"an IPv6 address without a port", lndBlock("lnd1", map[string]string{"address": `"[::1]"`}), 10, `address "[::1]": address [::1]: missing port in address`},
		{"an address with a named port", lndBlock("lnd1", map[string]string{"address": `"localhost:lnd"`}), 10, `port "lnd" is not a number between 1 and 65535`},
		{"an address with a port out of range", lndBlock("lnd1", map[string]string{"address": `"localhost:70000"`}), 10, `port "70000" is not a number between 1 and 65535`},
		{"an address without a host", lndBlock("lnd1", map[string]string{"address": `":10009"`}), 10, `address ":10009": host is empty`},
		{"an address on a wildcard", lndBlock("lnd1", map[string]string{"address": `"0.0.0.0:10009"`}), 10, "must not be a wildcard"},
		{"an empty address", lndBlock("lnd1", map[string]string{"address": `""`}), 10, `address "": missing port in address`},
		{"an address that is not a string", lndBlock("lnd1", map[string]string{"address": `["h:1"]`}), 10, "address must be a string"},
		{"an unknown lnd key", lndBlock("lnd1", map[string]string{"extra": `"x"`}), 13, `An argument named "extra" is not expected here`},
		{"a duplicate id", lndBlock("lnd1", nil) + lndBlock("lnd1", map[string]string{"address": `"127.0.0.1:10010"`}), 14, `lnd "lnd1" is defined twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + tt.src
			_, err := ParseConfig([]byte(src), "cluster.hcl")
			if err == nil {
				t.Fatalf("ParseConfig accepted:\n%s", src)
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
