package fsm

import (
	"bytes"
	"io"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// testFSM wraps an FSM with a fake Raft log: every call appends one entry and applies it, the
// way Raft would, and keeps the entries so a test can replay them elsewhere.
type testFSM struct {
	t *testing.T
	*FSM
	dir    string
	log    []*raft.Log
	nowMs  int64
	fatals *fatalRecorder
	// principal is stamped on every command, as the leader stamps the API token's name.
	principal string
}

type fatalRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (r *fatalRecorder) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *fatalRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

func openTestFSM(t *testing.T) *testFSM {
	t.Helper()
	dir := t.TempDir()
	rec := &fatalRecorder{}
	f, err := Open(dir, Options{Fatal: rec.record})
	if err != nil {
		t.Fatalf("open fsm: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return &testFSM{t: t, FSM: f, dir: dir, nowMs: 1_700_000_000_000, fatals: rec}
}

func (tf *testFSM) entry(typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) *raft.Log {
	tf.t.Helper()
	b, err := proto.Marshal(body)
	if err != nil {
		tf.t.Fatalf("marshal body: %v", err)
	}
	cmd := &bankdv1.Command{Version: CommandVersion, Type: typ, LeaderTimeUnixMs: tf.nowMs, Fence: fence, Body: b, Principal: tf.principal}
	data, err := proto.Marshal(cmd)
	if err != nil {
		tf.t.Fatalf("marshal command: %v", err)
	}
	return &raft.Log{Index: uint64(len(tf.log) + 1), Term: 1, Type: raft.LogCommand, Data: data}
}

// do applies one command and returns its result.
func (tf *testFSM) do(typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) any {
	tf.t.Helper()
	l := tf.entry(typ, body, fence)
	tf.log = append(tf.log, l)
	return tf.Apply(l)
}

func (tf *testFSM) advance(ms int64) { tf.nowMs += ms }

// reopen closes tf's state machine and opens its store again, as a restart does; the new one
// is closed when the test ends.
func (tf *testFSM) reopen() *FSM {
	tf.t.Helper()
	if err := tf.Close(); err != nil {
		tf.t.Fatal(err)
	}
	f, err := Open(tf.dir, Options{Fatal: tf.fatals.record})
	if err != nil {
		tf.t.Fatalf("reopen fsm: %v", err)
	}
	tf.t.Cleanup(func() { f.Close() })
	return f
}

func (tf *testFSM) createAccount(acc *bankdv1.Account) any {
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: acc}, nil)
}

func (tf *testFSM) mustAccount(id, kind string, nonNegative bool) {
	tf.t.Helper()
	k := bankdv1.AccountKind(bankdv1.AccountKind_value["ACCOUNT_KIND_"+kind])
	res := tf.createAccount(&bankdv1.Account{Id: id, Currency: "BTC", Kind: k, NonNegative: nonNegative})
	if _, ok := res.(*bankdv1.CreateAccountResponse); !ok {
		tf.t.Fatalf("create account %s: %v", id, res)
	}
}

func (tf *testFSM) transfers(fence *bankdv1.Fence, ts ...*bankdv1.Transfer) []*bankdv1.TransferResult {
	tf.t.Helper()
	res := tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, fence)
	resp, ok := res.(*bankdv1.CreateTransfersResponse)
	if !ok {
		tf.t.Fatalf("create transfers: got %T %v", res, res)
	}
	return resp.Results
}

func (tf *testFSM) transfer(t *bankdv1.Transfer) *bankdv1.TransferResult {
	tf.t.Helper()
	return tf.transfers(nil, t)[0]
}

func (tf *testFSM) balance(id string) *bankdv1.Balance {
	tf.t.Helper()
	acc, err := tf.Account(id)
	if err != nil {
		tf.t.Fatalf("account %s: %v", id, err)
	}
	return acc.Balance
}

func (tf *testFSM) hash() (uint64, [32]byte) {
	tf.t.Helper()
	idx, sum, err := tf.StateHash()
	if err != nil {
		tf.t.Fatalf("state hash: %v", err)
	}
	return idx, sum
}

func xfer(id, from, to string, amount int64) *bankdv1.Transfer {
	return &bankdv1.Transfer{Id: id, DebitAccountId: from, CreditAccountId: to, Amount: amount, Currency: "BTC"}
}

// snapshotBytes persists a snapshot of f into memory.
func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	return sink.Bytes()
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
