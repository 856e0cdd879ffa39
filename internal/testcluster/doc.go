// Package testcluster builds real bankd clusters for tests and benchmarks in a few lines, in the
// spirit of hashicorp/raft's MakeCluster: one Spec (internal/testcluster/clusterhcl) describes
// the cluster, and the same Spec runs in two modes.
//
//   - In process (Start): every node is a real agent (agent/) — Raft over loopback TCP,
//     raft-boltdb, Pebble, memberlist and the real API server on its own port — wired exactly
//     as `bankd agent` wires it. Nodes can be stopped, restarted and wiped with their data
//     dirs; the logs of every node are kept and shown when the test fails.
//   - As OS processes (StartProcs, LaunchProcs): the built bankd binary, one process per node,
//     with kill -9, SIGSTOP/SIGCONT, graceful stop, restart and wipe; each node logs to a file.
//
// Every wait is on a condition with a bound (WaitTimeout, or the caller's context): a leader
// known to every node, an applied index, equal state hashes. Nothing sleeps to let a race
// settle.
//
// It is test and benchmark support: bankd and bankctl never import it. It only binds loopback
// ports and only writes under the directory it is given (a test's TempDir).
package testcluster
