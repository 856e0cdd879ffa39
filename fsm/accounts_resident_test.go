package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestCopiesCopyEveryField fills every field of an account and of a transfer and checks the
// hot path's copies equal them: a field added to the message but not to its copy function
// would be lost from the store.
func TestCopiesCopyEveryField(t *testing.T) {
	acc := &bankdv1.Account{}
	fillEveryField(t, acc.ProtoReflect())
	if got := copyAccount(acc); !proto.Equal(got, acc) {
		t.Fatalf("copyAccount lost a field:\n got %v\nwant %v", got, acc)
	}
	if got := newResidentAccount(acc).copyTo(&accountAndBalance{}); !proto.Equal(got, acc) {
		t.Fatalf("the resident record lost a field:\n got %v\nwant %v", got, acc)
	}
	tr := &bankdv1.Transfer{}
	fillEveryField(t, tr.ProtoReflect())
	if got := copyTransferTo(&bankdv1.Transfer{}, tr); !proto.Equal(got, tr) {
		t.Fatalf("copyTransferTo lost a field:\n got %v\nwant %v", got, tr)
	}
}

func fillEveryField(t *testing.T, m protoreflect.Message) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
		case fd.Kind() == protoreflect.MessageKind:
			fillEveryField(t, m.Mutable(fd).Message())
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString("x-"+string(fd.Name())))
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(1))
		case fd.Kind() == protoreflect.Int64Kind:
			m.Set(fd, protoreflect.ValueOfInt64(int64(100+i)))
		case fd.Kind() == protoreflect.Uint64Kind:
			m.Set(fd, protoreflect.ValueOfUint64(uint64(100+i)))
		case fd.Kind() == protoreflect.Uint32Kind:
			m.Set(fd, protoreflect.ValueOfUint32(uint32(100+i)))
		default:
			t.Fatalf("field %s has kind %s, which this test does not fill: extend it", fd.FullName(), fd.Kind())
		}
	}
}

// TestResidentAccountsFollowTheStore checks that the accounts held in memory stay those of the
// store through what could make them drift: refused transfers and failed linked chains (whose
// writes are dropped), several commands in one batch, a snapshot restore and a reopen.
func TestResidentAccountsFollowTheStore(t *testing.T) {
	tf := openTestFSM(t)
	tf.mustAccount("reserve", "ASSET", false)
	tf.mustAccount("alice", "LIABILITY", true)
	tf.mustAccount("bob", "LIABILITY", true)
	tf.transfer(xfer("fund", "reserve", "alice", 100))
	// A chain whose second transfer overdraws bob: alice's debit must not stay.
	res := tf.transfers(nil,
		&bankdv1.Transfer{Id: "l1", DebitAccountId: "alice", CreditAccountId: "bob", Amount: 60, Currency: "BTC", Linked: true},
		xfer("l2", "bob", "reserve", 500))
	if res[1].Code != bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS {
		t.Fatalf("l2: %v", res[1])
	}
	// Several commands in one Raft batch, each reading what the one before wrote.
	var logs []*raft.Log
	for _, ts := range [][]*bankdv1.Transfer{
		{xfer("b1", "alice", "bob", 10)},
		{xfer("b2", "bob", "alice", 4), xfer("b3", "bob", "reserve", 1)},
		{xfer("b4", "alice", "bob", 1000)}, // refused: alice has 94
	} {
		l := tf.entry(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, nil)
		tf.log = append(tf.log, l)
		logs = append(logs, l)
	}
	out := tf.ApplyBatch(logs)
	if r := out[2].(*bankdv1.CreateTransfersResponse).Results[0]; r.Code != bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS {
		t.Fatalf("b4: %v", r)
	}
	checkInvariants(t, tf)
	if a, b := tf.balance("alice").Posted, tf.balance("bob").Posted; a != 94 || b != 5 {
		t.Fatalf("alice %d bob %d, want 94 and 5", a, b)
	}

	// Restore another replica from a snapshot, then move on from there on both.
	other := openTestFSM(t)
	if err := other.Restore(readCloser(snapshotBytes(t, tf.FSM))); err != nil {
		t.Fatal(err)
	}
	checkResidentAccounts(t, other.FSM)
	other.nowMs, other.log = tf.nowMs, tf.log
	for _, f := range []*testFSM{tf, other} {
		f.transfer(xfer("after", "alice", "bob", 1))
		checkInvariants(t, f)
	}
	_, sumOriginal := tf.hash()
	if _, sumRestored := other.hash(); sumOriginal != sumRestored {
		t.Fatal("the restored replica and the original disagree after the same transfer")
	}

	// Reopen: the resident state is rebuilt from the store.
	reopened := tf.reopen()
	checkResidentAccounts(t, reopened)
	if n := reopened.accounts.len(); n != 3 {
		t.Fatalf("%d resident accounts after reopen, want 3", n)
	}
}

