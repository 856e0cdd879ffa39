// Package report draws the pictures and the summary page of a jepsen run into its report
// directory, by hand, with the standard library only:
//
//   - latency.svg: a scatter of each completed client operation's latency (invocation to
//     completion, ms, log scale) against its invocation time; colour is the outcome (ok, fail,
//     info), the marker shape the operation kind (transfer, read, add, ...).
//   - throughput.svg: completed operations per second (1 s buckets by completion time), one
//     line per outcome.
//   - index.html: the run's config, the verdict and every checker's result with its first
//     counter-example, operation counts and latency percentiles, the fault windows, both
//     pictures inline, and links to the other files of the directory.
//
// Both pictures share one time axis (seconds since the history started, which is also the
// clock of the fault windows) and shade every fault window as a translucent band labelled
// with its nemesis kind; hovering a band shows its variant, targets and times.
//
// The work is bounded whatever the length of the history: the scatter draws at most
// MaxPoints points (every fail and info point while they fit in three quarters of that, ok
// points taken evenly over time for the rest; see downsample), so latency.svg stays around
// 1 MB, and the throughput plot has one vertex per second and outcome. Counts, percentiles
// and legends are always computed over the whole history.
package report

import (
	"bytes"
	"cmp"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/nemesis"
)

// Run is what the report shows of one run.
type Run struct {
	// Config holds the run's settings by name (workload, nemesis, nodes, seed, duration, ...);
	// empty values are not shown.
	Config  map[string]string
	RunID   string
	Verdict checker.Verdict
	Results []checker.Result
	// Ops is the whole history, nemesis records included (they are skipped).
	Ops     []history.Op
	Faults  []nemesis.Fault
	Elapsed time.Duration
}

// Files written by Write, in dir.
const (
	LatencyFile    = "latency.svg"
	ThroughputFile = "throughput.svg"
	IndexFile      = "index.html"
)

// Write draws latency.svg, throughput.svg and index.html into dir. It never panics: a failure
// (a malformed history included) is returned, and the caller should only log it.
func Write(dir string, run Run) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("report: panic: %v", r)
		}
	}()
	pairs, perr := history.Pairs(run.Ops)
	if perr != nil {
		// Draw what pairs up; the checkers have their own say on the history.
		pairs = lenientPairs(run.Ops)
	}
	faults := windows(run.Faults)
	tmax := span(run.Ops, faults)
	name := runName(run.Config)
	lat := latencySVG(pairs, faults, tmax, name)
	thr := throughputSVG(pairs, faults, tmax, name)
	page, err := indexHTML(dir, run, pairs, faults, lat, thr)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{LatencyFile, standalone(lat)}, {ThroughputFile, standalone(thr)}, {IndexFile, page}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if perr != nil {
		return fmt.Errorf("report written, but the history does not pair up: %w", perr)
	}
	return nil
}

// lenientPairs pairs invocations and completions like history.Pairs but skips what does not
// fit instead of failing.
func lenientPairs(ops []history.Op) []history.Pair {
	var pairs []history.Pair
	open := map[int]int{}
	for _, op := range ops {
		if op.Process == history.NemesisProcess {
			continue
		}
		switch op.Type {
		case history.Invoke:
			open[op.Process] = len(pairs)
			pairs = append(pairs, history.Pair{Invoke: op})
		default:
			if i, ok := open[op.Process]; ok {
				c := op
				pairs[i].Complete = &c
				delete(open, op.Process)
			}
		}
	}
	return pairs
}

// faultWindow is a fault as drawn.
type faultWindow struct {
	kind, variant string
	targets       []string
	start, end    time.Duration
	healed        bool
	err           string
}

func windows(faults []nemesis.Fault) []faultWindow {
	var out []faultWindow
	for _, f := range faults {
		w := faultWindow{kind: string(f.Kind), variant: f.Variant, targets: f.Targets, start: f.Start, end: f.End,
			healed: f.End >= f.Start && f.End > 0, err: f.Error}
		out = append(out, w)
	}
	return out
}

// label is the band's caption: the nemesis kind, its variant and targets.
func (f faultWindow) label() string {
	return strings.Join(slices.DeleteFunc([]string{f.kind, f.variant, strings.Join(f.targets, ",")},
		func(s string) bool { return s == "" }), " ")
}

