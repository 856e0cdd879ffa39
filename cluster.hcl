# cluster.hcl — the example bankd cluster: three nodes on one machine (used by `make run`).
# Every node of a cluster reads the same file and picks its own block by node id
# (`bankd -config cluster.hcl -node n1`). Durations are Go duration strings ("300ms", "5s").

# Cluster name. Required; 1-64 characters from [A-Za-z0-9._-].
name = "local"

# Deployment profile: the defaults of the Raft and gossip timings. "lan" (nodes a few ms apart;
# the default) or "wan" (voters in regions 30-150 ms apart: 1s heartbeat and election timeouts,
# memberlist's WAN failure detection). Keys in the raft and gossip blocks override it.
# profile = "lan"

# Where leadership belongs. A leader outside leader_region hands leadership to a voter there once
# that voter has been alive for leader_region_settle. Optional block.
# placement {
#   leader_region        = "local-a"
#   leader_region_settle = "10s"
# }

# Raft tuning. Every key is optional; the values below are the defaults of profile "lan".
raft {
  # How long a follower waits without hearing from the leader before it calls an election.
  heartbeat_timeout = "300ms"
  # How long a candidate waits for votes before starting a new election; >= heartbeat_timeout.
  election_timeout = "300ms"
  # How long a leader keeps serving without a quorum of contacts; <= heartbeat_timeout.
  leader_lease_timeout = "150ms"
  # Longest a follower waits to learn a new commit index when nothing else is replicated.
  commit_timeout = "5ms"
  # How often each node checks whether it should take a snapshot of the state machine...
  snapshot_interval = "30s"
  # ...which it does once this many log entries have accumulated since the last one.
  snapshot_threshold = 8192
  # Log entries kept after a snapshot, so a briefly lagging follower catches up from the log
  # instead of needing a full snapshot install.
  trailing_logs = 10240
  # Longest a write waits to be handed to Raft before it is refused.
  apply_timeout = "5s"
  # Most log entries sent (and applied as one batch) per AppendEntries; 1-1024.
  max_append_entries = 64
  # Largest command in the log (64 KiB-64 MiB); a bigger request is refused with
  # resource_exhausted. max_append_entries × max_entry_bytes may be at most 256 MiB: it bounds
  # what one AppendEntries carries and a follower buffers.
  max_entry_bytes = 4194304
  # The leader puts concurrent transfer requests into shared log entries: while this many such
  # entries are in flight, new requests wait and go out together, after at most
  # coalesce_linger (0s-1ms) more. 0 turns it off. Each caller still gets its own results.
  coalesce_in_flight = 1
  coalesce_linger    = "200us"
}

# Bearer tokens for the API. Each token has a name (the caller's identity, recorded e.g. as a
# lock's holder) and one or more scopes:
#   read      read the ledger, locks, events, wallets, chain and Lightning state
#   write     read, and move money between customer accounts (accounts, transfers, locks,
#             deposit addresses, invoices, payments)
#   operator  read, and run the bank's machinery (wallets, rescans, the lnd pool, problems,
#             state hashes)
#   signer    read, and deliver signatures of payout transactions (signerd)
#   admin     everything, including transfer-leadership and remove-node
# The secret comes from a file only its owner can read (token_file; a file open to other users
# is refused) or is given by its SHA-256 (token_sha256 = "<sha256sum of the secret>").
# `kill -HUP` a node to reload its tokens without a restart.
tokens {
  # token "payments-app" {
  #   scopes     = ["write"]
  #   token_file = "secrets/payments-app.token"
  # }

  # Development lists: secrets in clear, one scope each, named dev-<scope>-<n>. Refused when the
  # chain network is mainnet.
  admin    = ["dev-admin-token"]
  write    = ["dev-client-token"]
  read     = ["dev-read-token"]
  # Approvals (payouts, cold-vault moves, adjustments) in the console or bankctl; an approver
  # must be another identity than the requester.
  operator = ["dev-operator-token"]
  # make run starts signerd with this one.
  signer   = ["dev-signer-token"]
}