// TestResidentAccountCheckCatchesDrift shows checkResidentAccounts fails when memory and the
// store disagree.
func TestResidentAccountCheckCatchesDrift(t *testing.T) {
	tf := openTestFSM(t)
	tf.mustAccount("reserve", "ASSET", false)
	tf.mustAccount("alice", "LIABILITY", true)
	tf.transfer(xfer("fund", "reserve", "alice", 100))
	acc, _ := tf.accounts.copyTo("alice", &accountAndBalance{})
	drifted := newResidentAccount(acc)
	drifted.balance[1]++ // credits posted
	tf.accounts.put(drifted)
	rec := &recordingFailer{}
	checkResidentAccounts(rec, tf.FSM)
	if rec.failure == "" {
		t.Fatal("checkResidentAccounts accepted an account whose balance differs from the store")
	}
}

type recordingFailer struct{ failure string }

func (r *recordingFailer) Helper()                        {}
func (r *recordingFailer) Fatal(args ...any)              { r.failure = fmt.Sprint(args...) }
func (r *recordingFailer) Fatalf(format string, a ...any) { r.failure = fmt.Sprintf(format, a...) }

// TestResidentAccountsHandOutWhatTheRecordsHeld checks the compact resident record against the
// store: for random accounts (multi-byte strings, metadata, extreme numbers, no balance, unknown
// fields), the copy a command gets from memory equals the copy of the decoded stored record,
// and writing it back gives the same bytes. Before resident records were compact, that copy of
// the decoded record is exactly what commands got.
func TestResidentAccountsHandOutWhatTheRecordsHeld(t *testing.T) {
	if size := unsafe.Sizeof(residentAccount{}); size != 128 {
		t.Errorf("a resident account is %d bytes; the layout and docs/HOT_PATH.md say 128", size)
	}
	g := recordGen{rng: rand.New(rand.NewPCG(11, 13))}
	for i := range 20_000 {
		stored, err := proto.Marshal(g.account())
		if err != nil {
			t.Fatal(err)
		}
		decoded := &bankdv1.Account{}
		if err := proto.Unmarshal(stored, decoded); err != nil {
			t.Fatal(err)
		}
		want := copyAccountTo(&accountAndBalance{}, decoded)
		got := newResidentAccount(decoded).copyTo(&accountAndBalance{})
		if !proto.Equal(got, want) {
			t.Fatalf("account %d:\n from memory %v\n want        %v", i, got, want)
		}
		gotBytes, err := appendAccount(nil, got)
		if err != nil {
			t.Fatal(err)
		}
		wantBytes, err := appendAccount(nil, want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gotBytes, wantBytes) {
			t.Fatalf("account %d: written back as %x, want %x", i, gotBytes, wantBytes)
		}
		if (got.Balance == nil) != (decoded.Balance == nil) {
			t.Fatalf("account %d: balance present %v, stored %v", i, got.Balance != nil, decoded.Balance != nil)
		}
	}
}

func newResidentAccount(acc *bankdv1.Account) *residentAccount {
	r := residentAccountOf(acc)
	return &r
}
