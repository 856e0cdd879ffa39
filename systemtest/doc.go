// Package systemtest runs bankd as a cluster of real OS processes (the binary built by
// `make build`, fsync on) and checks what an operator relies on: killed leaders lose no
// acknowledged write, restarted and far-behind nodes catch up, retries apply once, stale lock
// tokens are refused, and all replicas end with the same state hash.
//
// The tests are skipped with -short.
package systemtest
