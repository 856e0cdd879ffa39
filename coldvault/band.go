package coldvault

import (
	"errors"
	"fmt"
	"math"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Band is where the hot wallet should stay: in satoshis, or as shares of the customer
// liabilities (one style, not both).
type Band struct {
	MinSat, TargetSat, MaxSat       int64
	MinShare, TargetShare, MaxShare float64
}

// Shares reports whether the band is in shares of the customer liabilities.
func (b Band) Shares() bool { return b.MaxShare > 0 }

// ErrBadBand is returned by Validate for a band that makes no sense.
var ErrBadBand = errors.New("coldvault: band")

// maxSat is the most satoshis there will ever be.
const maxSat = 21_000_000 * 100_000_000

// Validate checks min < target < max in one style.
func (b Band) Validate() error {
	sats := b.MinSat != 0 || b.TargetSat != 0 || b.MaxSat != 0
	shares := b.MinShare != 0 || b.TargetShare != 0 || b.MaxShare != 0
	switch {
	case sats == shares:
		return fmt.Errorf("%w: give min_sat, target_sat and max_sat, or min_share, target_share and max_share", ErrBadBand)
	case sats && !(0 <= b.MinSat && b.MinSat < b.TargetSat && b.TargetSat < b.MaxSat && b.MaxSat <= maxSat):
		return fmt.Errorf("%w: want 0 <= min_sat < target_sat < max_sat <= %d, got %d, %d, %d", ErrBadBand, int64(maxSat), b.MinSat, b.TargetSat, b.MaxSat)
	case shares && !(0 <= b.MinShare && b.MinShare < b.TargetShare && b.TargetShare < b.MaxShare && b.MaxShare <= 1):
		return fmt.Errorf("%w: want 0 <= min_share < target_share < max_share <= 1, got %g, %g, %g", ErrBadBand, b.MinShare, b.TargetShare, b.MaxShare)
	}
	for _, v := range []float64{b.MinShare, b.TargetShare, b.MaxShare} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: shares must be numbers", ErrBadBand)
		}
	}
	return nil
}

// Sats returns the band in satoshis for the given customer liabilities.
func (b Band) Sats(liabilitiesSat int64) (minSat, targetSat, maxSat int64) {
	if !b.Shares() {
		return b.MinSat, b.TargetSat, b.MaxSat
	}
	l := float64(max(liabilitiesSat, 0))
	return int64(b.MinShare * l), int64(b.TargetShare * l), int64(b.MaxShare * l)
}

// Decide says which move brings a hot wallet holding hotSat back to the target: TO_COLD above
// the maximum, TO_HOT below the minimum, none (UNSPECIFIED) inside the band.
func (b Band) Decide(hotSat, liabilitiesSat int64) (bankdv1.VaultDirection, int64) {
	lo, target, hi := b.Sats(liabilitiesSat)
	switch {
	case hotSat > hi:
		return bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD, hotSat - target
	case hotSat < lo:
		return bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT, target - hotSat
	}
	return bankdv1.VaultDirection_VAULT_DIRECTION_UNSPECIFIED, 0
}