# Transport security. Nodes speak mutual TLS 1.3 (Raft, forwarding to the leader) with
# certificates from the cluster CA, serve the API over TLS, and encrypt gossip. Make the files
# with `bankd tls init -config cluster.hcl` (`make run` does, for data/cluster.run.hcl); both
# blocks are optional and show their defaults. Each node block may also set tls_cert and tls_key
# (default: <id>.crt and <id>.key beside ca_file). `kill -HUP` a node to reload its certificate,
# the CA and the gossip keyring.
tls {
  # The cluster CA certificate, trusted by every node and client (bankctl -ca).
  ca_file = "tls/ca.crt"
  # Where `bankd tls` keeps the CA's key. Nodes never read it; keep it off them.
  # ca_key_file = "tls/ca.key"
}

gossip {
  # Memberlist keys, one base64 key (16, 24 or 32 bytes) per line; the first encrypts, the
  # others are accepted (rotation: add, make primary, remove; one reload each).
  keyring_file = "tls/gossip.keyring"
  # Failure detection; the profile's values unless set (lan on loopback: 200ms/100ms/50ms/3).
  # probe_interval  = "1s"
  # probe_timeout   = "500ms"
  # gossip_interval = "200ms"
  # suspicion_mult  = 4
}

# Development only: no TLS and no gossip encryption (each node logs a warning; refused on
# mainnet and beside a tls block or a gossip keyring_file).
# insecure_plaintext = true

# The Bitcoin chain. Optional block.
chain {
  # The network the cluster's wallets and addresses are for: "mainnet", "testnet", "signet" or
  # "regtest" (the default). The first wallet created records it in the state machine, which
  # refuses wallets for any other network from then on.
  network = "regtest"

  # The node the leader's chain watcher follows (btcd or bitcoind JSON-RPC). Without rpc_host
  # there is no watcher: the cluster is a pure ledger. `make run` starts a regtest btcd and adds
  # these four (and start_height) to a copy of this file, data/cluster.run.hcl.
  # rpc_host = "127.0.0.1:18334"
  # rpc_user = "bankd"
  # rpc_pass = "..."               # or rpc_pass_file = "secrets/rpc.pass"
  # rpc_cert = "btcd/rpc.cert"     # btcd's TLS certificate; bitcoind: leave out, rpc_tls = false

  # Confirmations at which a deposit is credited (1-1000).
  final_depth = 6
  # Block hashes kept below the tip: the deepest reorg that can be followed (>= final_depth).
  keep_hashes = 1000
  # First block followed on an empty chain (the cluster's birthday); 0 by default.
  # start_height = 0
  # How often the leader asks the node for news once it has caught up.
  poll_interval = "1s"
  # Poll the node's mempool, so deposits show as pending before their first confirmation.
  mempool = true
}

