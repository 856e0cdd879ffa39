package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/bankd/bankd/jepsen/history"
)

// MaxPoints bounds the points of the latency scatter, so that latency.svg stays around 1 MB
// (about 40 bytes a point) whatever the length of the history. See downsample.
const MaxPoints = 20000

// point is one completed operation of the scatter.
type point struct {
	at      time.Duration // invocation time
	latency time.Duration // invocation to completion
	outcome string        // ok, fail or info
	f       string
}

// completedPoints are the client operations that completed, in invocation order. Operations
// that never completed have no latency; they are counted, not drawn.
func completedPoints(pairs []history.Pair) (pts []point, open int) {
	for _, p := range pairs {
		if p.Complete == nil {
			open++
			continue
		}
		pts = append(pts, point{at: p.Invoke.Time, latency: p.Complete.Time - p.Invoke.Time,
			outcome: string(p.Complete.Type), f: p.Invoke.F})
	}
	return pts, open
}

// downsample keeps at most limit points. Up to three quarters of the budget goes to fail and
// info points, which are rare and are what a reader looks for: all of them are kept when they
// fit. The rest goes to ok points, taken evenly over invocation order, so the density of the
// scatter still follows the throughput. When fail and info alone overflow their share, each is
// taken evenly too, in proportion to its count, and ok keeps a quarter of the budget.
func downsample(pts []point, limit int) []point {
	if len(pts) <= limit {
		return pts
	}
	by := map[string][]point{}
	for _, p := range pts {
		by[p.outcome] = append(by[p.outcome], p)
	}
	var others []string // every outcome but ok, in a fixed order
	for o := range by {
		if o != "ok" {
			others = append(others, o)
		}
	}
	slices.Sort(others)
	rare := len(pts) - len(by["ok"])
	var out []point
	if rare <= limit*3/4 {
		for _, o := range others {
			out = append(out, by[o]...)
		}
		out = append(out, evenly(by["ok"], limit-rare)...)
	} else {
		okBudget := min(len(by["ok"]), limit/4)
		out = append(out, evenly(by["ok"], okBudget)...)
		rest := limit - okBudget
		for _, o := range others {
			out = append(out, evenly(by[o], rest*len(by[o])/rare)...)
		}
	}
	slices.SortStableFunc(out, func(a, b point) int { return cmp.Compare(a.at, b.at) })
	return out
}

// evenly takes k of xs spread evenly over their order (all of them when k >= len(xs)).
func evenly[T any](xs []T, k int) []T {
	if k >= len(xs) {
		return xs
	}
	if k <= 0 {
		return nil
	}
	out := make([]T, 0, k)
	for i := range k {
		out = append(out, xs[i*len(xs)/k])
	}
	return out
}

// Marker shapes, one per operation kind (most frequent first); kinds beyond the list share
// the last one.
var shapes = []string{"circle", "triangle", "square", "diamond", "cross"}

// markerPath is the path of shape of radius r, relative to the point (see marker); "" for a
// circle.
func markerPath(shape string, r float64) string {
	switch shape {
	case "circle":
		return ""
	case "square":
		r *= 0.9
		return fmt.Sprintf(`m%.1f,%.1fh%.1fv%.1fh%.1fz"/>`, -r, -r, 2*r, 2*r, -2*r)
	case "triangle":
		return fmt.Sprintf(`m0,%.1fl%.1f,%.1fh%.1fz"/>`, -1.3*r, 1.2*r, 2.1*r, -2.4*r)
	case "diamond":
		d := 1.35 * r
		return fmt.Sprintf(`m0,%.1fl%.1f,%.1fl%.1f,%.1fl%.1f,%.1fz"/>`, -d, d, d, -d, d, -d, -d)
	default:
		d := 1.1 * r
		return fmt.Sprintf(`m%.1f,%.1fl%.1f,%.1fm0,%.1fl%.1f,%.1f" fill="none" stroke-width="1.2"/>`, -d, -d, 2*d, 2*d, -2*d, -2*d, 2*d)
	}
}

// marker draws one point at x, y: a circle of radius r when path is "", else path.
func (s *svg) marker(path string, r, x, y float64) {
	if path == "" {
		s.WriteString(`<circle cx="`)
		s.n(x)
		s.WriteString(`" cy="`)
		s.n(y)
		s.WriteString(`" r="`)
		s.n(r)
		s.WriteString(`"/>`)
	} else {
		s.WriteString(`<path d="M`)
		s.n(x)
		s.WriteByte(',')
		s.n(y)
		s.WriteString(path)
	}
	s.WriteByte('\n')
}

