package node

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
)

func samples(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestEveryNodeTimesItsLogWritesAndApplies writes three times, waiting for every node to apply
// each write before the next, so that every node stores and applies each one on its own: each
// node's histograms must have grown by at least three.
func TestEveryNodeTimesItsLogWritesAndApplies(t *testing.T) {
	c := startTestCluster(t, 3, clusterhcl.Raft{})
	leader := c.leader()
	type counts struct{ logWrites, applies, commits uint64 }
	countsOf := func(n *Node) counts {
		return counts{samples(t, n.metrics.logWrite), samples(t, n.metrics.applyBatch), samples(t, n.metrics.storeCommit)}
	}
	before := map[string]counts{}
	for _, n := range c.running() {
		before[n.ID()] = countsOf(n)
	}
	const writes = 3
	for i := range writes {
		createAccount(t, leader, fmt.Sprintf("timed-%d", i), bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY)
		c.waitConverged(leader.FSM().AppliedIndex())
	}
	for _, n := range c.running() {
		got, was := countsOf(n), before[n.ID()]
		if got.logWrites-was.logWrites < writes || got.applies-was.applies < writes || got.commits-was.commits < writes {
			t.Errorf("node %s: log writes %d -> %d, applies %d -> %d, store commits %d -> %d; want each %d more at least",
				n.ID(), was.logWrites, got.logWrites, was.applies, got.applies, was.commits, got.commits, writes)
		}
	}
}

// stagesNode is a Node with only what the timed stages use: a logger and its metrics.
func stagesNode() (*Node, *logCapture) {
	logs := &logCapture{}
	n := &Node{log: slog.New(logs)}
	n.metrics = newMetrics(n)
	n.initSlowWarnings()
	return n, logs
}

// TestASlowRaftLogWriteIsTimedAndLogged writes to a real raft-boltdb log through the timed
// store, with the warning threshold at zero so that every write is slow.
func TestASlowRaftLogWriteIsTimedAndLogged(t *testing.T) {
	n, logs := stagesNode()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s := timedLogStore{store, n}
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}, {Index: 2, Term: 1, Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if got := samples(t, n.metrics.logWrite); got != 1 {
		t.Errorf("log writes timed = %d, want 1", got)
	}
	if logs.has("slow raft log write") {
		t.Fatalf("warned with no threshold set:\n%s", logs.tail(5))
	}
	n.slowLogWrites.after = 0
	if err := s.StoreLog(&raft.Log{Index: 3, Term: 1, Data: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if !logs.has("slow raft log write", "entries=1", "took=", "expected_under=0s") {
		t.Errorf("no warning for the slow write:\n%s", logs.tail(5))
	}
	if last, err := store.LastIndex(); err != nil || last != 3 {
		t.Errorf("last index = %d, %v; want 3", last, err)
	}
}

// TestASlowApplyIsTimedAndLogged applies a real command to a real state machine through the
// node's wrapper, then the same entry again as Raft replays it after a restart: the replay
// applies nothing and is not timed.
func TestASlowApplyIsTimedAndLogged(t *testing.T) {
	n, logs := stagesNode()
	n.slowApplies.after = 0
	f, err := fsm.Open(t.TempDir(), fsm.Options{Logger: n.log, Fatal: func(err error) { t.Errorf("fatal: %v", err) }, OnApplied: n.onApplied})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	body, err := proto.Marshal(&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: "alice", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(&bankdv1.Command{Version: fsm.CommandVersion, Type: bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT,
		LeaderTimeUnixMs: time.Now().UnixMilli(), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	r := raftFSM{FSM: f, n: n}
	entry := &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: data}
	if res := r.Apply(entry); res == nil {
		t.Fatal("no result for the command")
	}
	if _, err := f.Account("alice"); err != nil {
		t.Fatalf("account not created: %v", err)
	}
	if got := samples(t, n.metrics.applyBatch); got != 1 {
		t.Errorf("applies timed = %d, want 1", got)
	}
	if got := samples(t, n.metrics.storeCommit); got != 1 {
		t.Errorf("store commits timed = %d, want 1", got)
	}
	if !logs.has("slow state machine apply", "entries=1", "store_commit=", "store_stalled=0s") {
		t.Errorf("no warning for the slow apply:\n%s", logs.tail(5))
	}
	r.ApplyBatch([]*raft.Log{entry})
	if got := samples(t, n.metrics.applyBatch); got != 1 {
		t.Errorf("applies timed after a replay = %d, want still 1", got)
	}
}

// TestSlowWarningsAreBoundedPerInterval: steps within the threshold say nothing; of several slow
// ones in one interval only the first is logged, and the next warning counts the rest.
func TestSlowWarningsAreBoundedPerInterval(t *testing.T) {
	n, logs := stagesNode()
	w := slowWarnings{after: 10 * time.Millisecond}
	warnings := func() int {
		return strings.Count(logs.tail(100), "slow step")
	}
	w.check(n, 10*time.Millisecond, "slow step")
	if got := warnings(); got != 0 {
		t.Fatalf("%d warnings for a step at the threshold", got)
	}
	for range 3 {
		w.check(n, 20*time.Millisecond, "slow step")
	}
	if got := warnings(); got != 1 {
		t.Fatalf("%d warnings for three slow steps in one interval, want 1:\n%s", got, logs.tail(5))
	}
	w.last = w.last.Add(-slowWarningEvery) // the interval has passed
	w.check(n, 30*time.Millisecond, "slow step")
	if got := warnings(); got != 2 || !logs.has("slow step", "took=30ms", "more_since_last_warning=2") {
		t.Fatalf("after the interval: %d warnings, want 2, the last counting the 2 held back:\n%s", got, logs.tail(5))
	}
}
