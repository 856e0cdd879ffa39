// Package hosts runs a bankd cluster as N hosts, each a Linux network namespace joined to a
// private bridge by a veth pair, so that faults can act on packets and processes rather than
// inside bankd.
//
// One run owns a run id (4 hex digits) and every name it creates carries it: the bridge
// bkj<id>, the namespaces bkj<id>-n<I>, the host-side veths bkj<id>-v<I>, one FORWARD rule in
// the root namespace commented bkj:<id> (so bridged traffic passes when br_netfilter is on),
// and an owner file /run/bkj/<id>.pid. Host I gets 10.213.<net>.(10+I)/24 and the bridge
// 10.213.<net>.1, where <net> is the first 10.213.x.0/24 not already on this machine. The
// harness (the client) stays in the root namespace and reaches every API through the bridge.
//
// Faults: SIGKILL and restart, SIGSTOP and SIGCONT, iptables DROP rules inside each namespace
// (partitions and one-way drops; the client is never cut off), and tc netem on a namespace's
// veth when the kernel has it.
//
// Latency (Options.Regions): the hosts sit in regions, and the harness process runs one
// netproxy Link per ordered pair of hosts and peer port (Raft, API) on the bridge address;
// a DNAT rule in the nat table of each namespace (commented bkj:<id>) sends a host's
// connections to a peer's port through its Link. The drop rules cover those connections too.
//
// The package must never address anything outside its own bridge network or loopback, and
// never remove anything that does not carry the bkj prefix: Cleanup removes what this run made,
// CleanupStale removes what crashed runs (whose owner process is gone) left behind.
package hosts
