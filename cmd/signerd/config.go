package main

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/internal/cliutil"
	"github.com/bankd/bankd/signer"
)

// Limits on signerd.hcl.
const (
	maxConfigBytes = 64 << 10
	maxFieldLen    = 256
	// maxDescriptorLen leaves room for a descriptor with its origin and checksum.
	maxDescriptorLen      = 1024
	defaultPollInterval   = 2 * time.Second
	minPollInterval       = 100 * time.Millisecond
	maxPollInterval       = 10 * time.Minute
	maxFeeRateCapSatPerVB = 10_000
)

// networks are the chain networks signerd.hcl may name, as in cluster.hcl.
var networks = map[string]*chaincfg.Params{
	"mainnet": &chaincfg.MainNetParams,
	"testnet": &chaincfg.TestNet3Params,
	"signet":  &chaincfg.SigNetParams,
	"regtest": &chaincfg.RegressionNetParams,
}

const networkNames = "mainnet, testnet, signet, regtest"

// Config is a parsed and validated signerd.hcl.
type Config struct {
	// Path is the file the configuration was read from.
	Path string
	// Network is the chain the hot wallet is on.
	Network *chaincfg.Params
	// APIURL is one bankd node's API (https://host:port); followers forward what they must.
	APIURL string
	// CAFile is the cluster CA's certificate; "" trusts the system's roots.
	CAFile string
	// TokenFile holds the API bearer token (operator scope, to submit signatures).
	TokenFile string
	// WalletID is the bankd wallet whose batches this signer signs.
	WalletID string
	// Descriptor is the hot wallet's public descriptor, wpkh([fp/84'/c'/0']xpub/<0;1>/*).
	Descriptor string
	// KeyFile holds the master extended private key (chmod 600).
	KeyFile string
	// Limits are the signer's caps.
	Limits signer.Limits
	// StateFile is the signer's ledger of signed batches (the daily limit's counter).
	StateFile string
	// PollInterval is the wait between two looks at the planned batches.
	PollInterval time.Duration
	// SweepToWalletID and SweepToDescriptor, for the signer of a DEPOSIT wallet, name the hot
	// wallet its sweeps may pay (its public descriptor); empty: sweeps are refused.
	SweepToWalletID   string
	SweepToDescriptor string
	// ColdWalletID and ColdDescriptor, for the signer of the HOT wallet, name the cold vault a
	// vault move may pay (the next receive address of its public multisig descriptor); empty:
	// vault moves are refused.
	ColdWalletID   string
	ColdDescriptor string
}

// configFile is signerd.hcl as written.
type configFile struct {
	Network         string  `hcl:"network"`
	APIURL          string  `hcl:"api_url"`
	CAFile          string  `hcl:"ca_file,optional"`
	TokenFile       string  `hcl:"token_file"`
	WalletID        string  `hcl:"wallet_id"`
	Descriptor      string  `hcl:"descriptor"`
	KeyFile         string  `hcl:"key_file"`
	MaxFeeSat       int64   `hcl:"max_fee_sat"`
	MaxFeeRateSatVB float64 `hcl:"max_fee_rate_sat_vb"`
	DailyLimitSat   int64   `hcl:"daily_limit_sat"`
	StateFile       string  `hcl:"state_file"`
	PollInterval    string  `hcl:"poll_interval,optional"`
	SweepToWalletID string  `hcl:"sweep_to_wallet_id,optional"`
	SweepToDesc     string  `hcl:"sweep_to_descriptor,optional"`
	ColdWalletID    string  `hcl:"cold_wallet_id,optional"`
	ColdDescriptor  string  `hcl:"cold_descriptor,optional"`
}

// LoadConfig reads and validates signerd.hcl at path. Relative paths in it are relative to the
// file's directory.
func LoadConfig(path string) (*Config, error) {
	src, abs, err := cliutil.ReadConfigFile(path, maxConfigBytes)
	if err != nil {
		return nil, err
	}
	return ParseConfig(src, abs)
}

// ParseConfig parses and validates signerd.hcl source; filename names it in errors and is the
// base of relative paths.
func ParseConfig(src []byte, filename string) (*Config, error) {
	if len(src) > maxConfigBytes {
		return nil, fmt.Errorf("config %s is %d bytes, more than the %d allowed", filename, len(src), maxConfigBytes)
	}
	var raw configFile
	if err := cliutil.DecodeHCL(src, filename, &raw); err != nil {
		return nil, err
	}
	cfg, err := raw.validate(filepath.Dir(filename))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	cfg.Path = filename
	return cfg, nil
}

