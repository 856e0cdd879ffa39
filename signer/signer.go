package signer

import (
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/bankd/bankd/wallet/descriptor"
)

// Limits are the signer's own caps, independent of what bankd plans.
type Limits struct {
	// MaxFeeSat is the largest fee a batch may pay.
	MaxFeeSat int64
	// MaxFeeRateSatKvB is the largest fee rate, in sat per 1,000 virtual bytes.
	MaxFeeRateSatKvB int64
	// DailyLimitSat is the most the withdrawals signed within one UTC day may add up to.
	DailyLimitSat int64
}

// maxFeeRateSatKvB bounds a configured fee rate cap (10,000 sat/vB) so that the checks'
// arithmetic cannot overflow.
const maxFeeRateSatKvB = 10_000_000

func (l Limits) validate() error {
	switch {
	case l.MaxFeeSat <= 0 || l.MaxFeeSat > btcutil.MaxSatoshi:
		return fmt.Errorf("max fee %d sat: want 1..%d", l.MaxFeeSat, int64(btcutil.MaxSatoshi))
	case l.MaxFeeRateSatKvB <= 0 || l.MaxFeeRateSatKvB > maxFeeRateSatKvB:
		return fmt.Errorf("max fee rate %d sat/kvB: want 1..%d", l.MaxFeeRateSatKvB, maxFeeRateSatKvB)
	case l.DailyLimitSat <= 0 || l.DailyLimitSat > btcutil.MaxSatoshi:
		return fmt.Errorf("daily limit %d sat: want 1..%d", l.DailyLimitSat, int64(btcutil.MaxSatoshi))
	}
	return nil
}

// Config is what a Signer needs.
type Config struct {
	Wallet *Wallet
	Ledger *Ledger
	Limits Limits
	// Now is the clock of the daily limit, whose days are UTC days; nil means time.Now.
	Now func() time.Time
	// SweepTo, for the signer of a DEPOSIT wallet, is where its sweeps may go: the bankd id and
	// the public descriptor of the hot wallet, whose change branch a sweep's one output pays.
	// Without it, sweeps are refused.
	SweepTo *SweepDestination
	// Vault, for the signer of the HOT wallet, is the cold vault its vault moves may pay: the
	// bankd id and the receive branch of its public multisig descriptor. Without it, vault
	// moves are refused.
	Vault *VaultDestination
}

// VaultDestination is the cold wallet a hot wallet's vault moves pay.
type VaultDestination struct {
	WalletID string
	// Receive is the cold wallet's receive branch (its descriptor, or its first multipath value).
	Receive *descriptor.Descriptor
}

// SweepDestination is the hot wallet a deposit wallet's sweeps pay.
type SweepDestination struct {
	WalletID string
	// Change is the hot wallet's change branch (its descriptor's second multipath value).
	Change *descriptor.Descriptor
}

// Signer checks and signs the payout batches of one hot wallet. It is safe for concurrent use
// (the ledger serialises what must be).
type Signer struct {
	wallet *Wallet
	ledger *Ledger
	limits Limits
	now    func() time.Time
	sweep  *SweepDestination
	vault  *VaultDestination
}

// New returns a signer of cfg.Wallet under cfg.Limits, counting its outflow in cfg.Ledger.
func New(cfg Config) (*Signer, error) {
	switch {
	case cfg.Wallet == nil:
		return nil, errors.New("signer: no wallet")
	case cfg.Ledger == nil:
		return nil, errors.New("signer: no ledger")
	}
	if err := cfg.Limits.validate(); err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Signer{wallet: cfg.Wallet, ledger: cfg.Ledger, limits: cfg.Limits, now: now, sweep: cfg.SweepTo, vault: cfg.Vault}, nil
}

// Limits returns the signer's caps.
func (s *Signer) Limits() Limits { return s.limits }

// Wallet returns the signer's wallet.
func (s *Signer) Wallet() *Wallet { return s.wallet }
