package node

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// RetentionConfig is the `retention` block: how long the cluster keeps what a steady workload
// adds for ever. Without the block nothing is dropped.
type RetentionConfig struct {
	// History is how old an event (with the account history entries and problems of its
	// index) must be in cluster time before it is dropped. Zero: age does not hold it back.
	History time.Duration
	// KeepIndexes is how many of the newest log indexes always keep their events and history.
	// Zero: the index does not hold it back.
	KeepIndexes uint64
	// IdempotencyWindow is how long a finished client transfer (its id is the client's
	// idempotency key) is kept; a retry after it is a new transfer. Zero: kept for ever.
	IdempotencyWindow time.Duration
	// Interval is how often the leader looks for records to drop.
	Interval time.Duration
}

// Enabled reports whether the block asks for anything to be dropped.
func (r RetentionConfig) Enabled() bool {
	return r.History > 0 || r.KeepIndexes > 0 || r.IdempotencyWindow > 0
}

// DefaultRetentionInterval is how often the leader compacts when the block gives no interval.
const DefaultRetentionInterval = time.Minute

var retentionSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "history"}, {Name: "keep_indexes"}, {Name: "idempotency_window"}, {Name: "interval"},
}}

func (p *configParser) parseRetention(block *hcl.Block, rc *RetentionConfig) {
	rc.Interval = DefaultRetentionInterval
	content, diags := block.Body.Content(retentionSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	attrs := content.Attributes
	for _, d := range []struct {
		name string
		dst  *time.Duration
		min  time.Duration
	}{
		// A second is the least that makes sense for a test cluster; production windows are
		// hours or days (a client retrying after the idempotency window makes a new transfer).
		{"history", &rc.History, time.Second},
		{"idempotency_window", &rc.IdempotencyWindow, time.Second},
		{"interval", &rc.Interval, 100 * time.Millisecond},
	} {
		attr, ok := attrs[d.name]
		if !ok {
			continue
		}
		if v, ok := p.duration(attr); ok {
			if v < d.min || v > 100*365*24*time.Hour {
				p.errorf(attr.Expr.Range(), "invalid "+d.name, "%s must be between %s and 100 years, got %s", d.name, d.min, v)
				continue
			}
			*d.dst = v
		}
	}
	p.wholeNumbers(attrs, []wholeNumber{
		{"keep_indexes", 1, 1 << 50, func(v int64) { rc.KeepIndexes = uint64(v) }},
	})
	if !rc.Enabled() {
		p.errorf(block.DefRange, "empty retention block", "the retention block must set history, keep_indexes or idempotency_window (leave the block out to keep everything)")
	}
}