func (raw *configFile) validate(baseDir string) (*Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cfg := &Config{
		WalletID:          strings.TrimSpace(raw.WalletID),
		Descriptor:        strings.TrimSpace(raw.Descriptor),
		PollInterval:      defaultPollInterval,
		SweepToWalletID:   strings.TrimSpace(raw.SweepToWalletID),
		SweepToDescriptor: strings.TrimSpace(raw.SweepToDesc),
		ColdWalletID:      strings.TrimSpace(raw.ColdWalletID),
		ColdDescriptor:    strings.TrimSpace(raw.ColdDescriptor),
	}
	if (cfg.ColdWalletID == "") != (cfg.ColdDescriptor == "") || len(cfg.ColdWalletID) > maxFieldLen || len(cfg.ColdDescriptor) > maxDescriptorLen {
		bad("cold_wallet_id and cold_descriptor: give both (the cold vault a vault move may pay) or neither")
	}
	if (cfg.SweepToWalletID == "") != (cfg.SweepToDescriptor == "") || len(cfg.SweepToWalletID) > maxFieldLen || len(cfg.SweepToDescriptor) > maxDescriptorLen {
		bad("sweep_to_wallet_id and sweep_to_descriptor: give both (the hot wallet a deposit wallet's sweeps pay) or neither")
	}

	net, ok := networks[raw.Network]
	if !ok {
		bad("network %q: want one of %s", raw.Network, networkNames)
	}
	cfg.Network = net

	if u, err := cliutil.CheckAPIURL(raw.APIURL, "signerd"); err != nil {
		errs = append(errs, err)
	} else {
		cfg.APIURL = u
	}

	switch {
	case cfg.WalletID == "" || len(cfg.WalletID) > maxFieldLen:
		bad("wallet_id: want 1..%d characters", maxFieldLen)
	case cfg.Descriptor == "" || len(cfg.Descriptor) > maxDescriptorLen:
		bad("descriptor: want the hot wallet's public descriptor (at most %d characters)", maxDescriptorLen)
	}

	paths := []struct {
		name     string
		value    string
		dst      *string
		optional bool
	}{
		{"ca_file", raw.CAFile, &cfg.CAFile, true},
		{"token_file", raw.TokenFile, &cfg.TokenFile, false},
		{"key_file", raw.KeyFile, &cfg.KeyFile, false},
		{"state_file", raw.StateFile, &cfg.StateFile, false},
	}
	for _, p := range paths {
		switch {
		case p.value == "" && p.optional:
		case p.value == "" || len(p.value) > maxFieldLen:
			bad("%s: want a path of 1..%d characters", p.name, maxFieldLen)
		default:
			*p.dst = cliutil.ResolvePath(baseDir, p.value)
		}
	}

	cfg.Limits = signer.Limits{MaxFeeSat: raw.MaxFeeSat, DailyLimitSat: raw.DailyLimitSat}
	if raw.MaxFeeSat <= 0 || raw.MaxFeeSat > btcutil.MaxSatoshi {
		bad("max_fee_sat %d: want 1..%d", raw.MaxFeeSat, int64(btcutil.MaxSatoshi))
	}
	if raw.DailyLimitSat <= 0 || raw.DailyLimitSat > btcutil.MaxSatoshi {
		bad("daily_limit_sat %d: want 1..%d", raw.DailyLimitSat, int64(btcutil.MaxSatoshi))
	}
	if math.IsNaN(raw.MaxFeeRateSatVB) || raw.MaxFeeRateSatVB < 0.001 || raw.MaxFeeRateSatVB > maxFeeRateCapSatPerVB {
		bad("max_fee_rate_sat_vb %v: want 0.001..%d", raw.MaxFeeRateSatVB, maxFeeRateCapSatPerVB)
	} else {
		cfg.Limits.MaxFeeRateSatKvB = int64(math.Round(raw.MaxFeeRateSatVB * 1000))
	}

	if raw.PollInterval != "" {
		d, err := time.ParseDuration(raw.PollInterval)
		switch {
		case err != nil:
			bad("poll_interval %q is not a duration such as \"2s\"", raw.PollInterval)
		case d < minPollInterval || d > maxPollInterval:
			bad("poll_interval %s: want %s..%s", d, minPollInterval, maxPollInterval)
		default:
			cfg.PollInterval = d
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}
