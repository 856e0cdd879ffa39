// Package coldvault keeps the hot wallet inside its band by proposing moves between it and a
// multisig cold vault. It is the library of cmd/coldvault, a process separate from the bankd
// nodes: it holds no key and no copy of the ledger, talks to the cluster only through the API
// with an operator-scope token, and keeps no state of its own (every proposal lives in the
// cluster, so it can be stopped and restarted at any point).
//
// Each poll it reads the hot wallet's books and the customer liabilities (ReconcileWallets);
// while no move of its cold wallet is under way, a hot wallet above the band's maximum gets a
// proposal hot -> cold down to the target, one below the minimum a proposal cold -> hot up to the
// target. Another identity approves each proposal; the cluster's payout pipeline carries out
// hot -> cold (signed by the hot wallet's signerd).
package coldvault
