package fsm

import (
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// FuzzApplyCommandBody feeds arbitrary bodies under every known command type. Whatever the
// bytes, apply must answer (a response or a refusal), never panic or stop the state machine,
// and the ledger must still balance and the script table match the wallets' windows.
func FuzzApplyCommandBody(f *testing.F) {
	seed := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	f.Add(uint8(2), seed(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{xfer("t", "reserve", "alice", 5)}}))
	f.Add(uint8(2), seed(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{{Id: "p", PostPending: true, PendingId: "q"}}}))
	f.Add(uint8(1), seed(&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: "x", Currency: "BTC", Kind: 2}}))
	f.Add(uint8(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS-1), seed(&bankdv1.CreateAccountsRequest{Accounts: []*bankdv1.Account{{Id: "x", Currency: "BTC", Kind: 2}, {Id: "alice", Currency: "BTC", Kind: 1}}}))
	f.Add(uint8(bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT-1), seed(&bankdv1.BookAdjustmentRequest{Id: "a", AccountId: "ln:pool-1", AmountSat: -5, Kind: 3, Reason: "fees", ExternalReference: "fwd-1"}))
	f.Add(uint8(bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST-1), seed(&bankdv1.DeclareLndLostRequest{NodeId: "pool-1", Reason: "disk lost"}))
	f.Add(uint8(bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT-1), seed(&bankdv1.ResolveLostPaymentRequest{PaymentId: "p1", Evidence: 3, Reference: "payee ticket"}))
	f.Add(uint8(3), seed(&bankdv1.AcquireLockRequest{Name: "l", Holder: "h", TtlMs: 1000}))
	f.Add(uint8(5), []byte{0x0a, 0xff})
	depositDesc := depositDescriptor(f, 0)
	f.Add(uint8(6), seed(&bankdv1.CreateWalletRequest{WalletId: "w", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: depositDescriptor(f, 1), Network: "regtest", GapLimit: 3}))
	f.Add(uint8(6), seed(&bankdv1.CreateWalletRequest{WalletId: "w", Kind: bankdv1.WalletKind_WALLET_KIND_COLD, Descriptor_: "wsh(sortedmulti(1," + tpub(f, 1) + "/*," + tpub(f, 2) + "/*))", Network: "regtest"}))
	f.Add(uint8(7), seed(&bankdv1.NewDepositAddressRequest{AccountId: "alice", RequestId: "r"}))
	f.Add(uint8(7), seed(&bankdv1.NewDepositAddressRequest{AccountId: "reserve", WalletId: "dep", RequestId: "r"}))
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		tf := bank(t)
		tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: depositDesc, GapLimit: 2})
		cmdType := bankdv1.CommandType(1 + int32(typ)%int32(len(commandBodies)))
		cmd := &bankdv1.Command{Version: CommandVersion, Type: cmdType, LeaderTimeUnixMs: tf.nowMs, Body: body}
		data, err := proto.Marshal(cmd)
		if err != nil {
			t.Skip()
		}
		res := tf.Apply(&raft.Log{Index: uint64(len(tf.log) + 1), Type: raft.LogCommand, Data: data})
		if res == nil {
			t.Fatalf("no result for a %s command", cmdType)
		}
		if tf.fatals.count() != 0 {
			// The one body that must stop a replica: a switch to a format it cannot write.
			var sw bankdv1.SwitchFormatRequest
			if cmdType == bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT && proto.Unmarshal(body, &sw) == nil && sw.Format > LatestFormat {
				return
			}
			t.Fatalf("a bad body stopped the state machine: %v", tf.fatals.errs)
		}
		checkInvariants(t, tf)
		checkWalletInvariants(t, tf)
	})
}
