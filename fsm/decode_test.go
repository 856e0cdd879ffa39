package fsm

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// sameAsProto fails t unless decodeCreateTransfers, where it decodes body, gives what
// proto.Unmarshal gives, and reports whether it decoded.
func sameAsProto(t testing.TB, body []byte) (decoded bool) {
	t.Helper()
	got, ok := decodeCreateTransfers(body)
	if !ok {
		return false
	}
	want := &bankdv1.CreateTransfersRequest{}
	if err := proto.Unmarshal(body, want); err != nil {
		t.Fatalf("decoded %x, which proto.Unmarshal refuses: %v", body, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("decoded %x as\n%v\nproto.Unmarshal gives\n%v", body, got, want)
	}
	return true
}

func encodeRequest(t testing.TB, req *bankdv1.CreateTransfersRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeCreateTransfersTakesTheCommonShape lists the bodies the fast decoder must take:
// what clients and the drivers send every day.
func TestDecodeCreateTransfersTakesTheCommonShape(t *testing.T) {
	every := &bankdv1.Transfer{
		Id: "t-1", DebitAccountId: "reserve", CreditAccountId: "alice", Amount: 5, Currency: "BTC", Code: 7,
		ExternalRef: "order-9 €", Linked: true, Pending: true, PostPending: true, VoidPending: true, PendingId: "p-1",
		TimeoutMs: 1000, Index: 12, CreatedAtUnixMs: 1_700_000_000_000, State: bankdv1.TransferState_TRANSFER_STATE_POSTED,
		PostedAmount: -3, ExpiresAtUnixMs: 99, Owner: bankdv1.Owner_OWNER_CHAIN,
	}
	for _, tc := range []struct {
		name string
		req  *bankdv1.CreateTransfersRequest
	}{
		{"no transfers", &bankdv1.CreateTransfersRequest{}},
		{"one plain transfer", &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{xfer("t", "reserve", "alice", 5)}}},
		{"every field but metadata", &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{every}}},
		{"an empty transfer", &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{{}}}},
		{"a linked chain and a post", &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
			{Id: "a", DebitAccountId: "x", CreditAccountId: "y", Amount: 1, Currency: "BTC", Linked: true},
			{Id: "b", PostPending: true, PendingId: "a", Amount: 1},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !sameAsProto(t, encodeRequest(t, tc.req)) {
				t.Fatal("the fast decoder gave up on a body of the common shape")
			}
		})
	}
}

// TestDecodeCreateTransfersLeavesTheRestToProto lists bodies the fast decoder must give up on,
// so that proto.Unmarshal decodes (or refuses) them exactly as before.
func TestDecodeCreateTransfersLeavesTheRestToProto(t *testing.T) {
	plain := encodeRequest(t, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{xfer("t", "reserve", "alice", 5)}})
	inTransfer := func(fields ...byte) []byte {
		msg := append(append([]byte(nil), plain[2:]...), fields...)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), msg)
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"metadata", encodeRequest(t, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
			{Id: "t", Metadata: map[string]string{"k": "v"}}}})},
		{"a fence", encodeRequest(t, &bankdv1.CreateTransfersRequest{
			Transfers: []*bankdv1.Transfer{xfer("t", "reserve", "alice", 5)}, Fence: &bankdv1.Fence{LockName: "l", Token: 3}})},
		{"an unknown field in a transfer", inTransfer(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)...)},
		{"an unknown field in the request", append(append([]byte(nil), plain...), protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1)...)},
		{"an id sent as a number", inTransfer(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)...)},
		{"an amount sent as bytes", inTransfer(protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), []byte{1})...)},
		{"a fixed64 field", inTransfer(protowire.AppendFixed64(protowire.AppendTag(nil, 4, protowire.Fixed64Type), 1)...)},
		{"an id that is not UTF-8", inTransfer(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe})...)},
		{"a transfer cut short", plain[:len(plain)-1]},
		{"a transfer's length past the end", []byte{0x0a, 0x7f, 0x0a}},
		{"a varint that overflows", inTransfer(append(protowire.AppendTag(nil, 4, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)...)},
		{"field number zero", inTransfer(0x00, 0x01)},
		{"a group", inTransfer(protowire.AppendTag(nil, 15, protowire.StartGroupType)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if sameAsProto(t, tc.body) {
				t.Fatalf("the fast decoder took %x, which is not of the common shape", tc.body)
			}
		})
	}
}

