package fsm

import (
	"fmt"
	"testing"
)

// TestBlockCacheHoldsBlocksBesideTheMemtables checks that the store's block cache keeps blocks
// while two memtables are alive. Pebble takes its memtables' memory out of the block cache, and
// a 128 MiB cache beside two 64 MiB memtables (the mutable one and one still held after its
// flush) held nothing: every transfer-id lookup read filter and index blocks from disk.
func TestBlockCacheHoldsBlocksBesideTheMemtables(t *testing.T) {
	tf := openTestFSM(t)
	value := make([]byte, 1000)
	for chunk := range 8 { // 80 MB: more than one memtable
		b := tf.db.NewBatch()
		for i := range 10_000 {
			if err := b.Set(transferKey(fmt.Sprintf("t%d-%06d", chunk, i)), value, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(nil); err != nil {
			t.Fatal(err)
		}
	}
	// An open iterator keeps the current memtable alive after the flush, as a Raft snapshot
	// being persisted or a long read does.
	it, err := tf.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if err := tf.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i := range 1000 {
			_, closer, err := tf.db.Get(transferKey(fmt.Sprintf("t3-%06d-absent-%d", i*10, round)))
			if err == nil {
				closer.Close()
			}
		}
	}
	m := tf.db.Metrics()
	if m.BlockCache.Hits == 0 {
		t.Fatalf("block cache: %d entries, %d hits, %d misses after 2,000 lookups; memtables %d bytes: it holds nothing",
			m.BlockCache.Count, m.BlockCache.Hits, m.BlockCache.Misses, m.MemTable.Size)
	}
	t.Logf("block cache: %d entries, %d bytes, %d hits, %d misses; memtables %d bytes", m.BlockCache.Count, m.BlockCache.Size, m.BlockCache.Hits, m.BlockCache.Misses, m.MemTable.Size)
}
