// Package rpc is bankd's API edge: it serves the bankd.v1 Connect services (LedgerService,
// LockService, EventService, ClusterService, WalletService) over Connect, gRPC and gRPC-Web on
// one HTTP port, next to gRPC health, gRPC reflection and the operational endpoints (/metrics,
// /healthz, /readyz).
//
// The package owns everything that happens between the wire and the node:
//
//   - authentication: one request gate checks the bearer token and its scope (admin or client)
//     before a message is even decoded;
//   - validation: cheap field checks with the rules exported by fsm/, so a malformed request is
//     refused with InvalidArgument naming the field and is never proposed;
//   - routing: writes and linearizable reads run on the leader; a follower forwards the same RPC
//     once, in one generic helper, to the leader's API address (marked with Bankd-Forwarded so a
//     request is never forwarded twice); stale reads and the event stream are answered locally;
//   - error mapping: one function turns fsm refusals and node errors into one Connect code each,
//     with the fsm result code attached (header Bankd-Result-Code and an ErrorInfo detail);
//   - observability: one interceptor records a latency histogram per procedure and code and
//     writes the access log.
//
// The package must never decide anything about money, locks or addresses: every rule that
// touches state lives in fsm/ and is applied through Raft by node/. rpc only reads the local
// state machine (and fills a CreateWallet's network from cluster.hcl).
package rpc