// describe is the band's tooltip.
func (f faultWindow) describe() string {
	s := fmt.Sprintf("%s %s [%s] %s → %s", f.kind, f.variant, strings.Join(f.targets, ","), secs(f.start), secs(f.end))
	if !f.healed {
		s += " (not healed)"
	}
	if f.err != "" {
		s += ": " + f.err
	}
	return s
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// span is the end of the time axis: the last record or heal. A fault never healed is drawn
// to the end.
func span(ops []history.Op, faults []faultWindow) time.Duration {
	var t time.Duration
	for _, op := range ops {
		t = max(t, op.Time)
	}
	for _, f := range faults {
		t = max(t, f.start, f.end)
	}
	t = max(t, 100*time.Millisecond)
	for i := range faults {
		if !faults[i].healed {
			faults[i].end = t
		}
	}
	return t
}

func runName(cfg map[string]string) string {
	name := cmp.Or(cfg["workload"], "run")
	if n := cfg["nemesis"]; n != "" {
		name += "/" + n
	}
	if s := cfg["seed"]; s != "" {
		name += " seed " + s
	}
	return name
}

// opStats is one row of the operations table.
type opStats struct {
	F                       string
	Invoked, OK, Fail, Info int
	Open                    int    // never completed
	P50, P90, P99, Max      string // of ok latencies
	key                     string
}

func stats(pairs []history.Pair) []opStats {
	const all = "\x00all" // the key of the totals, no operation's name
	rows := map[string]*opStats{}
	lat := map[string][]time.Duration{}
	total := &opStats{F: "all"}
	for _, p := range pairs {
		r := rows[p.Invoke.F]
		if r == nil {
			r = &opStats{F: p.Invoke.F, key: p.Invoke.F}
			rows[p.Invoke.F] = r
		}
		for _, r := range []*opStats{r, total} {
			r.Invoked++
			switch {
			case p.Complete == nil:
				r.Open++
			case p.Complete.Type == history.OK:
				r.OK++
			case p.Complete.Type == history.Fail:
				r.Fail++
			default:
				r.Info++
			}
		}
		if p.Complete != nil && p.Complete.Type == history.OK {
			d := p.Complete.Time - p.Invoke.Time
			lat[p.Invoke.F] = append(lat[p.Invoke.F], d)
			lat[all] = append(lat[all], d)
		}
	}
	var out []opStats
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b opStats) int { return cmp.Or(cmp.Compare(b.Invoked, a.Invoked), cmp.Compare(a.F, b.F)) })
	if len(out) != 1 {
		total.key = all
		out = append(out, *total)
	}
	for i := range out {
		ds := lat[out[i].key]
		slices.Sort(ds)
		q := func(p float64) string {
			if len(ds) == 0 {
				return "–"
			}
			return ms(ds[min(int(p*float64(len(ds))), len(ds)-1)])
		}
		out[i].P50, out[i].P90, out[i].P99, out[i].Max = q(0.50), q(0.90), q(0.99), q(1)
	}
	return out
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 1000:
		return fmt.Sprintf("%.0f ms", v)
	default:
		return fmt.Sprintf("%.2f s", v/1000)
	}
}

// configOrder is the order of the known settings; others follow by name.
var configOrder = []string{"workload", "nemesis", "nodes", "seed", "duration", "failpoint", "bin"}

type kv struct{ K, V string }

func configRows(cfg map[string]string, run Run) []kv {
	var rows []kv
	for _, k := range configOrder {
		if v := cfg[k]; v != "" {
			rows = append(rows, kv{k, v})
		}
	}
	var rest []string
	for k, v := range cfg {
		if v != "" && !slices.Contains(configOrder, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		rows = append(rows, kv{k, cfg[k]})
	}
	if run.RunID != "" {
		rows = append(rows, kv{"run id", run.RunID})
	}
	if run.Elapsed > 0 {
		rows = append(rows, kv{"elapsed", run.Elapsed.Round(time.Second).String()})
	}
	return rows
}

type link struct{ Href, Text string }

// links are the files of the run directory worth opening, those that exist.
func links(dir string) []link {
	var out []link
	add := func(rel, text string) {
		if _, err := os.Stat(filepath.Join(dir, rel)); err == nil {
			out = append(out, link{rel, cmp.Or(text, rel)})
		}
	}
	add("linearizability.html", "linearizability.html (porcupine)")
	add("history.jsonl", "")
	add("faults.json", "")
	add("final.json", "")
	add("verdict.json", "")
	add("harness.log", "")
	add("cluster.hcl", "")
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	slices.Sort(logs)
	for _, l := range logs {
		add(filepath.Join("logs", filepath.Base(l)), "")
	}
	add("data", "data/ (node data dirs, kept because the run is not valid)")
	return out
}

type faultRow struct {
	N                                  int
	Kind, Variant, Targets, Start, End string
	Duration, Error                    string
	Color                              string
}

func faultRows(faults []faultWindow) []faultRow {
	kinds := faultKinds(faults)
	var rows []faultRow
	for i, f := range faults {
		end := secs(f.end)
		if !f.healed {
			end = "not healed"
		}
		rows = append(rows, faultRow{N: i + 1, Kind: f.kind, Variant: f.variant, Targets: strings.Join(f.targets, ", "),
			Start: secs(f.start), End: end, Duration: secs(f.end - f.start), Error: f.err, Color: bandColor(kinds, f.kind)})
	}
	return rows
}

type page struct {
	Title      string
	Verdict    string
	Line       string
	Config     []kv
	Results    []checker.Result
	Ops        []opStats
	Faults     []faultRow
	Latency    template.HTML
	Throughput template.HTML
	Links      []link
	MaxPoints  int
}

func indexHTML(dir string, run Run, pairs []history.Pair, faults []faultWindow, lat, thr []byte) ([]byte, error) {
	verdict := run.Verdict
	if verdict == "" {
		verdict, _ = checker.Overall(run.Results)
	}
	_, first := checker.Overall(run.Results)
	line := strings.ToUpper(string(verdict))
	if first != nil {
		line += " " + first.Name + ": " + first.CounterExample
	}
	p := page{
		Title:   "bankd jepsen: " + runName(run.Config) + " — " + strings.ToUpper(string(verdict)),
		Verdict: string(verdict), Line: line,
		Config: configRows(run.Config, run), Results: run.Results, Ops: stats(pairs), Faults: faultRows(faults),
		// The pictures are generated here, every text in them escaped.
		Latency: template.HTML(lat), Throughput: template.HTML(thr),
		Links: links(dir), MaxPoints: MaxPoints,
	}
	var b bytes.Buffer
	if err := indexTemplate.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("report: index.html: %w", err)
	}
	return b.Bytes(), nil
}

