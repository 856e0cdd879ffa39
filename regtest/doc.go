// Package regtest runs a real btcd on a private regression-test chain, for tests and for
// `make run`.
//
// [Start] launches the pinned btcd binary (built into bin/ by `make deps-btcd`, see [BtcdPath])
// on free loopback ports, with TLS on its RPC server and a throwaway data directory, and by
// default mines past segwit activation so that witness transactions are accepted at once. The
// returned [Btcd] mines blocks ([Btcd.Generate]), reorganises its chain ([Btcd.InvalidateBlock],
// [Btcd.ReconsiderBlock], [Btcd.Reorg]) and describes its RPC endpoint ([Btcd.RPC]) so that lnd
// or bankd can be pointed at it.
//
// btcd has no wallet, so every Btcd also carries a faucet: a private key of its own whose
// P2WPKH address receives the coinbase of every block the node mines (btcd's --miningaddr).
// [Btcd.Send] pays any set of output scripts from the faucet's mature coins, and [Btcd.Replace]
// and [Btcd.DoubleSpend] spend the same coins again elsewhere.
//
// Replacements: btcd v0.25.0 implements BIP125 opt-in replace-by-fee in its mempool and
// enables it by default (--rejectreplacement turns it off). A conflicting transaction is
// accepted when every transaction it conflicts with signals replaceability (an input sequence
// of at most 0xfffffffd, directly or through an unconfirmed ancestor), its fee rate is higher
// than each of theirs, its absolute fee exceeds their sum by at least the minimum relay fee
// for its own size, and it spends no new unconfirmed outputs. A conflict with a transaction
// that does not signal is refused ("output already spent in mempool"). Every transaction the
// faucet sends signals replaceability, so [Btcd.Replace] works on any of them while they are
// unconfirmed; [Btcd.DoubleSpend] also undoes a confirmation first, by invalidating the block
// that holds the original and mining a longer branch that holds the replacement.
//
// btcd deletes its regtest chain at every start, so a node never outlives its process: each
// Start begins at the genesis block, even on an existing data directory.
//
// Tests use [StartTest], which skips when btcd has not been built, unless the environment
// variable BANKD_REQUIRE_BTCD is set (as in CI), in which case a missing btcd fails the test.
// The command regtest/cmd/regtestd runs a node outside tests, e.g. for `make run`.
//
// Lightning: [StartLnd] runs one real lnd (bin/lnd from `make deps-lnd`, or $BANKD_LND, see
// [LndPath]) on a Btcd, with a fresh wallet, and hands out gRPC clients authenticated with its
// admin macaroon ([DialLnd]); an [Lnd] can be killed, stopped and restarted on the same
// directory and ports. [StartLightning] builds a small network on one Btcd: a pool of lnd
// nodes (a bank's) and one external lnd, started concurrently, funded from the faucet, with a
// public, balanced channel from the external node to every pool node, announced and known to
// every node before it returns (about 10-20 seconds on two cores). The external node can pay
// every pool node and be paid by each; pool nodes pay each other through it.
// [Lightning.AddPoolNode] grows the pool at runtime. [StartLightningTest] skips when lnd is
// missing unless BANKD_REQUIRE_LND is set.
package regtest
