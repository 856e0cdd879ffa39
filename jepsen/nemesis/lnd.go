package nemesis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Lnd faults one simulated lnd node of the Lightning workload (see LndFaults) per window; the
// variant is drawn from LndVariants.
const Lnd Kind = "lnd"

// The variants of the lnd nemesis.
const (
	// LndKill: the node's process is gone (connections refused) until the heal; its books
	// survive, as lnd's database does.
	LndKill = "kill"
	// LndPartitionLeader: the node is cut off from bankd's leader of the moment, both ways.
	LndPartitionLeader = "partition-leader"
	// LndSlow: every call to the node waits 1-3 s first.
	LndSlow = "slow"
	// LndErrors: calls fail with Unavailable, half before they act and half after.
	LndErrors = "errors"
	// LndHold: payments the node sends stay in flight until the heal.
	LndHold = "hold"
	// LndHoldLeaderChange: as LndHold, and at the heal bankd's leadership moves before the
	// held payments are released: payments in flight across a leader change.
	LndHoldLeaderChange = "hold-leader-change"
)

// LndVariants lists the lnd nemesis's variants.
var LndVariants = []string{LndKill, LndPartitionLeader, LndSlow, LndErrors, LndHold, LndHoldLeaderChange}

// Each variant is also a kind of its own, "lnd-<variant>", for a run that needs that fault
// alone (the failpoint runs).
const (
	LndKillKind             Kind = "lnd-" + LndKill
	LndPartitionLeaderKind  Kind = "lnd-" + LndPartitionLeader
	LndSlowKind             Kind = "lnd-" + LndSlow
	LndErrorsKind           Kind = "lnd-" + LndErrors
	LndHoldKind             Kind = "lnd-" + LndHold
	LndHoldLeaderChangeKind Kind = "lnd-" + LndHoldLeaderChange
)

var lndKinds = []Kind{Lnd, LndKillKind, LndPartitionLeaderKind, LndSlowKind, LndErrorsKind, LndHoldKind, LndHoldLeaderChangeKind}

// IsLnd reports whether kind faults the simulated lnd nodes.
func IsLnd(kind Kind) bool { return slices.Contains(lndKinds, kind) }

// LndFaults is what the lnd nemesis needs from the simulated network (the Lightning workload's
// fakelnd process) and the hosts.
type LndFaults interface {
	// LndNodes names the simulated pool nodes.
	LndNodes() []string
	// InjectLnd puts variant in place on node; leader is bankd's leader (-1 when unknown).
	InjectLnd(ctx context.Context, variant, node string, leader int) (note string, err error)
	// HealLnd removes every lnd fault.
	HealLnd(ctx context.Context) error
}

// injectLnd draws a variant and a node and puts the fault in place.
func (n *Nemesis) injectLnd(ctx context.Context, kind Kind) (variant, node, note string, err error) {
	if n.cfg.Lnd == nil {
		return "", "", "", fmt.Errorf("nemesis %s needs the lightning workload", kind)
	}
	nodes := n.cfg.Lnd.LndNodes()
	variant = strings.TrimPrefix(string(kind), "lnd-")
	if kind == Lnd {
		variant = LndVariants[n.rng.IntN(len(LndVariants))]
	}
	node = nodes[n.rng.IntN(len(nodes))]
	note, err = n.cfg.Lnd.InjectLnd(ctx, variant, node, n.cluster.Leader(ctx))
	return variant, node, note, err
}

// healLnd removes the lnd fault; after hold-leader-change it first moves bankd's leadership.
func (n *Nemesis) healLnd(ctx context.Context, variant string) (note string, err error) {
	if n.cfg.Lnd == nil {
		return "", nil
	}
	if variant == LndHoldLeaderChange {
		to, terr := n.cluster.TransferLeadership(ctx, "")
		if terr != nil {
			note = "leadership transfer refused: " + terr.Error()
		} else {
			note = "leadership moved to " + to
		}
		// Let the new leader take the held payments over before they resolve.
		sleep(ctx, 2*time.Second)
	}
	return note, n.cfg.Lnd.HealLnd(ctx)
}
