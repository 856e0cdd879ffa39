// Package fsm is bankd's replicated state machine: the double-entry ledger, lease locks,
// watch-only wallets with their deposit addresses and script table, and the event log, applied
// from Raft entries into a Pebble store.
//
// Apply is deterministic. It reads only the command and the store: cluster time comes from the
// leader's stamp on each command (never the local clock), and nothing iterates a Go map. Each
// command is one Pebble batch that also records the Raft index it applied, so entries replayed
// after a restart are skipped. A command this binary does not understand stops the state machine
// (fail-stop) rather than being skipped, because a skipped money movement would make replicas
// diverge.
//
// The package never talks to the network and never proposes anything: node/ feeds it Raft
// entries, and rpc/ reads from it. It never holds a private key: wallets are output
// descriptors of public keys (wallet/descriptor), from which it derives scripts and addresses.
package fsm