# On-chain withdrawals. Optional block; without it RequestPayout is refused. The leader's payout
# driver plans one transaction per queue trigger for every withdrawal that is due, commits the
# plan, and waits for signerd (a separate process holding the hot wallet's key) to sign it.
payouts {
  # The HOT wallet (a wpkh(.../<0;1>/*) descriptor, created with `bankctl wallet create`) that
  # pays withdrawals and receives their change.
  wallet = "hot"
  # The queue of withdrawals that name none (default: the first queue block).
  default_queue = "batched"

  # One block per queue. Every key is optional; the values below are the defaults unless said.
  queue "batched" {
    # When a transaction is planned: "interval" (every interval), "count" (once count are due,
    # or interval after the oldest), or "manual" (bankctl payout flush).
    trigger  = "interval"
    interval = "1m"
    count    = 100
    # Confirmation target of the node's fee estimate, in blocks; the rate is clamped into
    # [min_fee_rate, max_fee_rate] sat/vB (a node without an estimate pays min_fee_rate).
    conf_target  = 6
    min_fee_rate = 1
    max_fee_rate = 500
    # What a customer is charged for the network fee: "flat" (fee_sat each) or "estimate" (the
    # estimate for one output and one input, at most fee_sat).
    fee     = "flat"
    fee_sat = 1000 # default 0
    # Withdrawals above this many satoshis need approval by a second identity (0: none).
    approval_threshold_sat = 10000000 # default 0
    # Most withdrawals per transaction.
    max_batch = 500
    # A signed transaction still unconfirmed this many blocks later gets a higher fee; 0 never
    # bumps. bump = "rbf" replaces it (same inputs and withdrawals; BIP 125); "cpfp" lifts it
    # with a child that spends its change and pays the withdrawals queued since.
    bump_after_blocks = 3
    bump              = "rbf" # default
  }

  # Merge many small hot-wallet coins while fees are low (optional; never without it).
  # consolidate {
  #   below_fee_rate = 3    # sat/vB: the default queue's rate must be at most this
  #   min_utxos      = 100  # only with at least this many spendable UTXOs
  #   max_inputs     = 200  # the smallest this many are merged
  # }

  # Move DEPOSIT wallets' credited coins to the hot wallet (optional; never without it). Each
  # deposit wallet needs its own signerd (sweep_to_wallet_id/sweep_to_descriptor = the hot one).
  # sweep {
  #   interval   = "10m"
  #   min_sat    = 100000
  #   max_inputs = 500
  # }

  # Keep this many coins in the hot wallet by splitting its largest (optional; never without it).
  # split {
  #   target_utxos = 20
  #   min_sat      = 500000
  # }

  queue "instant" {
    trigger  = "count"
    count    = 1
    interval = "5s"
    fee      = "estimate"
    fee_sat  = 5000
  }
}

# Retention: what the cluster drops once it is old, so a steady workload does not grow the state
# machine for ever. Without this block nothing is dropped. The leader proposes the drops through
# Raft (every `interval`), so every replica drops the same records. Kept for ever whatever the
# block says: accounts and balances, pending transfers, every record of the chain, Lightning,
# payout and vault drivers (their transfer ids are how they credit exactly once).
retention {
  # Events (WatchEvents) and per-account history entries, and the problems recorded with them,
  # are dropped once older than this in cluster time. WatchEvents from before the horizon
  # answers out_of_range naming the oldest index still kept.
  history = "720h"
  # ...but the newest this many log indexes always keep theirs.
  keep_indexes = 100000
  # A finished client transfer (posted, voided, expired) is kept this long; its id is the
  # client's idempotency key. A retry after the window is a NEW transfer.
  idempotency_window = "168h"
  # How often the leader looks for records to drop (default 1m).
  interval = "1m"
}

# One block per node; the label is the node id. Node ids and all addresses must be unique.
#   region      failure domain the node runs in. Each node warns at start when one region holds
#               a quorum of the voters (losing it would stop writes everywhere).
#   voter       optional, default true; false makes a read replica: it receives the log and
#               serves stale reads, never votes, leads or counts for a quorum
#   raft_addr   host:port for Raft replication; peers dial it, so no wildcard address
#   gossip_addr host:port (TCP and UDP) for memberlist discovery and health; peers dial it
#   api_addr    host:port of the Connect/gRPC API; clients are redirected here
#   data_dir    Raft log, snapshots and state; relative paths are relative to this file
node "n1" {
  region      = "local-a"
  raft_addr   = "127.0.0.1:7001"
  gossip_addr = "127.0.0.1:7101"
  api_addr    = "127.0.0.1:7201"
  data_dir    = "data/n1"
}

node "n2" {
  region      = "local-b"
  raft_addr   = "127.0.0.1:7002"
  gossip_addr = "127.0.0.1:7102"
  api_addr    = "127.0.0.1:7202"
  data_dir    = "data/n2"
}

node "n3" {
  region      = "local-c"
  raft_addr   = "127.0.0.1:7003"
  gossip_addr = "127.0.0.1:7103"
  api_addr    = "127.0.0.1:7203"
  data_dir    = "data/n3"
}
