// Package systemtest runs bankd as a cluster of real OS processes (the binary built by
// `make build`, fsync on) and checks what an operator relies on: killed leaders lose no
// acknowledged write, restarted and far-behind nodes catch up, retries apply once, stale lock
// tokens are refused, and all replicas end with the same state hash. With a real btcd
// (regtest), the chain watcher survives a SIGKILLed leader without missing or repeating a block
// or a deposit credit.
//
// The tests are skipped with -short; the chain test also without btcd, unless
// BANKD_REQUIRE_BTCD is set.
package systemtest