// kindsByCount lists the operation kinds, most frequent first.
func kindsByCount(pts []point) []string {
	count := map[string]int{}
	for _, p := range pts {
		count[p.f]++
	}
	var kinds []string
	for k := range count {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if c := cmp.Compare(count[b], count[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return kinds
}

func shapeOf(kinds []string, f string) string {
	i := slices.Index(kinds, f)
	return shapes[min(max(i, 0), len(shapes)-1)]
}

// latencySVG is the scatter of latency (log scale, ms) over invocation time, coloured by
// outcome, shaped by operation kind, over the fault bands.
func latencySVG(pairs []history.Pair, faults []faultWindow, tmax time.Duration, name string) []byte {
	all, open := completedPoints(pairs)
	shown := downsample(all, MaxPoints)
	kinds := kindsByCount(all)
	fr := newFrame(tmax)

	// Log domain: whole decades around the data, no finer than 1 µs.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range all {
		ms := max(float64(p.latency)/float64(time.Millisecond), 0.001)
		lo, hi = min(lo, ms), max(hi, ms)
	}
	if len(all) == 0 {
		lo, hi = 1, 1000
	}
	l0, l1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if l1 <= l0 {
		l1 = l0 + 1
	}
	y := func(ms float64) float64 {
		ms = max(ms, 0.001)
		return fr.bottom - (math.Log10(ms)-l0)/(l1-l0)*(fr.bottom-fr.top)
	}

	body := &svg{}
	title := "Latency (invoke → completion) — " + name
	sub := fmt.Sprintf("%d completed ops", len(all))
	if len(shown) < len(all) {
		sub += fmt.Sprintf(", %d drawn: every fail and info, ok sampled evenly over time", len(shown))
	}
	if open > 0 {
		sub += fmt.Sprintf("; %d never completed, not drawn", open)
	}
	body.heading(title, sub)

	// Horizontal grid: decades (labelled) and 2..9 within them.
	body.f(`<g class="y-grid">`)
	for d := l0; d <= l1; d++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow(10, d)
			if math.Log10(v) > l1+1e-9 {
				break
			}
			col := "#eee"
			if m == 1 {
				col = "#ccc"
			}
			body.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, fr.left, y(v), fr.right, y(v), col)
		}
	}
	body.f("</g>\n")
	body.timeAxis(fr)
	body.bands(fr, faults)
	body.f(`<g class="y-ticks" text-anchor="end" fill="#333">`)
	for d := l0; d <= l1; d++ {
		v := math.Pow(10, d)
		body.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`, fr.left-5, y(v), fr.left, y(v))
		body.f(`<text x="%.1f" y="%.1f">%s</text>`, fr.left-8, y(v)+4, fmtNum(v))
	}
	body.f("</g>\n")
	body.yTitle(fr, "latency (ms, log scale)")

	// Points: ok first, so that the rarer fail and info land on top.
	type group struct{ outcome, f string }
	groups := map[group][]point{}
	for _, p := range shown {
		g := group{p.outcome, p.f}
		groups[g] = append(groups[g], p)
	}
	var order []group
	for _, o := range []string{"ok", "info", "fail"} {
		for _, k := range kinds {
			if len(groups[group{o, k}]) > 0 {
				order = append(order, group{o, k})
			}
		}
	}
	var extra []group // outcomes other than ok/fail/info, should a history hold any
	for g := range groups {
		if !slices.Contains(order, g) {
			extra = append(extra, g)
		}
	}
	slices.SortFunc(extra, func(a, b group) int { return cmp.Or(cmp.Compare(a.outcome, b.outcome), cmp.Compare(a.f, b.f)) })
	order = append(order, extra...)
	var items []legendItem
	total := map[group]int{}
	for _, p := range all {
		total[group{p.outcome, p.f}]++
	}
	for _, g := range order {
		col := cmp.Or(outcomeColor[g.outcome], "#555")
		shape := shapeOf(kinds, g.f)
		// ok is the mass, drawn light; info, the rarest and most telling, larger and outlined.
		opacity, r, extra := "0.85", 2.2, ""
		switch g.outcome {
		case "ok":
			opacity = "0.45"
		case "info":
			r, extra = 3.6, ` stroke="#fff" stroke-width="0.6"`
		}
		attr := fmt.Sprintf(`fill="%s" fill-opacity="%s"%s`, col, opacity, extra)
		if shape == "cross" {
			attr = fmt.Sprintf(`stroke="%s" stroke-opacity="%s"`, col, opacity)
		}
		path := markerPath(shape, r)
		body.f(`<g class="points" data-outcome="%s" data-f="%s" %s>`+"\n", esc(g.outcome), esc(g.f), attr)
		for _, p := range groups[g] {
			body.marker(path, r, fr.x(p.at), y(float64(p.latency)/float64(time.Millisecond)))
		}
		body.f("</g>\n")
		label := fmt.Sprintf("%s %s (%d", g.outcome, g.f, total[g])
		if n := len(groups[g]); n < total[g] {
			label += fmt.Sprintf(", %d drawn", n)
		}
		label += ")"
		items = append(items, legendItem{label: label, draw: func(s *svg, x, yy float64) {
			s.f(`<g %s>`, attr)
			s.marker(path, r, x, yy)
			s.f(`</g>`)
		}})
	}
	body.border(fr)
	items = append(items, faultLegend(faults)...)
	legendTop := fr.bottom + 48
	body.legend(items, legendTop)
	_, lh := legendLayout(items)
	return document(body, int(legendTop+lh+8), title)
}
