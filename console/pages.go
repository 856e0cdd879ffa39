package console

import (
	"context"
	"net/http"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// clusterSnapshot is the cluster as this node sees it: the cluster page renders it and the live
// stream sends it (as JSON) whenever it changes.
type clusterSnapshot struct {
	NodeID        string      `json:"node_id"`
	RaftState     string      `json:"raft_state"`
	Term          uint64      `json:"term"`
	LeaderID      string      `json:"leader_id"`
	LeaderAPIAddr string      `json:"leader_api_addr"`
	CommitIndex   uint64      `json:"commit_index"`
	AppliedIndex  uint64      `json:"applied_index"`
	LastLogIndex  uint64      `json:"last_log_index"`
	LagEntries    uint64      `json:"lag_entries"`
	LagMs         int64       `json:"lag_ms"`
	Version       string      `json:"version"`
	Members       []memberRow `json:"members"`
	Error         string      `json:"error,omitempty"`
}

type memberRow struct {
	NodeID   string `json:"node_id"`
	Region   string `json:"region"`
	APIAddr  string `json:"api_addr"`
	Version  string `json:"version"`
	Suffrage string `json:"suffrage"`
	Gossip   string `json:"gossip"`
	Leader   bool   `json:"leader"`
}

// clusterSnapshot asks this node for its status, its members and, through a stale read's
// metadata, how long ago it heard from a leader. All three are answered locally (no leader
// needed), so the page keeps working while the cluster elects one.
func (c *Console) clusterSnapshot(ctx context.Context) (clusterSnapshot, error) {
	st, err := c.api.cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
	if err != nil {
		return clusterSnapshot{Error: describeAPIError(err)}, err
	}
	s := st.Msg
	snap := clusterSnapshot{
		NodeID: s.NodeId, RaftState: s.RaftState, Term: s.Term, LeaderID: s.LeaderId,
		LeaderAPIAddr: s.LeaderApiAddr, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex,
		LastLogIndex: s.LastLogIndex, Version: s.Version,
	}
	if s.CommitIndex > s.AppliedIndex {
		snap.LagEntries = s.CommitIndex - s.AppliedIndex
	}
	members, err := c.api.cluster.Members(ctx, connect.NewRequest(&bankdv1.MembersRequest{}))
	if err != nil {
		snap.Error = describeAPIError(err)
		return snap, err
	}
	for _, m := range members.Msg.Members {
		snap.Members = append(snap.Members, memberRow{
			NodeID: m.NodeId, Region: m.Region, APIAddr: m.ApiAddr, Version: m.Version,
			Suffrage: m.Suffrage, Gossip: m.GossipState, Leader: m.Leader,
		})
	}
	stale, err := c.api.ledger.ListAccounts(ctx, connect.NewRequest(&bankdv1.ListAccountsRequest{
		PageSize: 1, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE}))
	if err == nil && stale.Msg.Meta != nil {
		snap.LagMs = stale.Msg.Meta.LagMs
	}
	return snap, nil
}

func (c *Console) clusterPage(q *request) {
	snap, err := c.clusterSnapshot(q.ctx())
	q.refusal(err)
	q.show(http.StatusOK, "cluster", "Cluster", snap)
}

type ledgerView struct {
	AccountQuery  string
	TransferQuery string
	HistoryToken  string

	Account     *bankdv1.Account
	History     []*bankdv1.HistoryEntry
	HistoryNext string
	AccountErr  string

	Transfer    *bankdv1.Transfer
	TransferErr string

	Accounts     []*bankdv1.Account
	AccountsNext string
	AccountsErr  string
}

// ledgerPage finds an account (balances, history) and a transfer by id, and lists accounts.
// An id that is not there answers 404 with a page that says so.
func (c *Console) ledgerPage(q *request) {
	v := ledgerView{}
	status := http.StatusOK
	account, ok1 := q.trimmedQuery("account")
	transfer, ok2 := q.trimmedQuery("transfer")
	htok, ok3 := q.trimmedQuery("htok")
	atok, ok4 := q.trimmedQuery("atok")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		c.renderError(q.w, q.r, http.StatusBadRequest, "Bad request", "A search field is longer than any id.")
		return
	}
	v.AccountQuery, v.TransferQuery, v.HistoryToken = account, transfer, htok
	ctx := q.ctx()
	if account != "" {
		res, err := c.api.ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: account}))
		switch {
		case connect.CodeOf(err) == connect.CodeNotFound:
			v.AccountErr = "Not found: there is no account with id “" + account + "”."
			status = http.StatusNotFound
		case err != nil:
			v.AccountErr = q.refusal(err)
		default:
			v.Account = res.Msg.Account
			hist, err := c.api.ledger.ListAccountHistory(ctx, connect.NewRequest(&bankdv1.ListAccountHistoryRequest{
				AccountId: account, PageSize: pageSize, PageToken: htok}))
			if err != nil {
				v.AccountErr = q.refusal(err)
			} else {
				v.History, v.HistoryNext = hist.Msg.Entries, hist.Msg.NextPageToken
			}
		}
	}
	if transfer != "" {
		res, err := c.api.ledger.GetTransfer(ctx, connect.NewRequest(&bankdv1.GetTransferRequest{Id: transfer}))
		switch {
		case connect.CodeOf(err) == connect.CodeNotFound:
			v.TransferErr = "Not found: there is no transfer with id “" + transfer + "”."
			status = http.StatusNotFound
		case err != nil:
			v.TransferErr = q.refusal(err)
		default:
			v.Transfer = res.Msg.Transfer
		}
	}
	if account == "" && transfer == "" {
		res, err := c.api.ledger.ListAccounts(ctx, connect.NewRequest(&bankdv1.ListAccountsRequest{PageSize: pageSize, PageToken: atok}))
		if err != nil {
			v.AccountsErr = q.refusal(err)
		} else {
			v.Accounts, v.AccountsNext = res.Msg.Accounts, res.Msg.NextPageToken
		}
	}
	q.show(status, "ledger", "Ledger", v)
}

