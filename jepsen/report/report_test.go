package report

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/nemesis"
)

// synthetic builds a history of n operations by 5 processes over about dur: transfers and
// reads, mostly ok, failing fast and timing out (info) inside fault windows, which are every
// other 5 s. The last operation of process 0 never completes.
func synthetic(n int, dur time.Duration, seed uint64) ([]history.Op, []nemesis.Fault) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var faults []nemesis.Fault
	for s := 5 * time.Second; s+5*time.Second <= dur; s += 10 * time.Second {
		kind := nemesis.Kill
		if len(faults)%2 == 1 {
			kind = nemesis.PartitionLeader
		}
		faults = append(faults, nemesis.Fault{Kind: kind, Variant: "leader", Targets: []string{"n1"}, Start: s, End: s + 5*time.Second})
	}
	inFault := func(t time.Duration) bool {
		for _, f := range faults {
			if t >= f.Start && t < f.End {
				return true
			}
		}
		return false
	}
	type rec struct{ op history.Op }
	var recs []rec
	const procs = 5
	per := n / procs
	for p := range procs {
		t := time.Duration(rng.Int64N(int64(time.Millisecond)))
		for i := range per {
			f := "transfer"
			if rng.IntN(3) == 0 {
				f = "read"
			}
			inv := history.Op{Process: p, Type: history.Invoke, F: f, Time: t}
			recs = append(recs, rec{inv})
			if p == 0 && i == per-1 {
				break // never completes
			}
			lat := time.Duration(1+rng.IntN(20)) * time.Millisecond
			typ := history.OK
			if inFault(t) {
				switch rng.IntN(4) {
				case 0:
					typ, lat = history.Fail, time.Duration(rng.IntN(500))*time.Microsecond
				case 1:
					typ, lat = history.Info, time.Second+time.Duration(rng.IntN(1000))*time.Millisecond
				}
			}
			t += lat
			recs = append(recs, rec{history.Op{Process: p, Type: typ, F: f, Time: t}})
			t += dur / time.Duration(per) / 2
		}
	}
	for _, f := range faults {
		recs = append(recs, rec{history.Op{Process: history.NemesisProcess, Type: history.Info, F: "start " + string(f.Kind), Time: f.Start}})
	}
	// Order by time as a recorder would have.
	slices.SortStableFunc(recs, func(a, b rec) int { return cmp.Compare(a.op.Time, b.op.Time) })
	ops := make([]history.Op, len(recs))
	for i, r := range recs {
		ops[i] = r.op
		ops[i].Index = i
	}
	return ops, faults
}

// svgShape is what a test needs of a picture: it parses with encoding/xml, and these counts.
type svgShape struct {
	root       string
	bands      int
	points     map[string]int // by data-outcome
	series     int
	faultLabel []string
}

func parseSVG(t *testing.T, b []byte) svgShape {
	t.Helper()
	s := svgShape{points: map[string]int{}}
	d := xml.NewDecoder(bytes.NewReader(b))
	var stack []xml.StartElement
	inLabel := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg does not parse as XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if s.root == "" {
				s.root = tok.Name.Local
			}
			class := attr(tok, "class")
			switch {
			case tok.Name.Local == "rect" && class == "fault":
				s.bands++
			case tok.Name.Local == "polyline" && class == "series":
				s.series++
			case tok.Name.Local == "text" && class == "fault-label":
				inLabel = true
			}
			if len(stack) > 0 && attr(stack[len(stack)-1], "class") == "points" {
				s.points[attr(stack[len(stack)-1], "data-outcome")]++
			}
			stack = append(stack, tok)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			inLabel = false
		case xml.CharData:
			if inLabel {
				s.faultLabel = append(s.faultLabel, string(tok))
			}
		}
	}
	if s.root != "svg" {
		t.Fatalf("root element %q, want svg", s.root)
	}
	return s
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func outcomes(pairs []history.Pair) map[string]int {
	m := map[string]int{}
	for _, p := range pairs {
		if p.Complete != nil {
			m[string(p.Complete.Type)]++
		}
	}
	return m
}

func TestPlotsOfSyntheticHistory(t *testing.T) {
	ops, faults := synthetic(2000, 40*time.Second, 1)
	pairs, err := history.Pairs(ops)
	if err != nil {
		t.Fatal(err)
	}
	wins := windows(faults)
	tmax := span(ops, wins)
	want := outcomes(pairs)
	if want["fail"] == 0 || want["info"] == 0 {
		t.Fatalf("synthetic history lacks fail or info: %v", want)
	}

	lat := parseSVG(t, standalone(latencySVG(pairs, wins, tmax, "bank/kill")))
	if lat.bands != len(faults) {
		t.Errorf("latency: %d fault bands, want %d", lat.bands, len(faults))
	}
	for _, o := range []string{"ok", "fail", "info"} {
		if lat.points[o] != want[o] {
			t.Errorf("latency: %d %s points, want every one of %d", lat.points[o], o, want[o])
		}
	}
	if len(lat.faultLabel) != len(faults) || !strings.HasPrefix(lat.faultLabel[0], "kill") || !strings.HasPrefix(lat.faultLabel[1], "partition-leader") {
		t.Errorf("latency: fault labels %q", lat.faultLabel)
	}

	thr := parseSVG(t, standalone(throughputSVG(pairs, wins, tmax, "bank/kill")))
	if thr.bands != len(faults) {
		t.Errorf("throughput: %d fault bands, want %d", thr.bands, len(faults))
	}
	if thr.series != 3 {
		t.Errorf("throughput: %d series, want one per outcome (3)", thr.series)
	}
}

