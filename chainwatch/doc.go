// Package chainwatch follows a Bitcoin node (btcd or bitcoind, over JSON-RPC) on behalf of the
// cluster: the Raft leader's Watcher turns the node's blocks, reorgs and mempool into the
// state machine's chain commands (fsm/chain.go), which every replica applies alike.
//
// # The script index, on every node
//
// Matching a block must cost a lookup per output, not a scan of millions of scripts, so each
// node keeps an Index: the fingerprints (watchset.ScriptSet) of every script in the state
// machine's script table. The node subscribes it to the state machine before anything is
// applied (fsm.Options.OnScriptsWatched, called after each committed batch that added scripts),
// loads it from the store's keys when the store is opened, and loads it again after every
// snapshot restore, which replaces the store without calling the hook (node.ScriptIndex; the
// reload runs on Raft's apply goroutine, so nothing is applied before it is complete). Adding a
// script twice is harmless and scripts are never removed, so a follower's index is always
// complete up to its applied index, and a new leader's watcher needs no load of its own.
//
// # The watcher, on the leader only
//
// Watcher is a node.Driver: it runs after the leader's Barrier (every earlier entry applied) and
// stops the moment leadership is lost. When it starts it checks that the node is on the
// cluster's network (and that the state machine's wallets are too), and builds the outpoint
// index (watchset.OutpointSet) of our UTXOs and the inputs of tracked transactions from the
// state machine. Then it loops, one step at a time:
//
//   - follow.Next compares the node's best chain with the state machine's chain (its tip and the
//     block hashes it keeps) and says Connect, Disconnect or Idle.
//   - Connect: the block is matched (watchset.Match); every candidate output is confirmed with
//     fsm.LookupScript, so a fingerprint collision never reaches Raft; a transaction is kept
//     when it pays a confirmed watched script or spends a watched outpoint (or an output of ours
//     created earlier in the block), with every input's outpoint. The kept transactions become
//     one ChainBlockConnected (with final_depth and keep_hashes from cluster.hcl), proposed
//     through Raft. A block with more such transactions than fsm.MaxChainTxsPerCommand is not
//     truncated: the watcher logs, counts and retries, and does not follow past it.
//   - Disconnect: a ChainBlockDisconnected of the tip (a reorg, tip first, down to the fork).
//   - Idle (the state machine's tip is the node's best block): the mempool is polled, see below;
//     then the watcher sleeps poll_interval.
//
// Each command is proposed on its own and the watcher waits for it to apply before deciding the
// next from the state machine again, so the state machine is the watcher's only memory of the
// chain: after a failover the new leader resumes at the state machine's tip, with no block
// missed or connected twice. A command the state machine refuses with CHAIN_CONFLICT (it moved
// under the watcher, e.g. a command whose outcome was unknown did apply) changed nothing: the
// watcher re-reads and goes on. Every other failure (the node unreachable, a wrong network, a
// reorg deeper than the kept hashes, a failed proposal) is logged, counted in
// bankd_chainwatch_errors_total{kind} and retried with backoff (100 ms doubling to 30 s); the
// watcher never stops on its own while it leads.
//
// # The mempool
//
// A poll reads the state machine's tip and PENDING transactions, then the node's mempool. New
// txids (not examined by this leader yet; at most 2,000 a poll) are fetched and matched like a
// block's transactions. Removed are the PENDING transactions not in the mempool, from the state
// machine rather than from the previous poll, so a new leader evicts what left the mempool while
// there was none. The ChainMempool command names the tip it was observed at and is proposed
// only if the node's best block is still that tip after the poll; otherwise a "removed"
// transaction may just have been mined, and the round is skipped. Polls happen only while the
// state machine has a tip that is the node's best block.
//
// # Why matching on the leader alone is sound
//
// Every address is handed out by a NewDepositAddress command, and the client learns it only
// after the command applied on the leader, whose index the hook updated in that same apply. Any
// later payment to it is in a block or mempool transaction the watcher matches after that, on
// this leader or on a later one (whose index holds every script it applied before its Barrier).
// Look-ahead scripts of a wallet are in the index from the wallet's creation. One case is not
// covered: a script that enters a wallet's look-ahead window only because an earlier output of
// the same block paid a script near its end is not matched in that block (the window grows as
// the block applies, after the leader matched it).
//
// # Outpoint index
//
// The outpoint index may hold more than the state machine needs (outpoints of commands that
// were refused, UTXOs spent since): an extra outpoint only makes a transaction a candidate that
// the state machine ignores. It is rebuilt from the state machine at every leadership start.
package chainwatch
