// Package coinselect chooses which coins fund a payout: branch-and-bound over the coins'
// effective values for a changeless transaction of least waste, and, when no such subset
// exists, a single random draw that pays change. It is the selection step of the payout
// planner; it reads nothing but its arguments and never touches the chain or the ledger.
//
// Sizes are in virtual bytes and fee rates in satoshis per 1,000 virtual bytes, so that every
// figure is an integer and a plan can be recomputed exactly. The waste metric and the search
// follow the approach Bitcoin Core describes for its selection (Murch, "An Evaluation of Coin
// Selection Strategies", 2016): waste = input size × (fee rate − long-term fee rate) + change
// cost (or, without change, the excess given up to fees).
package coinselect

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Coin is a spendable output.
type Coin struct {
	ID    string // "txid:vout"
	Value int64  // satoshis
	// InputVBytes is what spending it adds to a transaction (e.g. 68 for p2wpkh).
	InputVBytes int64
}

// Params describe the transaction the coins must fund.
type Params struct {
	// Target is the sum of the payout's outputs.
	Target int64
	// FeeRate is the rate the transaction pays; LongTermFeeRate the rate expected when the
	// coins would otherwise be spent (it prices spending an input now rather than later).
	FeeRate, LongTermFeeRate int64 // sat per 1,000 vB
	// BaseVBytes is the transaction without inputs and without change: version, counts,
	// locktime, the payout outputs (and segwit marker).
	BaseVBytes int64
	// ChangeVBytes is the change output; ChangeSpendVBytes what spending it later costs.
	ChangeVBytes, ChangeSpendVBytes int64
	// MinChange is the smallest change worth creating (at least the dust limit); less is left
	// to fees.
	MinChange int64
}

// Result is a selection.
type Result struct {
	Coins []Coin
	// Fee is what the transaction pays; Change is 0 for a changeless one.
	Fee, Change int64
	// Waste is the selection's waste (see the package documentation).
	Waste int64
	// Algorithm is "bnb" or "random".
	Algorithm string
}

// Errors of Select.
var (
	ErrInsufficientFunds = errors.New("coinselect: the coins cannot pay the target and its fee")
	ErrBadParams         = errors.New("coinselect: invalid parameters")
)

// bnbMaxTries bounds the branch-and-bound search (Bitcoin Core uses 100,000).
const bnbMaxTries = 100_000

// fee is what size vbytes pays at rate, rounded up.
func fee(vbytes, rate int64) int64 { return (vbytes*rate + 999) / 1000 }

func (p Params) check() error {
	switch {
	case p.Target <= 0:
		return fmt.Errorf("%w: target %d must be > 0", ErrBadParams, p.Target)
	case p.FeeRate < 0 || p.LongTermFeeRate < 0:
		return fmt.Errorf("%w: negative fee rate", ErrBadParams)
	case p.BaseVBytes <= 0 || p.ChangeVBytes <= 0 || p.ChangeSpendVBytes < 0:
		return fmt.Errorf("%w: sizes must be > 0", ErrBadParams)
	case p.MinChange < 0:
		return fmt.Errorf("%w: negative min change", ErrBadParams)
	}
	return nil
}

// Select picks coins for p: first a changeless subset of least waste by branch-and-bound,
// else a single random draw with change. rng drives the draw (the planner seeds it; tests fix
// it). Coins worth no more than the fee to spend them are never used.
func Select(coins []Coin, p Params, rng *rand.Rand) (Result, error) {
	if err := p.check(); err != nil {
		return Result{}, err
	}
	var usable []Coin
	for _, c := range coins {
		if c.Value <= 0 || c.InputVBytes <= 0 {
			return Result{}, fmt.Errorf("%w: coin %s has value %d and size %d", ErrBadParams, c.ID, c.Value, c.InputVBytes)
		}
		if effective(c, p.FeeRate) > 0 {
			usable = append(usable, c)
		}
	}
	if r, ok := branchAndBound(usable, p); ok {
		return r, nil
	}
	return randomDraw(usable, p, rng)
}

func effective(c Coin, rate int64) int64 { return c.Value - fee(c.InputVBytes, rate) }