var indexTemplate = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; font-size: 14px; margin: 24px; color: #222; max-width: 1040px; }
h1 { font-size: 20px; margin-bottom: 8px; }
h2 { font-size: 16px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; border-bottom: 1px solid #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-weight: bold; padding: 8px 12px; border-radius: 4px; display: block; }
.valid { background: #d9f0d3; color: #1b5e20; }
.invalid { background: #fddbc7; color: #b2182b; }
.unknown { background: #fff3b0; color: #6d5700; }
.v-valid { color: #1b7a2e; font-weight: bold; }
.v-invalid { color: #b2182b; font-weight: bold; }
.v-unknown { color: #8a6d00; font-weight: bold; }
.swatch { display: inline-block; width: 12px; height: 12px; opacity: 0.6; vertical-align: middle; margin-right: 4px; }
.cx { font-family: monospace; font-size: 12px; max-width: 640px; word-break: break-word; }
figure { margin: 12px 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12px; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<span class="verdict {{.Verdict}}">{{.Line}}</span>

<h2>Config</h2>
<table>
{{range .Config}}<tr><th>{{.K}}</th><td>{{.V}}</td></tr>
{{end}}</table>

<h2>Checkers</h2>
<table>
<tr><th>checker</th><th>verdict</th><th>checked</th><th>violations</th><th>first counter-example</th></tr>
{{range .Results}}<tr><td>{{.Name}}</td><td class="v-{{.Verdict}}">{{.Verdict}}</td><td class="n">{{.Checked}}</td><td class="n">{{.Violations}}</td><td class="cx">{{.CounterExample}}</td></tr>
{{end}}</table>

<h2>Operations</h2>
<table>
<tr><th>op</th><th>invoked</th><th>ok</th><th>fail</th><th>info</th><th>never completed</th><th>ok p50</th><th>ok p90</th><th>ok p99</th><th>ok max</th></tr>
{{range .Ops}}<tr><td>{{.F}}</td><td class="n">{{.Invoked}}</td><td class="n">{{.OK}}</td><td class="n">{{.Fail}}</td><td class="n">{{.Info}}</td><td class="n">{{.Open}}</td><td class="n">{{.P50}}</td><td class="n">{{.P90}}</td><td class="n">{{.P99}}</td><td class="n">{{.Max}}</td></tr>
{{end}}</table>

<h2>Fault windows</h2>
{{if .Faults}}<table>
<tr><th>#</th><th>kind</th><th>variant</th><th>targets</th><th>start</th><th>healed</th><th>length</th><th>error</th></tr>
{{range .Faults}}<tr><td class="n">{{.N}}</td><td><span class="swatch" style="background: {{.Color}}"></span>{{.Kind}}</td><td>{{.Variant}}</td><td>{{.Targets}}</td><td class="n">{{.Start}}</td><td class="n">{{.End}}</td><td class="n">{{.Duration}}</td><td class="cx">{{.Error}}</td></tr>
{{end}}</table>{{else}}<p>No faults were injected.</p>{{end}}

<h2>Latency</h2>
<figure>
{{.Latency}}
<figcaption>Each completed client operation at its invocation time; latency from invocation to completion. At most {{.MaxPoints}} points are drawn: every fail and info while they fit, ok sampled evenly over time. Shaded bands are fault windows.</figcaption>
</figure>

<h2>Throughput</h2>
<figure>
{{.Throughput}}
<figcaption>Completions per 1 s bucket, by completion time and outcome.</figcaption>
</figure>

<h2>Files</h2>
<ul>
{{range .Links}}<li><a href="{{.Href}}">{{.Text}}</a></li>
{{end}}</ul>
</body>
</html>
`))
