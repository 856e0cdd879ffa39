// Package watchset holds the in-memory index the chain follower matches
// blocks against: the output scripts bankd watches (tens of millions of
// deposit addresses) and the wallets' unspent outpoints.
//
// The authoritative record of a watched script (wallet, derivation index,
// owning account) lives in Pebble, keyed by SHA-256 of the script. This
// package only answers "might this output be ours?" and "does this input
// spend one of ours?" quickly enough to look at every output and input of
// every block, and leaves the rest to the record.
//
// # Scripts: ScriptSet
//
// A ScriptSet stores the 64-bit fingerprint of each script: the first eight
// bytes of SHA-256(script), read big-endian, which is also the first eight
// bytes of the script's Pebble key. A set can therefore be rebuilt at start-up
// from the keys alone (AddFingerprint), in key order, without reading or
// hashing the scripts.
//
// The fingerprints live in one open-addressing table of uint64 slots with
// linear probing. The table has a power-of-two number of slots, a
// fingerprint's home slot is its top bits, an empty slot holds zero (the
// fingerprint zero is stored as one), and the table doubles before it is
// three quarters full. The figures below come from the benchmarks in
// bench_test.go on a shared 2-core AMD EPYC VM under heavy load from other
// work (load average 11-15); memory figures are exact, times varied up to
// fourfold between runs and are pessimistic:
//
//   - 10,000,000 scripts take 2^24 slots: 128 MiB, 13.4 bytes a script, live
//     heap measured after a GC. Up to 12.58M scripts fit in that table. A set
//     grown from empty rather than pre-sized (NewScriptSet, Grow) ends at the
//     same size but passes through every smaller table, allocating 256 MiB in
//     all and briefly holding the old and new tables (192 MiB) while the last
//     one is built.
//   - Loading 10M scripts with Add took 4-22 s (SHA-256 and a cache miss per
//     script); loading 10M fingerprints in key order with AddFingerprint
//     took 0.3-0.6 s, as the table then fills front to back.
//   - SHA-256 of a 22-34 byte script (with the SHA extensions) measured
//     100-430 ns, hash/maphash under 5 ns. Even at the worst figure that is
//     3.5 ms for the 8,000 outputs of a full block, and SHA-256 buys the
//     key-prefix property above and the Pebble key of every candidate
//     (Output.ScriptHash) for free.
//   - A lookup costs a cache and TLB miss in a table far larger than the CPU
//     caches; Match arranges its lookups so that the misses overlap.
//
// # The false-positive contract
//
// A ScriptSet has no false negatives: Contains is true for every script that
// was added, at any load, across growth, and for concurrent readers once the
// Add has returned. It may have false positives: a script that was never
// added but shares its 64-bit fingerprint with a member is reported too. For
// a set of n scripts that happens with probability about n/2^64 per lookup,
// about 5e-13 for 10M scripts, or once in some 250 million full blocks. A
// hit is therefore a candidate, and callers confirm each one against the
// Pebble record (Output.ScriptHash is its key) before crediting anything;
// a rejected candidate costs one Pebble lookup and nothing else. The
// fingerprints zero and one share a slot value and so are each a false
// positive for the other.
//
// Scripts are never removed: bankd does not stop watching a script, and a
// table without deletion lets readers run without locks (see ScriptSet).
//
// # Outpoints: OutpointSet
//
// An OutpointSet is exact (a Go map keyed by wire.OutPoint, 36 bytes) and
// supports removal, since outpoints come and go as the wallets receive and
// spend. A million outpoints take about 100 MB of heap (100 bytes an
// outpoint: the map's power-of-two tables are often half empty), pre-sized
// or grown. Should the wallets ever hold tens of millions of unspent outputs,
// a fingerprint table like ScriptSet's that allows duplicates (so that
// removing one outpoint can never hide another) would take a seventh of
// that, at the price of candidates to confirm.
//
// # Matching: Match
//
// Match walks a block once and reports, per transaction in block order, the
// inputs spending a watched outpoint and the outputs paying a candidate
// script, including outputs spent later in the same block (reported both
// ways). It computes a txid (TxHash, never the witness hash) only for
// transactions that match. Against 10M scripts and 1M outpoints, a full
// block of 4,000 transactions (8,000 outputs, 8,000 inputs) took 12-25 ms
// on the loaded VM above, against a budget of 100 ms; a rescan decoded and
// matched 27-42 such blocks a second there.
//
// # Concurrency
//
// The matcher (the leader's chain follower) and the writer (the state
// machine applying new scripts and outpoints) run on different goroutines.
// ScriptSet readers take no lock: writers are serialized by a mutex, fill
// slots with atomic stores, and replace a full table by building a larger
// copy and publishing it with one atomic pointer store, so a reader sees
// either table, both valid. OutpointSet uses an RWMutex; Match holds its
// read lock once, for the inputs of a whole block.
package watchset
