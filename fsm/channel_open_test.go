package fsm

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// channelFixture is a payout fixture with an active pool node "n1" and an operator "ops".
type channelFixture struct {
	*payoutFixture
	peer string
}

func newChannelFixture(t *testing.T) *channelFixture {
	t.Helper()
	f := newPayoutFixture(t)
	f.principal = ""
	f.mustOK(f.upsertNode("n1"))
	f.mustOK(f.health("n1", true, pubkeyHex(t, 5), 0))
	return &channelFixture{payoutFixture: f, peer: pubkeyHex(t, 6)}
}

func pubkeyHex(t *testing.T, seed byte) string {
	t.Helper()
	priv, _ := btcec.PrivKeyFromBytes(bytes.Repeat([]byte{seed}, 32))
	return hex.EncodeToString(priv.PubKey().SerializeCompressed())
}

func (f *channelFixture) open(id string, amount int64) any {
	f.t.Helper()
	f.principal = "ops"
	defer func() { f.principal = "" }()
	return f.do(bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_REQUEST, &bankdv1.ChannelOpenRequestCommand{
		Request:       &bankdv1.OpenChannelRequest{Id: id, NodeId: "n1", Peer: f.peer + "@127.0.0.1:9735", AmountSat: amount},
		PendingChanId: bytes.Repeat([]byte{9}, 32),
	}, nil)
}

func (f *channelFixture) step(id string, state bankdv1.ChannelOpenState, mod func(*bankdv1.ChannelOpenStep)) any {
	f.t.Helper()
	s := &bankdv1.ChannelOpenStep{Id: id, State: state}
	if mod != nil {
		mod(s)
	}
	return f.do(bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_STEP, s, nil)
}

func (f *channelFixture) channelOpen(id string) *bankdv1.ChannelOpen {
	f.t.Helper()
	o, err := f.ChannelOpen(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return o
}

// planChannel plans open id's funding from the funding transaction's output 0 (500,000 sat)
// with change, paying script as output 0.
func (f *channelFixture) planChannel(id string, script []byte, amount, change int64) any {
	f.t.Helper()
	o := f.funding.Outputs[0]
	op := &bankdv1.Outpoint{Txid: f.funding.Txid, Vout: 0}
	inputs := []*bankdv1.BatchInput{{Outpoint: op, ValueSat: o.ValueSat, Script: o.Script}}
	w, err := f.Wallet("hot")
	if err != nil {
		f.t.Fatal(err)
	}
	next := w.Branches[1].NextIndex
	outputs := []*bankdv1.BatchOutput{{ValueSat: amount, Script: script}, {ValueSat: change, Script: f.hotScript(1, next), Change: true, ChangeIndex: next}}
	raw, err := BuildPayoutPSBT(f.hotDesc, "regtest", inputs, outputs)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{
		Queue: ChannelQueue, WalletId: "hot", Inputs: []*bankdv1.Outpoint{op}, ChangeSat: change, Psbt: raw, ChannelOpenId: id,
	}, nil)
}

// negotiated takes a fresh open of 200,000 sat to NEGOTIATED with a p2wsh funding address and
// returns that address's script.
func (f *channelFixture) negotiated(id string) []byte {
	f.t.Helper()
	f.mustOK(f.open(id, 200_000))
	f.mustOK(f.step(id, bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED, func(s *bankdv1.ChannelOpenStep) {
		s.FundingAddress, s.FundingAmountSat = outsider(f.t, "p2wsh"), 200_000
	}))
	return f.channelOpen(id).FundingScript
}