// TestDecodeCreateTransfersMatchesProtoOnRandomBodies encodes random requests (metadata, unknown
// fields and multi-byte strings now and then) and mutates some of their bytes: wherever the
// fast decoder decodes, it must give what proto.Unmarshal gives, and it must decode most of the
// unmutated requests without metadata or unknown fields.
func TestDecodeCreateTransfersMatchesProtoOnRandomBodies(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 8))
	g := recordGen{rng: rng}
	common, decoded := 0, 0
	for range 5000 {
		req := &bankdv1.CreateTransfersRequest{}
		for range rng.IntN(4) {
			req.Transfers = append(req.Transfers, g.transfer())
		}
		body := encodeRequest(t, req)
		if rng.IntN(3) == 0 && len(body) > 0 {
			for range 1 + rng.IntN(3) {
				body[rng.IntN(len(body))] = byte(rng.Uint32())
			}
		} else if commonShape(req) {
			common++
			if !sameAsProto(t, body) {
				t.Fatalf("the fast decoder gave up on %v", req)
			}
		}
		if sameAsProto(t, body) {
			decoded++
		}
	}
	if common < 500 || decoded < common {
		t.Fatalf("only %d of the random requests were of the common shape, %d decoded fast", common, decoded)
	}
}

// commonShape reports whether req holds only what the fast decoder takes.
func commonShape(req *bankdv1.CreateTransfersRequest) bool {
	if req.Fence != nil || len(req.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for _, tr := range req.Transfers {
		if len(tr.Metadata) > 0 || len(tr.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
	}
	return true
}

// FuzzDecodeCreateTransfers: for any bytes, the fast decoder either gives up or gives what
// proto.Unmarshal gives.
func FuzzDecodeCreateTransfers(f *testing.F) {
	f.Add(encodeRequest(f, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{xfer("t", "reserve", "alice", 5)}}))
	f.Add(encodeRequest(f, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{{Id: "p", PostPending: true, PendingId: "q", State: 3, Owner: 2}}}))
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01})
	f.Add([]byte{0x0a, 0x00, 0x0a, 0x03, 0x0a, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) { sameAsProto(t, body) })
}

// TestEveryFastDecoderGivesItsHandlersBody checks that a command's fast decoder returns the
// message type its handler applies: another type would panic in the handler.
func TestEveryFastDecoderGivesItsHandlersBody(t *testing.T) {
	fast := 0
	for typ, h := range commandBodies {
		if h.decode == nil {
			continue
		}
		fast++
		msg, ok := h.decode(nil)
		if !ok {
			t.Fatalf("%s: the fast decoder gave up on an empty body", typ)
		}
		if got, want := reflect.TypeOf(msg), reflect.TypeOf(h.newBody()); got != want {
			t.Fatalf("%s: the fast decoder gives %v, the handler applies %v", typ, got, want)
		}
	}
	if fast == 0 {
		t.Fatal("no command has a fast decoder")
	}
}

// TestCommonTransfersAllocateNothingPerTransfer applies commands of 1,000 plain transfers and
// counts the heap allocations per command: the decoding, the records and the store keys of a
// transfer come from per-command arrays and chunks, so a command allocates far fewer times
// than it has transfers. The bound is loose (one allocation per transfer, where the code makes
// about one per eight), so that it only fails when something starts allocating per transfer.
func TestCommonTransfersAllocateNothingPerTransfer(t *testing.T) {
	tf := bank(t)
	const perCommand, commands = 1000, 10
	entries := make([]*raft.Log, commands+1)
	for i := range entries {
		ts := make([]*bankdv1.Transfer, perCommand)
		for j := range ts {
			ts[j] = xfer(fmt.Sprintf("a%d-%d", i, j), "reserve", []string{"alice", "bob"}[j%2], 1)
		}
		entries[i] = tf.entry(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, nil)
		tf.log = append(tf.log, entries[i])
	}
	next := 0
	apply := func() {
		res := tf.Apply(entries[next])
		next++
		resp, ok := res.(*bankdv1.CreateTransfersResponse)
		if !ok || resp.Results[perCommand-1].Code != bankdv1.ResultCode_RESULT_CODE_OK {
			t.Fatalf("command %d: %v", next, res)
		}
	}
	apply() // the first command grows the per-FSM buffers
	if allocs := testing.AllocsPerRun(commands-1, apply); allocs >= perCommand {
		t.Fatalf("a command of %d transfers made %.0f allocations: about one per transfer or more", perCommand, allocs)
	}
}
