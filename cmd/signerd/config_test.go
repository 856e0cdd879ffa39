package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
)

// goodConfig is a complete signerd.hcl; the tests replace one line at a time.
const goodConfig = `
network             = "regtest"
api_url             = "https://127.0.0.1:7201"
ca_file             = "tls/ca.crt"
token_file          = "signer.token"
wallet_id           = "hot"
descriptor          = "wpkh([d34db33f/84'/1'/0']tpubD6NzVbkrYhZ4WaWSyoBvQwbpLkojyoTZPRsgXELWz3Popb3qkjcJyJUGLnL4qHHoQvao8ESaAstxYSnhyswJ76uZPStJRJCTKvosUCJZL5B/<0;1>/*)"
key_file            = "/etc/signerd/master.key"
max_fee_sat         = 50000
max_fee_rate_sat_vb = 25.5
daily_limit_sat     = 10000000
state_file          = "state/signerd.json"
poll_interval       = "5s"
`

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "signerd.hcl")
	cfg, err := ParseConfig([]byte(goodConfig), file)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"network", cfg.Network, &chaincfg.RegressionNetParams},
		{"api_url", cfg.APIURL, "https://127.0.0.1:7201"},
		{"relative ca_file, from the file's directory", cfg.CAFile, filepath.Join(dir, "tls/ca.crt")},
		{"relative token_file", cfg.TokenFile, filepath.Join(dir, "signer.token")},
		{"absolute key_file", cfg.KeyFile, "/etc/signerd/master.key"},
		{"state_file", cfg.StateFile, filepath.Join(dir, "state/signerd.json")},
		{"wallet_id", cfg.WalletID, "hot"},
		{"max_fee_sat", cfg.Limits.MaxFeeSat, int64(50_000)},
		{"max_fee_rate_sat_vb in sat/kvB", cfg.Limits.MaxFeeRateSatKvB, int64(25_500)},
		{"daily_limit_sat", cfg.Limits.DailyLimitSat, int64(10_000_000)},
		{"poll_interval", cfg.PollInterval, 5 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseConfigDefaults(t *testing.T) {
	src := without(goodConfig, "poll_interval", "ca_file")
	cfg, err := ParseConfig([]byte(src), "signerd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PollInterval != 2*time.Second {
		t.Errorf("poll_interval defaults to %s, want 2s", cfg.PollInterval)
	}
	if cfg.CAFile != "" {
		t.Errorf("ca_file defaults to %q, want \"\" (the system's roots)", cfg.CAFile)
	}
}

func TestParseConfigRefuses(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr string
	}{
		{"plain http", replace(goodConfig, "api_url", `"http://127.0.0.1:7201"`), "want https://host:port"},
		{"an api_url with a path", replace(goodConfig, "api_url", `"https://bank.example/api"`), "want https://host:port"},
		{"an unknown network", replace(goodConfig, "network", `"mainnet3"`), `network "mainnet3"`},
		{"a missing key_file", without(goodConfig, "key_file"), `"key_file" is required`},
		{"a missing wallet_id", without(goodConfig, "wallet_id"), `"wallet_id" is required`},
		{"an unknown attribute", goodConfig + "\nmax_fee = 1\n", `"max_fee" is not expected`},
		{"a zero fee cap", replace(goodConfig, "max_fee_sat", "0"), "max_fee_sat 0"},
		{"a fractional fee cap", replace(goodConfig, "max_fee_sat", "1.5"), "value must be a whole number"},
		{"a negative daily limit", replace(goodConfig, "daily_limit_sat", "-1"), "daily_limit_sat -1"},
		{"a daily limit above all bitcoin", replace(goodConfig, "daily_limit_sat", "2100000000000001"), "daily_limit_sat 2100000000000001"},
		{"a fee rate cap of zero", replace(goodConfig, "max_fee_rate_sat_vb", "0"), "max_fee_rate_sat_vb 0"},
		{"a fee rate cap too high", replace(goodConfig, "max_fee_rate_sat_vb", "20000"), "max_fee_rate_sat_vb 20000"},
		{"a poll interval that is not a duration", replace(goodConfig, "poll_interval", `"often"`), `poll_interval "often"`},
		{"a poll interval too short", replace(goodConfig, "poll_interval", `"1ms"`), "poll_interval 1ms"},
		{"HCL that does not parse", goodConfig + "\n{", "signerd.hcl:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src), "signerd.hcl")
			if err == nil {
				t.Fatal("ParseConfig succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseConfig = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// replace sets attribute name of an HCL source to value.
func replace(src, name, value string) string {
	return without(src, name) + name + " = " + value + "\n"
}

// without drops the lines of the named attributes.
func without(src string, names ...string) string {
	var out []string
	for _, line := range strings.Split(src, "\n") {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(strings.TrimSpace(line), n+" ") {
				keep = false
			}
		}
		if keep {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func TestExampleConfigParses(t *testing.T) {
	cfg, err := LoadConfig("signerd.example.hcl")
	if err != nil {
		t.Fatalf("the example configuration does not parse: %v", err)
	}
	if cfg.WalletID != "hot" || cfg.PollInterval != 2*time.Second {
		t.Errorf("example: wallet %q, poll interval %s", cfg.WalletID, cfg.PollInterval)
	}
}