func TestAChannelFundedThroughAPSBTIsBookedToItsNode(t *testing.T) {
	f := newChannelFixture(t)
	res, ok := f.open("c1", 200_000).(*bankdv1.OpenChannelResponse)
	if !ok || res.Open.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_REQUESTED || res.Open.RequestedBy != "ops" || res.Open.PeerHost != "127.0.0.1:9735" {
		t.Fatalf("open: %v", f.open("c1", 200_000))
	}
	if again, ok := f.open("c1", 200_000).(*bankdv1.OpenChannelResponse); !ok || !again.Replayed {
		t.Fatalf("a retried open is not replayed: %v", again)
	}
	refusal(t, f.open("c1", 300_000), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "another channel open")

	// Steps out of order, and funding outputs lnd must not ask for.
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED, nil), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "not PLANNED")
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED, func(s *bankdv1.ChannelOpenStep) {
		s.FundingAddress, s.FundingAmountSat = outsider(t, "p2wsh"), 250_000
	}), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "lnd asks for 250000")
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED, func(s *bankdv1.ChannelOpenStep) {
		s.FundingAddress, s.FundingAmountSat = outsider(t, "p2wpkh"), 200_000
	}), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "p2wsh or p2tr")
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED, func(s *bankdv1.ChannelOpenStep) {
		s.FundingAddress, s.FundingAmountSat = outsider(t, "mainnet-p2wpkh"), 200_000
	}), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "funding_address")
	f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED, func(s *bankdv1.ChannelOpenStep) {
		s.FundingAddress, s.FundingAmountSat = outsider(t, "p2wsh"), 200_000
	}))
	script := f.channelOpen("c1").FundingScript

	// A plan paying anything but the funding output lnd asked for is refused.
	refusal(t, f.planChannel("c1", f.hotScript(0, 4), 200_000, 299_000), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not the plan's")
	refusal(t, f.planChannel("c1", script, 150_000, 249_000), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not the plan's")
	planned, ok := f.planChannel("c1", script, 200_000, 299_000).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("channel plan refused: %v", f.planChannel("c1", script, 200_000, 299_000))
	}
	b := planned.Batch
	if o := f.channelOpen("c1"); o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PLANNED || o.BatchId != b.Id || o.Txid != b.Txid {
		t.Fatalf("open after the plan: %v", o)
	}
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING, nil), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "not VERIFIED")
	f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED, nil))
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING, nil), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "not signed")
	b = f.signedBatch(b.Id)
	f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING, nil))

	// From here lnd may publish it: the driver can no longer give it up, nor bump it.
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED, func(s *bankdv1.ChannelOpenStep) { s.Reason = "lnd timed out" }),
		bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "only an operator")
	refusal(t, f.bump(b, 298_000), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "bound to its txid")
	refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING, func(s *bankdv1.ChannelOpenStep) { s.Vout = 1 }),
		bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "output 0")
	f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING, nil))

	f.mustOK(f.connect(batchMatch(b)))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_FINAL {
		t.Fatalf("funding at final depth: %v", got.State)
	}
	if o := f.channelOpen("c1"); o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_OPEN || o.Txid != b.Txid {
		t.Fatalf("open at final depth: %v", o)
	}
	if posted, _ := f.net(LightningNodeAccount("n1")); posted != 200_000 {
		t.Fatalf("ln:n1 %d, want the channel's 200,000", posted)
	}
	if posted, _ := f.net(WalletAccount("hot")); posted != 599_000 {
		t.Fatalf("wallet:hot %d, want 800,000 less the channel and the 1,000 fee", posted)
	}
	if posted, _ := f.net(PayoutFeeExpenseAccount); posted != 1_000 {
		t.Fatalf("fee expense %d, want 1,000", posted)
	}
	if recs, _ := f.WalletReconciliation(); recs[0].DifferenceSat != 0 {
		t.Fatalf("reconciliation %v", recs)
	}
	if s, _ := f.Solvency(); s.LightningSat != 200_000 || s.WalletsSat != 599_000 {
		t.Fatalf("solvency %v", s)
	}
	if problems, _, _ := f.ListProblems("", 100); len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
}

func TestAFailedChannelOpenReleasesItsCoins(t *testing.T) {
	spendable := func(f *channelFixture) int {
		us, err := f.SpendableUtxos("hot")
		if err != nil {
			t.Fatal(err)
		}
		return len(us)
	}
	t.Run("the driver gives up a signed funding lnd never took", func(t *testing.T) {
		f := newChannelFixture(t)
		script := f.negotiated("c1")
		b := f.mustPlanChannel("c1", script)
		f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED, nil))
		f.signedBatch(b.Id)
		if n := spendable(f); n != 1 {
			t.Fatalf("%d spendable UTXOs while the funding is signed, want 1", n)
		}
		f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED, func(s *bankdv1.ChannelOpenStep) { s.Reason = "peer went away" }))
		if o := f.channelOpen("c1"); o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED || o.FailReason != "peer went away" || o.FailedBy != "" {
			t.Fatalf("open %v", o)
		}
		if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_ABANDONED {
			t.Fatalf("batch %v", got.State)
		}
		if n := spendable(f); n != 2 {
			t.Fatalf("%d spendable UTXOs after the failure, want both back", n)
		}
		refusal(t, f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING, nil), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "not FINALIZING")
	})
	t.Run("an operator gives up a FINALIZING open", func(t *testing.T) {
		f := newChannelFixture(t)
		b := f.mustPlanChannel("c1", f.negotiated("c1"))
		f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED, nil))
		f.signedBatch(b.Id)
		f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING, nil))
		f.principal = "ops"
		f.mustOK(f.step("c1", bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED, func(s *bankdv1.ChannelOpenStep) { s.Reason = "lnd restarted; never published" }))
		f.principal = ""
		if o := f.channelOpen("c1"); o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED || o.FailedBy != "ops" {
			t.Fatalf("open %v", o)
		}
		if n := spendable(f); n != 2 {
			t.Fatalf("%d spendable UTXOs, want both back", n)
		}
		// Should the transaction be published after all, the chain shows it and a problem says so.
		f.mustOK(f.connect(batchMatch(b)))
		if problems, _, _ := f.ListProblems("", 100); len(problems) == 0 {
			t.Fatal("an abandoned funding on chain recorded no problem")
		}
	})
	t.Run("abandoning a planned funding fails its open", func(t *testing.T) {
		f := newChannelFixture(t)
		b := f.mustPlanChannel("c1", f.negotiated("c1"))
		f.principal = "ops"
		res, ok := f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_ABANDON, &bankdv1.AbandonPayoutBatchRequest{BatchId: b.Id, Reason: "wrong peer"}, nil).(*bankdv1.AbandonPayoutBatchResponse)
		f.principal = ""
		if !ok || res.Batch.State != bankdv1.BatchState_BATCH_STATE_ABANDONED {
			t.Fatalf("abandon: %v", res)
		}
		if o := f.channelOpen("c1"); o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED {
			t.Fatalf("open %v", o)
		}
		if n := spendable(f); n != 2 {
			t.Fatalf("%d spendable UTXOs, want both back", n)
		}
	})
}