// costOfChange is what making change costs now and spending it later.
func (p Params) costOfChange() int64 {
	return fee(p.ChangeVBytes, p.FeeRate) + fee(p.ChangeSpendVBytes, p.LongTermFeeRate)
}

// inputWaste is what spending c now costs over spending it at the long-term rate.
func inputWaste(c Coin, p Params) int64 {
	return fee(c.InputVBytes, p.FeeRate) - fee(c.InputVBytes, p.LongTermFeeRate)
}

// bnb is one branch-and-bound search: depth first over the coins by descending effective
// value, each coin first included then omitted, for the subset whose effective value lands in
// [need, upper] with the least waste.
type bnb struct {
	coins     []Coin
	eff       []int64 // effective values
	iw        []int64 // input waste
	suffix    []int64 // suffix[i]: sum of eff[i:]
	need      int64
	upper     int64
	highFees  bool // fee rate above the long-term rate: more inputs only add waste
	tries     int
	path      []int
	best      []int
	bestWaste int64
	found     bool
}

func branchAndBound(coins []Coin, p Params) (Result, bool) {
	sorted := slices.Clone(coins)
	slices.SortStableFunc(sorted, func(a, b Coin) int {
		return cmpDesc(effective(a, p.FeeRate), effective(b, p.FeeRate))
	})
	s := &bnb{
		coins:    sorted,
		eff:      make([]int64, len(sorted)),
		iw:       make([]int64, len(sorted)),
		suffix:   make([]int64, len(sorted)+1),
		need:     p.Target + fee(p.BaseVBytes, p.FeeRate),
		highFees: p.FeeRate > p.LongTermFeeRate,
	}
	s.upper = s.need + p.costOfChange()
	for i, c := range sorted {
		s.eff[i], s.iw[i] = effective(c, p.FeeRate), inputWaste(c, p)
	}
	for i := len(sorted) - 1; i >= 0; i-- {
		s.suffix[i] = s.suffix[i+1] + s.eff[i]
	}
	s.search(0, 0, 0)
	if !s.found {
		return Result{}, false
	}
	r := Result{Algorithm: "bnb", Waste: s.bestWaste}
	var total int64
	for _, i := range s.best {
		r.Coins = append(r.Coins, sorted[i])
		total += sorted[i].Value
	}
	r.Fee = total - p.Target
	return r, true
}

func (s *bnb) search(i int, sum, waste int64) {
	if s.tries >= bnbMaxTries {
		return
	}
	s.tries++
	switch {
	case sum > s.upper:
		return
	case s.found && s.highFees && waste > s.bestWaste:
		return
	case sum >= s.need:
		if w := waste + sum - s.need; !s.found || w < s.bestWaste {
			s.best, s.bestWaste, s.found = slices.Clone(s.path), w, true
		}
		return
	case i == len(s.coins) || sum+s.suffix[i] < s.need:
		return
	}
	s.path = append(s.path, i)
	s.search(i+1, sum+s.eff[i], waste+s.iw[i])
	s.path = s.path[:len(s.path)-1]
	s.search(i+1, sum, waste)
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// randomDraw adds coins in random order until they pay the target, the fee and a change output
// of at least MinChange; if all of them cannot, but pay the target and the fee without change,
// the excess goes to the fee.
func randomDraw(coins []Coin, p Params, rng *rand.Rand) (Result, error) {
	order := slices.Clone(coins)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	r := Result{Algorithm: "random"}
	var total, vbytes, waste int64 = 0, p.BaseVBytes, 0
	for _, c := range order {
		r.Coins = append(r.Coins, c)
		total += c.Value
		vbytes += c.InputVBytes
		waste += inputWaste(c, p)
		withChange := fee(vbytes+p.ChangeVBytes, p.FeeRate)
		if change := total - p.Target - withChange; change >= p.MinChange && change > 0 {
			r.Fee, r.Change, r.Waste = withChange, change, waste+p.costOfChange()
			return r, nil
		}
	}
	if excess := total - p.Target - fee(vbytes, p.FeeRate); excess >= 0 {
		r.Fee, r.Waste = total-p.Target, waste+excess
		return r, nil
	}
	return Result{}, fmt.Errorf("%w: %d sat in %d usable coins, need %d plus fees", ErrInsufficientFunds, total, len(coins), p.Target)
}
