package coldvault

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bankd/bankd/internal/cliutil"
)

// Limits on coldvault.hcl.
const (
	maxConfigBytes      = 64 << 10
	maxFieldLen         = 256
	defaultPollInterval = 10 * time.Second
	minPollInterval     = 100 * time.Millisecond
)

// Config is a parsed and validated coldvault.hcl.
type Config struct {
	// APIURL is one bankd node's API (https://host:port); CAFile the cluster CA that signs it.
	APIURL string
	CAFile string
	// TokenFile holds an operator-scope API token of coldvault's own identity (not the one
	// that approves its proposals).
	TokenFile string
	// HotWalletID is the cluster's hot wallet (payouts.wallet), ColdWalletID the COLD wallet.
	HotWalletID  string
	ColdWalletID string
	Band         Band
	PollInterval time.Duration
	// MetricsAddr is where `coldvault run` serves GET /metrics (host:port); empty serves none.
	MetricsAddr string
}

type configFile struct {
	APIURL       string     `hcl:"api_url"`
	CAFile       string     `hcl:"ca_file,optional"`
	TokenFile    string     `hcl:"token_file"`
	HotWalletID  string     `hcl:"hot_wallet_id"`
	ColdWalletID string     `hcl:"cold_wallet_id"`
	PollInterval string     `hcl:"poll_interval,optional"`
	MetricsAddr  string     `hcl:"metrics_addr,optional"`
	Band         bandConfig `hcl:"band,block"`
}

type bandConfig struct {
	MinSat      int64   `hcl:"min_sat,optional"`
	TargetSat   int64   `hcl:"target_sat,optional"`
	MaxSat      int64   `hcl:"max_sat,optional"`
	MinShare    float64 `hcl:"min_share,optional"`
	TargetShare float64 `hcl:"target_share,optional"`
	MaxShare    float64 `hcl:"max_share,optional"`
}

// LoadConfig reads and validates coldvault.hcl at path; relative paths in it are relative to
// the file's directory.
func LoadConfig(path string) (*Config, error) {
	src, abs, err := cliutil.ReadConfigFile(path, maxConfigBytes)
	if err != nil {
		return nil, err
	}
	return ParseConfig(src, abs)
}

// ParseConfig parses and validates coldvault.hcl source; filename names it in errors and is
// the base of relative paths.
func ParseConfig(src []byte, filename string) (*Config, error) {
	if len(src) > maxConfigBytes {
		return nil, fmt.Errorf("config %s is %d bytes, more than the %d allowed", filename, len(src), maxConfigBytes)
	}
	var raw configFile
	if err := cliutil.DecodeHCL(src, filename, &raw); err != nil {
		return nil, err
	}
	return raw.validate(filepath.Dir(filename))
}

func (raw configFile) validate(baseDir string) (*Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cfg := &Config{
		HotWalletID: strings.TrimSpace(raw.HotWalletID), ColdWalletID: strings.TrimSpace(raw.ColdWalletID), PollInterval: defaultPollInterval,
		Band: Band{MinSat: raw.Band.MinSat, TargetSat: raw.Band.TargetSat, MaxSat: raw.Band.MaxSat,
			MinShare: raw.Band.MinShare, TargetShare: raw.Band.TargetShare, MaxShare: raw.Band.MaxShare},
	}
	if u, err := cliutil.CheckAPIURL(raw.APIURL, "coldvault"); err != nil {
		errs = append(errs, err)
	} else {
		cfg.APIURL = u
	}
	for _, f := range []struct{ name, v string }{{"hot_wallet_id", cfg.HotWalletID}, {"cold_wallet_id", cfg.ColdWalletID}} {
		if f.v == "" || len(f.v) > maxFieldLen {
			bad("%s: want 1..%d characters", f.name, maxFieldLen)
		}
	}
	if cfg.HotWalletID != "" && cfg.HotWalletID == cfg.ColdWalletID {
		bad("cold_wallet_id: %q is the hot wallet", cfg.ColdWalletID)
	}
	if raw.TokenFile == "" || len(raw.TokenFile) > maxFieldLen {
		bad("token_file: want a path of 1..%d characters", maxFieldLen)
	} else {
		cfg.TokenFile = cliutil.ResolvePath(baseDir, raw.TokenFile)
	}
	if raw.CAFile != "" {
		cfg.CAFile = cliutil.ResolvePath(baseDir, raw.CAFile)
	}
	if raw.PollInterval != "" {
		d, err := time.ParseDuration(raw.PollInterval)
		if err != nil || d < minPollInterval || d > time.Hour {
			bad("poll_interval %q: want a duration between %s and 1h", raw.PollInterval, minPollInterval)
		} else {
			cfg.PollInterval = d
		}
	}
	if raw.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(raw.MetricsAddr); err != nil || port == "" || len(raw.MetricsAddr) > maxFieldLen {
			bad("metrics_addr %q: want host:port, e.g. 127.0.0.1:9464", raw.MetricsAddr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("metrics_addr %q: port %q is not a port number", raw.MetricsAddr, port)
		} else {
			cfg.MetricsAddr = raw.MetricsAddr
		}
	}
	if err := cfg.Band.Validate(); err != nil {
		bad("band: %v", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}
