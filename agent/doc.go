// Package agent wires one bankd node: the one place where the pieces of a running member are
// put together, so that `bankd agent` and every in-process test cluster run the same thing.
//
// What it owns:
//   - construction, in this order: the node (node.New, with a chain script index on every node
//     when cluster.hcl's chain block names a Bitcoin node), the Lightning pool driver, the API
//     server (rpc.New), the metrics of each on the API's registry, the chain watcher driver
//     when the chain block asks for one, and any extra drivers the caller adds;
//   - start: the API port is bound before the node joins the cluster, so a taken port fails
//     the start rather than later, and the API serves only once the node has started;
//   - stop: the API first (calls in flight still find a running node), then the node, which
//     hands leadership to a follower; Shutdown is idempotent and bounded.
//
// What it must never do: parse flags, read the environment, catch signals or exit the process
// (that is cmd/bankd), decide anything about money, locks or addresses (that is fsm/, applied
// through node/), or talk to clients itself (that is rpc/). Wiring added anywhere else — a
// main, a test harness — is wiring that production and tests no longer share: add it here.
package agent