type lightningView struct {
	Nodes        []*bankdv1.LndNode
	NodesErr     string
	Reconciled   bool
	Reconcile    []*bankdv1.NodeReconciliation
	ReconcileErr string
}

// lightningPage lists the pool's lnd nodes; with ?reconcile=1 it also compares each node's
// ledger account with lnd (a read that asks every node, so only on request; operator scope).
func (c *Console) lightningPage(q *request) {
	v := lightningView{}
	ctx := q.ctx()
	res, err := c.api.lightning.ListNodes(ctx, connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
	if err != nil {
		v.NodesErr = q.refusal(err)
	} else {
		v.Nodes = res.Msg.Nodes
	}
	if q.r.URL.Query().Get("reconcile") == "1" {
		v.Reconciled = true
		rec, err := c.api.lightning.Reconcile(ctx, connect.NewRequest(&bankdv1.ReconcileLightningRequest{}))
		if err != nil {
			v.ReconcileErr = q.refusal(err)
		} else {
			v.Reconcile = rec.Msg.Nodes
		}
	}
	q.show(http.StatusOK, "lightning", "Lightning pool", v)
}

type chainView struct {
	Status    *bankdv1.GetChainStatusResponse
	StatusErr string

	Wallets    []*bankdv1.Wallet
	WalletsErr string

	Reconciliation    *bankdv1.ReconcileWalletsResponse
	ReconciliationErr string

	Payouts     []*bankdv1.Payout
	PayoutsNext string
	PayoutsErr  string

	Batches     []*bankdv1.PayoutBatch
	BatchesNext string
	BatchesErr  string

	DepositAccount string
	Deposits       []*bankdv1.Deposit
	DepositsNext   string
	DepositsErr    string

	TxQuery  string
	Tx       *bankdv1.GetChainTxResponse
	TxErr    string
	NotFound bool
}

// chainPage shows the chain tip, the wallets and their reconciliation, payouts and their
// batches, and on request one account's deposits and one transaction.
func (c *Console) chainPage(q *request) {
	v := chainView{}
	var params [5]string
	for i, name := range []string{"ptok", "btok", "deposits", "dtok", "txid"} {
		p, ok := q.trimmedQuery(name)
		if !ok {
			c.renderError(q.w, q.r, http.StatusBadRequest, "Bad request", "A search field is longer than any id.")
			return
		}
		params[i] = p
	}
	ptok, btok, dtok := params[0], params[1], params[3]
	v.DepositAccount, v.TxQuery = params[2], params[4]
	ctx := q.ctx()
	if res, err := c.api.chain.GetChainStatus(ctx, connect.NewRequest(&bankdv1.GetChainStatusRequest{})); err != nil {
		v.StatusErr = q.refusal(err)
	} else {
		v.Status = res.Msg
	}
	if res, err := c.api.wallet.ListWallets(ctx, connect.NewRequest(&bankdv1.ListWalletsRequest{PageSize: pageSize})); err != nil {
		v.WalletsErr = q.refusal(err)
	} else {
		v.Wallets = res.Msg.Wallets
	}
	if res, err := c.api.payout.ReconcileWallets(ctx, connect.NewRequest(&bankdv1.ReconcileWalletsRequest{})); err != nil {
		v.ReconciliationErr = q.refusal(err)
	} else {
		v.Reconciliation = res.Msg
	}
	if res, err := c.api.payout.ListPayouts(ctx, connect.NewRequest(&bankdv1.ListPayoutsRequest{PageSize: pageSize, PageToken: ptok})); err != nil {
		v.PayoutsErr = q.refusal(err)
	} else {
		v.Payouts, v.PayoutsNext = res.Msg.Payouts, res.Msg.NextPageToken
	}
	if res, err := c.api.payout.ListBatches(ctx, connect.NewRequest(&bankdv1.ListPayoutBatchesRequest{PageSize: pageSize, PageToken: btok})); err != nil {
		v.BatchesErr = q.refusal(err)
	} else {
		v.Batches, v.BatchesNext = res.Msg.Batches, res.Msg.NextPageToken
	}
	status := http.StatusOK
	if v.DepositAccount != "" {
		res, err := c.api.chain.ListDeposits(ctx, connect.NewRequest(&bankdv1.ListDepositsRequest{AccountId: v.DepositAccount, PageSize: pageSize, PageToken: dtok}))
		if err != nil {
			v.DepositsErr = q.refusal(err)
		} else {
			v.Deposits, v.DepositsNext = res.Msg.Deposits, res.Msg.NextPageToken
		}
	}
	if v.TxQuery != "" {
		res, err := c.api.chain.GetChainTx(ctx, connect.NewRequest(&bankdv1.GetChainTxRequest{Txid: v.TxQuery}))
		switch {
		case connect.CodeOf(err) == connect.CodeNotFound:
			v.TxErr = "Not found: the cluster tracks no transaction “" + v.TxQuery + "”."
			status = http.StatusNotFound
		case err != nil:
			v.TxErr = q.refusal(err)
		default:
			v.Tx = res.Msg
		}
	}
	q.show(status, "chain", "Chain", v)
}

type approvalsView struct {
	// CSRF goes into every decision form.
	CSRF       string
	Payouts    []*bankdv1.Payout
	PayoutsErr string
	Vault      []*bankdv1.VaultProposal
	VaultErr   string
}

// approvalsPage lists what waits for a second identity: payouts above their queue's threshold
// and cold-vault proposals.
func (c *Console) approvalsPage(q *request) {
	v := approvalsView{CSRF: q.sess.csrf}
	ctx := q.ctx()
	if res, err := c.api.payout.ListPayouts(ctx, connect.NewRequest(&bankdv1.ListPayoutsRequest{
		State: bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL, PageSize: pageSize})); err != nil {
		v.PayoutsErr = q.refusal(err)
	} else {
		v.Payouts = res.Msg.Payouts
	}
	if res, err := c.api.vault.List(ctx, connect.NewRequest(&bankdv1.ListVaultProposalsRequest{
		State: bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED, PageSize: pageSize})); err != nil {
		v.VaultErr = q.refusal(err)
	} else {
		v.Vault = res.Msg.Proposals
	}
	q.show(http.StatusOK, "approvals", "Approvals", v)
}

type problemsView struct {
	Problems []*bankdv1.Problem
	Total    uint64
	Next     string
	Err      string
}

func (c *Console) problemsPage(q *request) {
	tok, ok := q.trimmedQuery("ptok")
	if !ok {
		c.renderError(q.w, q.r, http.StatusBadRequest, "Bad request", "The page token is too long.")
		return
	}
	v := problemsView{}
	if res, err := c.api.cluster.ListProblems(q.ctx(), connect.NewRequest(&bankdv1.ListProblemsRequest{PageSize: pageSize, PageToken: tok})); err != nil {
		v.Err = q.refusal(err)
	} else {
		v.Problems, v.Total, v.Next = res.Msg.Problems, res.Msg.Total, res.Msg.NextPageToken
	}
	q.show(http.StatusOK, "problems", "Problems", v)
}

func (c *Console) eventsPage(q *request) {
	q.show(http.StatusOK, "events", "Events", nil)
}
