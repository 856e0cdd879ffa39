package main

import (
	"math"
	"testing"
)

// TestHistogramQuantileInterpolatesWithinTheBucket checks the estimate against hand-computed
// values for a histogram whose deltas between two scrapes are known.
func TestHistogramQuantileInterpolatesWithinTheBucket(t *testing.T) {
	earlier := histogram{count: 10, bounds: []float64{0.001, 0.002, 0.004}, cum: []uint64{10, 10, 10}}
	later := histogram{count: 110, bounds: []float64{0.001, 0.002, 0.004}, cum: []uint64{60, 100, 108}}
	d := later.since(earlier) // 50 in (0, 1 ms], 40 in (1, 2 ms], 8 in (2, 4 ms], 2 above 4 ms
	for _, c := range []struct {
		q    float64
		want float64
	}{
		{0.25, 0.0005},      // rank 25 of the first 50, in (0, 1 ms]
		{0.5, 0.001},        // rank 50: the first bucket's top
		{0.7, 0.0015},       // rank 70: 20 of the 40 in (1, 2 ms]
		{0.94, 0.003},       // rank 94: 4 of the 8 in (2, 4 ms], halfway
		{0.99, math.Inf(1)}, // rank 99: past the last bound
	} {
		if got := d.quantile(c.q); math.Abs(got-c.want) > 1e-12 && !(math.IsInf(got, 1) && math.IsInf(c.want, 1)) {
			t.Errorf("q%.2f = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (histogram{}).quantile(0.5); !math.IsNaN(got) {
		t.Errorf("empty histogram's median = %v, want NaN", got)
	}
}
