package coinselect

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// p2wpkh sizes: an input is 68 vB, an output 31 vB, a spend of the change later 68 vB.
var base = Params{FeeRate: 10_000, LongTermFeeRate: 5_000, BaseVBytes: 11 + 31, ChangeVBytes: 31, ChangeSpendVBytes: 68, MinChange: 546}

func coins(values ...int64) []Coin {
	out := make([]Coin, len(values))
	for i, v := range values {
		out[i] = Coin{ID: fmt.Sprintf("c%d", i), Value: v, InputVBytes: 68}
	}
	return out
}

// checkResult holds for every selection: the coins are distinct and offered, they pay target,
// fee and change exactly, the fee covers the transaction's size, and change is 0 or not dust.
func checkResult(t *testing.T, offered []Coin, p Params, r Result) {
	t.Helper()
	seen := map[string]bool{}
	known := map[string]bool{}
	for _, c := range offered {
		known[c.ID] = true
	}
	var total, vbytes int64 = 0, p.BaseVBytes
	for _, c := range r.Coins {
		if seen[c.ID] || !known[c.ID] {
			t.Fatalf("coin %s selected twice or never offered", c.ID)
		}
		seen[c.ID] = true
		total += c.Value
		vbytes += c.InputVBytes
	}
	if r.Change > 0 {
		vbytes += p.ChangeVBytes
	}
	if total != p.Target+r.Fee+r.Change {
		t.Fatalf("%d in != %d target + %d fee + %d change", total, p.Target, r.Fee, r.Change)
	}
	if r.Fee < fee(vbytes, p.FeeRate) {
		t.Fatalf("fee %d below %d for %d vB", r.Fee, fee(vbytes, p.FeeRate), vbytes)
	}
	if r.Change != 0 && r.Change < p.MinChange {
		t.Fatalf("change %d is below %d", r.Change, p.MinChange)
	}
}

func TestSelect(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct {
		name      string
		coins     []Coin
		target    int64
		algorithm string
		want      []string // the coins chosen, when only one answer is right
		err       error
	}{
		// 10 sat/vB: base 42 vB = 420 sat, an input 680 sat. 100,000 + 420 + 680 = 101,100.
		{"one coin pays exactly, no change", coins(50_000, 101_100, 300_000), 100_000, "bnb", []string{"c1"}, nil},
		{"two coins pay exactly", coins(60_890, 40_890, 7_000), 100_000, "bnb", []string{"c0", "c1"}, nil},
		{"no exact subset: a random draw with change", coins(300_000, 500_000), 100_000, "random", nil, nil},
		{"not enough", coins(50_000, 40_000), 100_000, "", nil, ErrInsufficientFunds},
		{"coins worth less than their input fee are not spent", coins(600, 680), 1, "", nil, ErrInsufficientFunds},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			p.Target = tt.target
			r, err := Select(tt.coins, p, rng)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Select = %+v, %v; want %v", r, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, tt.coins, p, r)
			if r.Algorithm != tt.algorithm {
				t.Fatalf("algorithm %q, want %q (%+v)", r.Algorithm, tt.algorithm, r)
			}
			if tt.want != nil {
				var got []string
				for _, c := range r.Coins {
					got = append(got, c.ID)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("chose %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// Branch-and-bound keeps the changeless subset of least waste, not the first it finds (the
// search meets the big coin first). At 10 sat/vB over a long-term 5, an input wastes 340 sat.
func TestBranchAndBoundMinimisesWaste(t *testing.T) {
	for _, tt := range []struct {
		name string
		big  int64
		want string
	}{
		{"one input and 100 sat excess (440) beat two exact inputs (680)", 101_200, "[c2]"},
		{"two exact inputs (680) beat one input and 450 sat excess (790)", 101_550, "[c0 c1]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			p.Target = 100_000
			offered := coins(60_890, 40_890, tt.big)
			r, err := Select(offered, p, rand.New(rand.NewPCG(1, 2)))
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, offered, p, r)
			var got []string
			for _, c := range r.Coins {
				got = append(got, c.ID)
			}
			slices.Sort(got)
			if r.Algorithm != "bnb" || fmt.Sprint(got) != tt.want {
				t.Fatalf("chose %v by %s (waste %d), want %s", got, r.Algorithm, r.Waste, tt.want)
			}
		})
	}
}

func TestSelectRefusesBadInput(t *testing.T) {
	p := base
	p.Target = 1000
	for name, tt := range map[string]struct {
		coins []Coin
		p     Params
	}{
		"zero target":      {coins(5000), Params{FeeRate: 1, BaseVBytes: 1, ChangeVBytes: 1}},
		"negative rate":    {coins(5000), func() Params { q := p; q.FeeRate = -1; return q }()},
		"a zero-size coin": {[]Coin{{ID: "x", Value: 5000}}, p},
		"a negative coin":  {[]Coin{{ID: "x", Value: -5, InputVBytes: 68}}, p},
	} {
		if _, err := Select(tt.coins, tt.p, rand.New(rand.NewPCG(1, 2))); !errors.Is(err, ErrBadParams) {
			t.Errorf("%s: %v, want ErrBadParams", name, err)
		}
	}
}

// Whatever the coins and the target, a selection balances, pays its size and makes no dust.
func TestSelectProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for run := 0; run < 2000; run++ {
		n := 1 + rng.IntN(30)
		offered := make([]Coin, n)
		for i := range offered {
			offered[i] = Coin{ID: fmt.Sprint(i), Value: 1 + rng.Int64N(1_000_000), InputVBytes: []int64{58, 68, 91, 148}[rng.IntN(4)]}
		}
		p := base
		p.FeeRate, p.LongTermFeeRate = 1000+rng.Int64N(50_000), 1000+rng.Int64N(20_000)
		p.Target = 1 + rng.Int64N(3_000_000)
		r, err := Select(offered, p, rng)
		if errors.Is(err, ErrInsufficientFunds) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, offered, p, r)
	}
}

func BenchmarkSelect(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	offered := make([]Coin, 100_000)
	for i := range offered {
		offered[i] = Coin{ID: fmt.Sprint(i), Value: 1000 + rng.Int64N(10_000_000), InputVBytes: 68}
	}
	p := base
	p.Target = 500_000_000
	for b.Loop() {
		if _, err := Select(offered, p, rng); err != nil {
			b.Fatal(err)
		}
	}
}
