package fsm

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/hashicorp/raft"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// BenchmarkApplyTransfers measures how fast one replica applies CREATE_TRANSFERS entries of
// different sizes between 1,000 accounts (the state machine alone: no Raft, no network), in
// each stored format (format.go). Every transfer debits "reserve", as in bankbench.
func BenchmarkApplyTransfers(b *testing.B) {
	for _, perCommand := range []int{1, 100, 1000} {
		for _, format := range []uint32{FormatBaseline, FormatGroupedHistory} {
			b.Run(fmt.Sprintf("transfers_per_command=%d/format=%d", perCommand, format), func(b *testing.B) {
				benchmarkApplyTransfers(b, perCommand, format)
			})
		}
	}
}

func benchmarkApplyTransfers(b *testing.B, perCommand int, format uint32) {
	tf := openTestFSM(&testing.T{})
	defer tf.Close()
	tf.t = &testing.T{}
	const accounts = 1000
	tf.mustAccount("reserve", "ASSET", false)
	for i := 0; i < accounts; i++ {
		tf.mustAccount(fmt.Sprintf("c%d", i), "LIABILITY", false)
	}
	tf.switchFormat(format)
	// The entries are encoded before the timer starts, so that what the benchmark
	// reports, allocations included, is the state machine's alone.
	entries := make([]*raft.Log, b.N)
	next := 0
	for i := range entries {
		ts := make([]*bankdv1.Transfer, perCommand)
		for j := range ts {
			next++
			ts[j] = xfer(fmt.Sprintf("b%d", next), "reserve", fmt.Sprintf("c%d", next%accounts), 1)
		}
		entries[i] = tf.entry(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, nil)
		tf.log = append(tf.log, entries[i])
	}
	b.ResetTimer()
	for _, l := range entries {
		if err, refused := tf.Apply(l).(error); refused {
			b.Fatalf("apply: %v", err)
		}
	}
	b.ReportMetric(float64(b.N*perCommand)/b.Elapsed().Seconds(), "transfers/s")
}

// BenchmarkResidentAccounts measures what resident accounts cost: the heap one account takes
// in memory, and how long Open (or Restore) takes to load them from the store. The accounts are
// customer accounts as CreateAccount stores them, with ids like "customer-0001234567".
func BenchmarkResidentAccounts(b *testing.B) {
	const n = 200_000
	tf := openTestFSM(&testing.T{})
	defer tf.Close()
	batch := tf.db.NewBatch()
	for i := range n {
		acc := &bankdv1.Account{Id: fmt.Sprintf("customer-%010d", i), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY,
			NonNegative: true, Balance: &bankdv1.Balance{CreditsPosted: int64(i), Posted: int64(i), Available: int64(i)},
			CreatedAtUnixMs: 1_700_000_000_000, CreatedIndex: uint64(i), Owner: bankdv1.Owner_OWNER_CLIENT}
		v, err := marshal.Marshal(acc)
		if err != nil {
			b.Fatal(err)
		}
		if err := batch.Set(accountKey(acc.Id), v, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := batch.Commit(nil); err != nil {
		b.Fatal(err)
	}
	// Flushed, so that no memtable is freed or allocated between the two measurements.
	if err := tf.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := batch.Close(); err != nil {
		b.Fatal(err)
	}
	// A first load settles what loading leaves behind besides the accounts (the block cache,
	// table readers), so that the measured load's heap growth is the accounts alone.
	if _, err := loadResidentAccounts(tf.db); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	b.ResetTimer()
	for range b.N {
		runtime.GC()
		runtime.ReadMemStats(&before)
		accounts, err := loadResidentAccounts(tf.db)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perAccount := float64(after.HeapAlloc-before.HeapAlloc) / float64(accounts.len())
		b.ReportMetric(perAccount, "heap-bytes/account")
		b.ReportMetric(perAccount*10_000_000/(1<<30), "GiB-per-10M-accounts")
		runtime.KeepAlive(accounts)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "load-µs/account")
}

// BenchmarkTransferFilterLoad measures what the transfer-id filter costs at start (and after a
// snapshot restore): the time to read every transfer id of the store, and its memory per id.
func BenchmarkTransferFilterLoad(b *testing.B) {
	const n = 1_000_000
	tf := openTestFSM(&testing.T{})
	defer tf.Close()
	batch := tf.db.NewBatch()
	value := make([]byte, 200) // about a stored transfer: request hash and record
	for i := range n {
		if err := batch.Set(transferKey(fmt.Sprintf("transfer-%010d", i)), value, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := batch.Commit(nil); err != nil {
		b.Fatal(err)
	}
	if err := tf.db.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var f *transferFilter
	for range b.N {
		var err error
		if f, err = loadTransferFilter(tf.db); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "load-ns/id")
	b.ReportMetric(float64(f.bytes())/n, "bytes/id")
}
