package fsm

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// recordGen makes random records with the values that decide an encoding: zero and negative
// numbers, the largest ones, empty and multi-byte strings, maps with empty keys and values,
// unknown fields.
type recordGen struct{ rng *rand.Rand }

func (g recordGen) str() string {
	return []string{"", "a", "tx-000123", "ünïcødé €", "日本", string(make([]byte, 200)), "k\x00v"}[g.rng.IntN(7)]
}

func (g recordGen) num() int64 {
	return []int64{0, 1, -1, 127, 128, 300, 1 << 40, math.MaxInt64, math.MinInt64, g.rng.Int64()}[g.rng.IntN(10)]
}

func (g recordGen) meta() map[string]string {
	if g.rng.IntN(3) == 0 {
		return nil
	}
	m := map[string]string{}
	for range g.rng.IntN(5) {
		m[g.str()] = g.str()
	}
	return m
}

// unknown gives m an unknown field now and then, as a record from a newer client carries.
func (g recordGen) unknown(m proto.Message) {
	if g.rng.IntN(4) != 0 {
		return
	}
	b := protowire.AppendTag(nil, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(g.rng.Int64()))
	m.ProtoReflect().SetUnknown(b)
}

func (g recordGen) balance() *bankdv1.Balance {
	if g.rng.IntN(5) == 0 {
		return nil
	}
	b := &bankdv1.Balance{DebitsPosted: g.num(), CreditsPosted: g.num(), DebitsPending: g.num(),
		CreditsPending: g.num(), Posted: g.num(), Available: g.num()}
	g.unknown(b)
	return b
}

func (g recordGen) transfer() *bankdv1.Transfer {
	t := &bankdv1.Transfer{
		Id: g.str(), DebitAccountId: g.str(), CreditAccountId: g.str(), Amount: g.num(), Currency: g.str(),
		Code: uint32(g.num()), ExternalRef: g.str(), Metadata: g.meta(),
		Linked: g.rng.IntN(2) == 0, Pending: g.rng.IntN(2) == 0, PostPending: g.rng.IntN(2) == 0, VoidPending: g.rng.IntN(2) == 0,
		PendingId: g.str(), TimeoutMs: g.num(), Index: uint64(g.num()), CreatedAtUnixMs: g.num(),
		State: bankdv1.TransferState(g.rng.IntN(8) - 1), PostedAmount: g.num(), ExpiresAtUnixMs: g.num(),
		Owner: bankdv1.Owner(g.rng.IntN(5) - 1),
	}
	g.unknown(t)
	return t
}

func (g recordGen) account() *bankdv1.Account {
	a := &bankdv1.Account{
		Id: g.str(), Currency: g.str(), Kind: bankdv1.AccountKind(g.rng.IntN(7) - 1), NonNegative: g.rng.IntN(2) == 0,
		DailyDebitLimit: g.num(), Metadata: g.meta(), Balance: g.balance(), CreatedAtUnixMs: g.num(),
		CreatedIndex: uint64(g.num()), Owner: bankdv1.Owner(g.rng.IntN(5)),
	}
	g.unknown(a)
	return a
}

func (g recordGen) history() *bankdv1.HistoryEntry {
	h := &bankdv1.HistoryEntry{
		TransferId: g.str(), Index: uint64(g.num()), AtUnixMs: g.num(), DebitsPostedDelta: g.num(),
		CreditsPostedDelta: g.num(), DebitsPendingDelta: g.num(), CreditsPendingDelta: g.num(),
		BalanceAfter: g.balance(), Cause: bankdv1.TransferState(g.rng.IntN(7)),
	}
	g.unknown(h)
	return h
}

func (g recordGen) event() *bankdv1.Event {
	ev := &bankdv1.Event{Index: uint64(g.num()), AtUnixMs: g.num()}
	for range g.rng.IntN(6) {
		var item *bankdv1.EventItem
		switch g.rng.IntN(4) {
		case 0:
			item = &bankdv1.EventItem{Kind: &bankdv1.EventItem_AccountCreated{AccountCreated: g.account()}}
		case 1:
			item = &bankdv1.EventItem{Kind: &bankdv1.EventItem_TransferRejected{TransferRejected: &bankdv1.TransferResult{Id: g.str(), Message: g.str()}}}
		default:
			item = &bankdv1.EventItem{Kind: &bankdv1.EventItem_Transfer{Transfer: g.transfer()}}
		}
		g.unknown(item)
		ev.Items = append(ev.Items, item)
	}
	g.unknown(ev)
	return ev
}

// TestEncodersMatchProtoMarshal checks that the hand-written encoders give proto.Marshal's
// deterministic bytes for every record the apply path writes: the state hash and every stored
// record depend on it.
func TestEncodersMatchProtoMarshal(t *testing.T) {
	g := recordGen{rng: rand.New(rand.NewPCG(3, 5))}
	for i := range 5000 {
		for _, m := range []proto.Message{g.transfer(), g.account(), g.history(), g.event()} {
			want, err := marshal.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeProto(m)
			if err != nil {
				t.Fatalf("record %d, %T: %v", i, m, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("record %d, %T %v:\n got %x\nwant %x", i, m, m, got, want)
			}
			if tr, ok := m.(*bankdv1.Transfer); ok && sizeTransfer(tr) != len(want) {
				t.Fatalf("record %d: sizeTransfer %d, encoding is %d bytes", i, sizeTransfer(tr), len(want))
			}
		}
	}
}

// TestEncodersRefuseWhatProtoMarshalRefuses checks that a string that is not UTF-8, which
// proto.Marshal refuses, is refused by the encoders too, wherever it is.
func TestEncodersRefuseWhatProtoMarshalRefuses(t *testing.T) {
	const bad = "ok\xff"
	for _, tc := range []struct {
		name string
		m    proto.Message
	}{
		{"transfer id", &bankdv1.Transfer{Id: bad}},
		{"transfer metadata key", &bankdv1.Transfer{Id: "t", Metadata: map[string]string{bad: "v"}}},
		{"transfer metadata value", &bankdv1.Transfer{Id: "t", Metadata: map[string]string{"k": bad}}},
		{"account currency", &bankdv1.Account{Id: "a", Currency: bad}},
		{"history transfer id", &bankdv1.HistoryEntry{TransferId: bad}},
		{"transfer in an event", &bankdv1.Event{Items: []*bankdv1.EventItem{{Kind: &bankdv1.EventItem_Transfer{Transfer: &bankdv1.Transfer{PendingId: bad}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := marshal.Marshal(tc.m); err == nil {
				t.Fatal("proto.Marshal accepted it: the case tests nothing")
			}
			if _, err := encodeProto(tc.m); err == nil {
				t.Fatal("encoded a string that is not UTF-8")
			}
		})
	}
}

// FuzzTransferEncoding feeds transfers decoded from arbitrary bytes (unknown fields included)
// to the transfer encoder and compares it with proto.Marshal.
func FuzzTransferEncoding(f *testing.F) {
	g := recordGen{rng: rand.New(rand.NewPCG(1, 2))}
	for range 20 {
		b, _ := marshal.Marshal(g.transfer())
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := &bankdv1.Transfer{}
		if proto.Unmarshal(data, tr) != nil {
			return
		}
		want, wantErr := marshal.Marshal(tr)
		got, gotErr := encodeProto(tr)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("proto.Marshal error %v, encoder error %v", wantErr, gotErr)
		}
		if wantErr == nil && !bytes.Equal(got, want) {
			t.Fatalf("got %x\nwant %x", got, want)
		}
	})
}
