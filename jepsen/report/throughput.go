package report

import (
	"cmp"
	"fmt"
	"math"
	"time"

	"github.com/bankd/bankd/jepsen/history"
)

// bucket is the width of a throughput sample.
const bucket = time.Second

// throughputSVG draws completed operations per second (1 s buckets by completion time), one
// line per outcome, over the fault bands. Its time axis matches latencySVG's.
func throughputSVG(pairs []history.Pair, faults []faultWindow, tmax time.Duration, name string) []byte {
	fr := newFrame(tmax)
	// n buckets; the last one ends at tmax, so it is cut short, or (when the remainder is
	// under a quarter bucket, too short to give a steady rate) stretched to up to 1.25 s.
	n := int(tmax / bucket)
	if rem := tmax - time.Duration(n)*bucket; n == 0 || rem >= bucket/4 {
		n++
	}
	outcomes := []string{"ok", "fail", "info"}
	series := map[string][]int{}
	totals := map[string]int{}
	for _, o := range outcomes {
		series[o] = make([]int, n)
	}
	for _, p := range pairs {
		if p.Complete == nil {
			continue
		}
		o := string(p.Complete.Type)
		if series[o] == nil {
			continue // not an outcome
		}
		i := min(max(int(p.Complete.Time/bucket), 0), n-1)
		series[o][i]++
		totals[o]++
	}
	last := tmax - time.Duration(n-1)*bucket // the last bucket's width
	rate := func(i, c int) float64 {
		if i == n-1 {
			return float64(c) / last.Seconds()
		}
		return float64(c) / bucket.Seconds()
	}
	peak := 0.0
	for _, o := range outcomes {
		for i, c := range series[o] {
			peak = max(peak, rate(i, c))
		}
	}
	step := niceStep(max(peak, 1), 6)
	ymax := math.Ceil(max(peak, 1)/step) * step
	y := func(v float64) float64 { return fr.bottom - v/ymax*(fr.bottom-fr.top) }

	body := &svg{}
	title := "Throughput — " + name
	body.heading(title, fmt.Sprintf("completed ops per second, in %s buckets by completion time, by outcome", bucket))
	body.f(`<g class="y-grid" stroke="#ddd">`)
	for v := step; v <= ymax+1e-9; v += step {
		body.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, fr.left, y(v), fr.right, y(v))
	}
	body.f("</g>\n")
	body.timeAxis(fr)
	body.bands(fr, faults)
	body.f(`<g class="y-ticks" text-anchor="end" fill="#333">`)
	for v := 0.0; v <= ymax+1e-9; v += step {
		body.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`, fr.left-5, y(v), fr.left, y(v))
		body.f(`<text x="%.1f" y="%.1f">%s</text>`, fr.left-8, y(v)+4, fmtNum(v))
	}
	body.f("</g>\n")
	body.yTitle(fr, "completed ops per second")

	var items []legendItem
	for _, o := range outcomes {
		col := cmp.Or(outcomeColor[o], "#555")
		body.f(`<polyline class="series" data-outcome="%s" fill="none" stroke="%s" stroke-width="1.6" stroke-linejoin="round" points="`, o, col)
		for i, c := range series[o] {
			// The bucket [i, i+1) s is drawn at its middle, the last (maybe partial) at its end.
			at := time.Duration(i)*bucket + bucket/2
			if i == n-1 {
				at = tmax
			}
			body.n(fr.x(at))
			body.WriteByte(',')
			body.n(y(rate(i, c)))
			body.WriteByte(' ')
		}
		body.f("\"/>\n")
		items = append(items, legendItem{label: fmt.Sprintf("%s (%d)", o, totals[o]), draw: func(s *svg, x, yy float64) {
			s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, x-8, yy, x+8, yy, col)
		}})
	}
	body.border(fr)
	items = append(items, faultLegend(faults)...)
	legendTop := fr.bottom + 48
	body.legend(items, legendTop)
	_, lh := legendLayout(items)
	return document(body, int(legendTop+lh+8), title)
}