func TestChannelOpenRequestsThatAreRefused(t *testing.T) {
	f := newChannelFixture(t)
	req := func(mod func(*bankdv1.OpenChannelRequest)) any {
		r := &bankdv1.OpenChannelRequest{Id: "c", NodeId: "n1", Peer: f.peer, AmountSat: 100_000}
		mod(r)
		return f.do(bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_REQUEST, &bankdv1.ChannelOpenRequestCommand{Request: r, PendingChanId: make([]byte, 32)}, nil)
	}
	for _, tc := range []struct {
		name string
		mod  func(*bankdv1.OpenChannelRequest)
		code bankdv1.ResultCode
		msg  string
	}{
		{"below lnd's minimum", func(r *bankdv1.OpenChannelRequest) { r.AmountSat = 19_999 }, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat"},
		{"a peer that is no key", func(r *bankdv1.OpenChannelRequest) { r.Peer = "02" + f.peer[2:64] }, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "33-byte"},
		{"a key off the curve", func(r *bankdv1.OpenChannelRequest) { r.Peer = "05" + f.peer[2:] }, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not a public key"},
		{"a host without a port", func(r *bankdv1.OpenChannelRequest) { r.Peer = f.peer + "@example" }, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "host:port"},
		{"a node of no pool", func(r *bankdv1.OpenChannelRequest) { r.NodeId = "n9" }, bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "no pool node"},
		{"the node itself as peer", func(r *bankdv1.OpenChannelRequest) { r.Peer = pubkeyHex(t, 5) }, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "itself"},
	} {
		t.Run(tc.name, func(t *testing.T) { refusal(t, req(tc.mod), tc.code, tc.msg) })
	}
	// A channel queue plan without its open, and an open's plan in another queue.
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: ChannelQueue, WalletId: "hot",
		Inputs: []*bankdv1.Outpoint{{Txid: f.funding.Txid}}, ChangeSat: 1000, Psbt: []byte{1}}, nil), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "channel_open_id")
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: "batched", WalletId: "hot", ChannelOpenId: "c",
		Inputs: []*bankdv1.Outpoint{{Txid: f.funding.Txid}}, ChangeSat: 1000, Psbt: []byte{1}}, nil), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "channel_open_id")
}

func (f *channelFixture) mustPlanChannel(id string, script []byte) *bankdv1.PayoutBatch {
	f.t.Helper()
	res, ok := f.planChannel(id, script, 200_000, 299_000).(*bankdv1.PayoutPlanResponse)
	if !ok {
		f.t.Fatalf("channel plan: %v", f.planChannel(id, script, 200_000, 299_000))
	}
	return res.Batch
}

// FuzzParseChannelPeer: whatever an operator types as a peer, the parser answers with a
// refusal or a peer whose key is a point on the curve and whose host has a port, never panics.
func FuzzParseChannelPeer(f *testing.F) {
	key := "02" + hex.EncodeToString(bytes.Repeat([]byte{0x79}, 32))
	for _, s := range []string{key, key + "@127.0.0.1:9735", key + "@[::1]:9735", key + "@host", "@:1", "", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, refused := ParseChannelPeer("peer", s)
		if refused != nil {
			return
		}
		raw, err := hex.DecodeString(p.Pubkey)
		if err != nil {
			t.Fatalf("accepted key %q is not hex", p.Pubkey)
		}
		if _, err := btcec.ParsePubKey(raw); err != nil {
			t.Fatalf("accepted %q whose key is not on the curve: %v", s, err)
		}
		if p.Host != "" && !strings.Contains(p.Host, ":") {
			t.Fatalf("accepted host %q without a port", p.Host)
		}
	})
}
