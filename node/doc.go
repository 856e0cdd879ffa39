// Package node runs one bankd cluster member: it reads cluster.hcl, owns the Raft log
// (raft-boltdb), the snapshot store and the memberlist gossip, feeds committed entries to the
// state machine in fsm/, and runs the leader-only work.
//
// What it owns:
//   - Config: parsing and validating cluster.hcl, with file:line in every error.
//   - Identity: each data dir gets a Raft id "<node id>-<8 hex>" when it is created, so a node
//     whose disk was wiped comes back as a new Raft server and must be re-added.
//   - Discovery and bootstrap: memberlist carries each node's Raft id, addresses, version and
//     whether it has Raft state. A fresh cluster bootstraps only once every configured node is
//     alive and none has state; every node bootstraps the same voter set.
//   - Leadership: on Raft's notify channel the leader runs a Barrier, marks itself ready for
//     linearizable reads, then starts the leader-only Drivers and its own duties (membership
//     reconciliation, ticks for pending-transfer expiry). Losing leadership stops them all.
//   - Writes (Apply) and read levels (ReadBarrier for linearizable reads, ReadMeta for stale ones).
//   - Operator actions: leadership transfer, node removal, status, members, metrics.
//
// What it must never do: interpret commands (that is fsm/), talk to clients (that is rpc/), or
// make slow external calls while establishing leadership.
package node
