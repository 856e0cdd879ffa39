package fsm

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// BenchmarkWalletCommands measures the apply time of the wallet commands on one replica: a
// wallet creation derives gap_limit scripts per branch, a deposit address two scripts.
func BenchmarkWalletCommands(b *testing.B) {
	b.Run("create_wallet_gap=1000_two_branches", func(b *testing.B) {
		tf := openTestFSM(&testing.T{})
		defer tf.Close()
		tf.t = &testing.T{}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			// Each wallet needs its own key: scripts have one owner.
			desc := fmt.Sprintf("wpkh(%s/<%d;%d>/*)", tpub(b, uint32(i%8)), 2*(i/8), 2*(i/8)+1)
			l := tf.entry(bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, &bankdv1.CreateWalletRequest{
				WalletId: fmt.Sprintf("w%d", i), Kind: kindDeposit, Descriptor_: desc, Network: "regtest", GapLimit: 1000,
			}, nil)
			tf.log = append(tf.log, &raft.Log{})
			if _, ok := tf.Apply(l).(*bankdv1.CreateWalletResponse); !ok {
				b.Fatalf("create wallet %d refused", i)
			}
		}
		b.ReportMetric(float64(b.N*2000)/b.Elapsed().Seconds(), "scripts/s")
	})
	b.Run("new_deposit_address", func(b *testing.B) {
		tf := openTestFSM(&testing.T{})
		defer tf.Close()
		tf.t = &testing.T{}
		tf.mustAccount("alice", "LIABILITY", true)
		tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep", Kind: kindDeposit, Descriptor_: depositDescriptor(b, 0)})
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			l := tf.entry(bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS, &bankdv1.NewDepositAddressRequest{
				AccountId: "alice", RequestId: fmt.Sprintf("r%d", i),
			}, nil)
			tf.log = append(tf.log, &raft.Log{})
			if _, ok := tf.Apply(l).(*bankdv1.NewDepositAddressResponse); !ok {
				b.Fatalf("address %d refused", i)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "addresses/s")
	})
}
