package report

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strconv"
	"time"
)

// Geometry shared by both plots, so that their time axes line up one above the other in
// index.html.
const (
	svgWidth   = 1000
	padLeft    = 78
	padRight   = 24
	padTop     = 66 // title, subtitle and two rows of fault labels
	plotHeight = 300
	legendRow  = 18
)

// Colours of the outcomes and of fault bands (by order of first appearance of a nemesis kind).
var (
	outcomeColor = map[string]string{"ok": "#1a9850", "fail": "#d73027", "info": "#7b3294"}
	bandColors   = []string{"#fdae61", "#74add1", "#fee090", "#c2a5cf", "#a6d96a", "#f4a6c6"}
)

// svg accumulates the body of one picture.
type svg struct {
	bytes.Buffer
	num []byte
}

func (s *svg) f(format string, args ...any) { fmt.Fprintf(&s.Buffer, format, args...) }

// n writes v with one decimal, without the cost of fmt (scatter plots have many points).
func (s *svg) n(v float64) {
	s.num = strconv.AppendFloat(s.num[:0], math.Round(v*10)/10, 'f', -1, 64)
	s.Write(s.num)
}

func esc(s string) string { return html.EscapeString(s) }

// heading writes the picture's title and, below it in grey, its subtitle.
func (s *svg) heading(title, subtitle string) {
	s.f(`<text x="%d" y="18" font-size="14" font-weight="bold" fill="#222">%s</text>`+"\n", padLeft, esc(title))
	if subtitle != "" {
		s.f(`<text x="%d" y="34" font-size="12" fill="#555">%s</text>`+"\n", padLeft, esc(subtitle))
	}
}

