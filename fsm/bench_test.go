package fsm

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// BenchmarkApplyTransfers measures how fast one replica applies CREATE_TRANSFERS entries of
// different sizes between 1,000 accounts (the state machine alone: no Raft, no network).
func BenchmarkApplyTransfers(b *testing.B) {
	for _, perCommand := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("transfers_per_command=%d", perCommand), func(b *testing.B) {
			tf := openTestFSM(&testing.T{})
			defer tf.Close()
			tf.t = &testing.T{}
			const accounts = 1000
			tf.mustAccount("reserve", "ASSET", false)
			for i := 0; i < accounts; i++ {
				tf.mustAccount(fmt.Sprintf("c%d", i), "LIABILITY", false)
			}
			next := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ts := make([]*bankdv1.Transfer, perCommand)
				for j := range ts {
					next++
					ts[j] = xfer(fmt.Sprintf("b%d", next), "reserve", fmt.Sprintf("c%d", next%accounts), 1)
				}
				l := tf.entry(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, nil)
				tf.log = append(tf.log, &raft.Log{})
				tf.Apply(l)
			}
			b.ReportMetric(float64(b.N*perCommand)/b.Elapsed().Seconds(), "transfers/s")
		})
	}
}