func TestScatterIsBounded(t *testing.T) {
	ops, faults := synthetic(150_000, 600*time.Second, 2)
	pairs, err := history.Pairs(ops)
	if err != nil {
		t.Fatal(err)
	}
	wins := windows(faults)
	b := standalone(latencySVG(pairs, wins, span(ops, wins), "bank/kill"))
	if len(b) > 3<<20 {
		t.Errorf("latency.svg of %d ops is %d bytes, want at most 3 MB", len(pairs), len(b))
	}
	got := parseSVG(t, b)
	want := outcomes(pairs)
	total := 0
	for _, n := range got.points {
		total += n
	}
	if total > MaxPoints {
		t.Errorf("%d points drawn, want at most %d", total, MaxPoints)
	}
	if got.points["fail"] != want["fail"] || got.points["info"] != want["info"] {
		t.Errorf("fail/info drawn %d/%d, want all %d/%d", got.points["fail"], got.points["info"], want["fail"], want["info"])
	}
	if got.points["ok"] < MaxPoints/4 || got.points["ok"] >= want["ok"] {
		t.Errorf("%d ok drawn of %d: want them sampled", got.points["ok"], want["ok"])
	}
	if got.bands != len(faults) {
		t.Errorf("%d bands, want %d", got.bands, len(faults))
	}
	t.Logf("%d ops, %d points drawn, %d bytes", len(pairs), total, len(b))
}

func TestDownsampleWhenRareOverflows(t *testing.T) {
	var pts []point
	for i := range 50_000 {
		o := "ok"
		switch i % 5 {
		case 1, 2:
			o = "fail"
		case 3:
			o = "info"
		}
		pts = append(pts, point{at: time.Duration(i) * time.Millisecond, outcome: o})
	}
	got := downsample(pts, 1000)
	count := map[string]int{}
	for i, p := range got {
		count[p.outcome]++
		if i > 0 && got[i-1].at > p.at {
			t.Fatal("downsampled points out of time order")
		}
	}
	if len(got) > 1000 || count["ok"] != 250 || count["fail"] < 400 || count["info"] < 200 {
		t.Errorf("downsample to 1000 of 20k ok, 20k fail, 10k info: %v", count)
	}
	// Evenly: the first and last ok kept are near the two ends.
	var first, last time.Duration = -1, 0
	for _, p := range got {
		if p.outcome == "ok" {
			if first < 0 {
				first = p.at
			}
			last = p.at
		}
	}
	if first > time.Second || last < 49*time.Second {
		t.Errorf("ok sampled over [%s, %s], want the whole run", first, last)
	}
	if n := len(downsample(pts[:500], 1000)); n != 500 {
		t.Errorf("downsample under the limit dropped points: %d of 500", n)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	ops, faults := synthetic(600, 30*time.Second, 3)
	faults[len(faults)-1].End = 0 // never healed: drawn to the end
	faults[len(faults)-1].Error = "heal: <iptables> & co"
	for _, f := range []string{"history.jsonl", "faults.json", "logs/n1.log", "logs/n2.log"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	results := []checker.Result{
		{Name: "recovery", Verdict: checker.Valid, Checked: 1},
		{Name: "no-lost-writes", Verdict: checker.Invalid, Checked: 90, Violations: 2, CounterExample: `transfer "t1-3" <ok> missing`},
	}
	err := Write(dir, Run{
		Config:  map[string]string{"workload": "bank", "nemesis": "kill", "nodes": "3", "seed": "1", "duration": "30s", "failpoint": ""},
		RunID:   "bkj1234",
		Verdict: checker.Invalid, Results: results, Ops: ops, Faults: faults, Elapsed: 42 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{LatencyFile, ThroughputFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if s := parseSVG(t, b); s.bands != len(faults) {
			t.Errorf("%s: %d bands, want %d", f, s.bands, len(faults))
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{
		"INVALID no-lost-writes: transfer &#34;t1-3&#34; &lt;ok&gt; missing",
		"<th>seed</th><td>1</td>", "bkj1234", "not healed", "heal: &lt;iptables&gt; &amp; co",
		`href="history.jsonl"`, `href="faults.json"`, `href="logs/n1.log"`, `href="logs/n2.log"`,
		"<svg ", "Latency (invoke", "Throughput — bank/kill seed 1",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	for _, absent := range []string{"linearizability.html", "failpoint", "ZgotmplZ", "<?xml"} {
		if strings.Contains(page, absent) {
			t.Errorf("index.html holds %q", absent)
		}
	}
	// Both inline pictures parse.
	for rest := page; ; {
		i := strings.Index(rest, "<svg ")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		parseSVG(t, []byte(rest[i:i+j+len("</svg>")]))
		rest = rest[i+j:]
	}
}

func TestWriteSurvivesABrokenHistory(t *testing.T) {
	dir := t.TempDir()
	ops := []history.Op{
		{Index: 0, Process: 1, Type: history.OK, F: "read", Time: time.Millisecond}, // no invocation
		{Index: 1, Process: 2, Type: history.Invoke, F: "read", Time: 2 * time.Millisecond},
		{Index: 2, Process: 2, Type: history.OK, F: "read", Time: 5 * time.Millisecond},
	}
	err := Write(dir, Run{Ops: ops})
	if err == nil {
		t.Error("Write of a history that does not pair up: no error")
	}
	for _, f := range []string{LatencyFile, ThroughputFile, IndexFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	// An empty run still draws.
	if err := Write(t.TempDir(), Run{}); err != nil {
		t.Errorf("Write of an empty run: %v", err)
	}
}