// document wraps a body in the svg element; height is the picture's.
func document(body *svg, height int, title string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(title))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", svgWidth, height)
	b.Write(body.Bytes())
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// standalone is an SVG file: the XML declaration, then the picture.
func standalone(pic []byte) []byte {
	return append([]byte(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"), pic...)
}

// frame is the plot area in pixels and its time domain [0, tmax].
type frame struct {
	left, right, top, bottom float64
	tmax                     time.Duration
}

func newFrame(tmax time.Duration) frame {
	if tmax <= 0 {
		tmax = time.Second
	}
	return frame{left: padLeft, right: svgWidth - padRight, top: padTop, bottom: padTop + plotHeight, tmax: tmax}
}

func (fr frame) x(t time.Duration) float64 {
	return fr.left + float64(t)/float64(fr.tmax)*(fr.right-fr.left)
}

// niceStep is a step of 1, 2 or 5 × 10^k that cuts span into about target pieces.
func niceStep(span float64, target int) float64 {
	if span <= 0 || target <= 0 {
		return 1
	}
	raw := span / float64(target)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// fmtNum prints a tick value without trailing zeros or exponent.
func fmtNum(v float64) string {
	if math.Abs(v) < 1e-9 {
		return "0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// timeAxis draws the x axis: frame, vertical grid, ticks in seconds and the axis title.
func (s *svg) timeAxis(fr frame) {
	secs := fr.tmax.Seconds()
	step := niceStep(secs, 12)
	s.f(`<g class="x-axis" stroke="#ddd">`)
	for v := 0.0; v <= secs+1e-9; v += step {
		x := fr.x(time.Duration(v * float64(time.Second)))
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x, fr.top, x, fr.bottom)
	}
	s.f("</g>\n")
	s.f(`<g class="x-ticks" text-anchor="middle" fill="#333">`)
	for v := 0.0; v <= secs+1e-9; v += step {
		x := fr.x(time.Duration(v * float64(time.Second)))
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`, x, fr.bottom, x, fr.bottom+5)
		s.f(`<text x="%.1f" y="%.1f">%s</text>`, x, fr.bottom+18, fmtNum(math.Round(v*1000)/1000))
	}
	s.f("</g>\n")
	s.f(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">time since the run started (s)</text>`+"\n",
		(fr.left+fr.right)/2, fr.bottom+36)
}

// yTitle writes the rotated title of the y axis.
func (s *svg) yTitle(fr frame, title string) {
	y := (fr.top + fr.bottom) / 2
	s.f(`<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle" fill="#333">%s</text>`+"\n", y, esc(title))
}

// border draws the plot area's frame.
func (s *svg) border(fr frame) {
	s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n",
		fr.left, fr.top, fr.right-fr.left, fr.bottom-fr.top)
}

// bandColor gives each nemesis kind its colour, in order of first appearance.
func bandColor(kinds []string, kind string) string {
	for i, k := range kinds {
		if k == kind {
			return bandColors[i%len(bandColors)]
		}
	}
	return bandColors[0]
}

// faultKinds lists the nemesis kinds of faults in order of first appearance.
func faultKinds(faults []faultWindow) []string {
	var kinds []string
	seen := map[string]bool{}
	for _, f := range faults {
		if !seen[f.kind] {
			seen[f.kind] = true
			kinds = append(kinds, f.kind)
		}
	}
	return kinds
}

// bands shades every fault window over the plot area and labels it above the plot with its
// nemesis kind, variant and targets (all of it, with the times, in the tooltip). A label goes
// on the lower row unless it would overlap the previous label there.
func (s *svg) bands(fr frame, faults []faultWindow) {
	kinds := faultKinds(faults)
	s.f(`<g class="faults">`)
	rowEnd := [2]float64{math.Inf(-1), math.Inf(-1)} // right end of the last label on each row
	for _, f := range faults {
		x0, x1 := fr.x(f.start), fr.x(f.end)
		x0, x1 = max(x0, fr.left), min(x1, fr.right)
		w := max(x1-x0, 1)
		col := bandColor(kinds, f.kind)
		s.f(`<rect class="fault" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.28"><title>%s</title></rect>`,
			x0, fr.top, w, fr.bottom-fr.top, col, esc(f.describe()))
		// The full label, else the kind alone, on the lower row, else the upper; else none
		// (the tooltip and the legend still tell).
	place:
		for _, label := range []string{f.label(), f.kind} {
			w := labelWidth(label, 11)
			lx := max(min(x0+2, fr.right-w), fr.left)
			for row := range 2 {
				if lx >= rowEnd[row]+6 {
					rowEnd[row] = lx + w
					s.f(`<text class="fault-label" x="%.1f" y="%.1f" font-size="11" fill="#444">%s</text>`,
						lx, fr.top-5-13*float64(row), esc(label))
					break place
				}
			}
		}
	}
	s.f("</g>\n")
}

// labelWidth estimates the width of text in a sans-serif font of size px.
func labelWidth(text string, px float64) float64 { return 0.55 * px * float64(len([]rune(text))) }

// legendItem is one entry of a legend: a swatch (drawn at x, y by draw) and its text.
type legendItem struct {
	draw  func(s *svg, x, y float64)
	label string
}

// legendHeight is the height the items need laid out from the left, wrapping at the width.
func legendLayout(items []legendItem) (pos [][2]float64, height float64) {
	x, y := float64(padLeft), 0.0
	for _, it := range items {
		w := 30 + labelWidth(it.label, 12)
		if x+w > svgWidth-padRight && x > padLeft {
			x, y = padLeft, y+legendRow
		}
		pos = append(pos, [2]float64{x, y})
		x += w + 14
	}
	if len(items) > 0 {
		height = y + legendRow
	}
	return pos, height
}

// legend draws the items from top.
func (s *svg) legend(items []legendItem, top float64) {
	pos, _ := legendLayout(items)
	s.f(`<g class="legend" fill="#333">`)
	for i, it := range items {
		x, y := pos[i][0], top+pos[i][1]
		it.draw(s, x+8, y+9)
		s.f(`<text x="%.1f" y="%.1f">%s</text>`, x+22, y+13, esc(it.label))
	}
	s.f("</g>\n")
}

func bandSwatch(col string) func(s *svg, x, y float64) {
	return func(s *svg, x, y float64) {
		s.f(`<rect x="%.1f" y="%.1f" width="14" height="12" fill="%s" fill-opacity="0.45"/>`, x-7, y-6, col)
	}
}

// faultLegend is one entry per nemesis kind.
func faultLegend(faults []faultWindow) []legendItem {
	kinds := faultKinds(faults)
	var items []legendItem
	for _, k := range kinds {
		n := 0
		for _, f := range faults {
			if f.kind == k {
				n++
			}
		}
		items = append(items, legendItem{draw: bandSwatch(bandColor(kinds, k)), label: fmt.Sprintf("fault: %s (%d)", k, n)})
	}
	return items
}
