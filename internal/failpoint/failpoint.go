// Package failpoint lets a test build of bankd break itself on purpose, so that the jepsen
// harness can show that each of its checkers catches a real bug.
//
// Without the `failpoints` build tag (every production build), Enabled is a constant false: the
// compiler removes every hook and its code, and no environment variable can turn one on. With
// the tag (`go build -tags failpoints ./cmd/bankd`), Enabled reports the names listed,
// comma-separated, in the environment variable BANKD_FAILPOINTS, read once when the process
// starts.
//
// Each failpoint is one or two lines at the exact spot it breaks, marked with a comment naming
// it; grep for the constant to find it.
package failpoint

// EnvVar is the environment variable a failpoints build reads its failpoints from.
const EnvVar = "BANKD_FAILPOINTS"

// The failpoints. Each names the bug it injects and the jepsen checker that must catch it.
const (
	// StaleLinearizableRead: node.ReadBarrier returns at once and rpc serves every read from the
	// local state machine, as if STALE were asked, on any node: "linearizable" reads neither
	// confirm leadership nor wait for the apply. Caught by fresh-reads.
	StaleLinearizableRead = "stale-linearizable-read"
	// AckBeforeCommit: node.Apply answers a CREATE_TRANSFERS command with an OK result for every
	// transfer as soon as it is handed to Raft, without waiting for it to commit or for the state
	// machine's verdict. Caught by no-lost-writes.
	AckBeforeCommit = "ack-before-commit"
	// SkipAppliedIndexCheck: fsm.ApplyBatch applies entries at or below its stored applied
	// index again, so a restarted node replays its log on top of its state. Caught by
	// replicas-equal.
	SkipAppliedIndexCheck = "skip-applied-index-check"
	// LockGrantedTwice: the state machine grants a lock even while another holder has it.
	// Caught by lock-exclusive.
	LockGrantedTwice = "lock-granted-twice"
	// UnbalancedTransfer: a plain (not pending) transfer credits its amount but debits one
	// less, so debits and credits drift apart. Caught by conservation.
	UnbalancedTransfer = "unbalanced-transfer"
	// SkipIdempotencyCheck: applyTransfer skips its lookup of the stored transfer, so a
	// retried id applies (and moves money) again instead of being answered as a replay.
	// Caught by the idempotent workload's applied-once.
	SkipIdempotencyCheck = "skip-idempotency-check"
	// StreamResumeSkip: WatchEvents treats from_index as the last index the client already has
	// when a stream resumes (from_index > 1), an off-by-one that silently drops one event per
	// reconnect. Caught by stream-order.
	StreamResumeSkip = "stream-resume-skip"
	// CrashOnLeadershipLoss: the node exits when it loses leadership, as a panic in a
	// leader-only driver's teardown would make it. Caught by recovery (a node that exited by
	// itself during the run).
	CrashOnLeadershipLoss = "crash-on-leadership-loss"
	// SkipFenceCheck: the state machine applies a fenced command without checking its fence,
	// so a holder back from a pause writes under a lease that was granted anew. Caught by
	// fenced-writes.
	SkipFenceCheck = "skip-fence-check"
	// IgnoreMinIndex: a STALE read ignores the client's Bankd-Min-Index header and answers from
	// whatever the node has applied, so a client that moves to a lagging replica reads an older
	// state than it already saw. Caught by monotonic-reads.
	IgnoreMinIndex = "ignore-min-index"
	// LnPayOnAnotherNode: the Lightning pool gives a payment its node has not resolved within
	// 2 s up on that node and sends it from another pool node (without recording it), as a
	// "retry elsewhere" would: when the first node completes after all, the hash is paid twice.
	// Caught by ln-pay-once.
	LnPayOnAnotherNode = "ln-pay-on-another-node"
	// LnCreditTwice: every settlement the pool reads from a node's invoice subscription is
	// booked a second time, as a settlement under another settle index. Caught by
	// ln-credit-once.
	LnCreditTwice = "ln-credit-twice"
	// LnFailOnTimeout: the Lightning pool records a payment FAILED when its node has not
	// resolved it within 2 s, and the customer gets the money back while the node may still
	// pay. Caught by ln-no-early-failure.
	LnFailOnTimeout = "ln-fail-on-timeout"
)

// Names lists every failpoint.
var Names = []string{StaleLinearizableRead, AckBeforeCommit, SkipAppliedIndexCheck, LockGrantedTwice,
	UnbalancedTransfer, SkipIdempotencyCheck, StreamResumeSkip, CrashOnLeadershipLoss, SkipFenceCheck,
	IgnoreMinIndex, LnPayOnAnotherNode, LnCreditTwice, LnFailOnTimeout}

// Known reports whether name is a failpoint.
func Known(name string) bool {
	for _, n := range Names {
		if n == name {
			return true
		}
	}
	return false
}
