package lightning

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/fakelnd"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/pace"
)

// Payment is what the cluster holds of a payment at the end.
type Payment struct {
	ID       string `json:"id"`
	Account  string `json:"account"`
	Hash     string `json:"hash"`
	Node     string `json:"node,omitempty"`
	State    string `json:"state"`
	Internal bool   `json:"internal,omitempty"`
	Amount   int64  `json:"amount"`
	Fee      int64  `json:"fee"`
}

// Credit is one booking of a settlement on a pool node's account (lni:<hash>, or
// lnu:<node>:<settle index> for money the cluster booked as unattributed).
type Credit struct {
	TransferID string `json:"transfer_id"`
	Hash       string `json:"hash"`
	Amount     int64  `json:"amount"`
}

// NodeBooks is a pool node's account in the ledger at the end.
type NodeBooks struct {
	Posted  int64    `json:"posted"`  // debits − credits posted (an ASSET)
	Pending int64    `json:"pending"` // debits and credits pending
	Credits []Credit `json:"credits"`
}

// Final is the end of a run: bankd's books and the network's own record.
type Final struct {
	Payments map[string]Payment   `json:"payments"`
	Balances map[string]Balance   `json:"balances"`
	Nodes    map[string]NodeBooks `json:"nodes"`
	Record   fakelnd.Record       `json:"record"`
	// Settled is false when, at the settle timeout, a payment was still in flight or the
	// cluster had not followed every settlement of the network.
	Settled bool `json:"settled"`
}

// Final heals the network, waits (up to SettleTimeout, within ctx) until no payment is in
// flight and the cluster has followed every settlement, then reads bankd's books between two
// equal reads of the balances, and the network's record.
func (w *Workload) Final(ctx context.Context) (*Final, error) {
	if err := w.net.Heal(ctx); err != nil {
		return nil, fmt.Errorf("heal the lnd network: %w", err)
	}
	w.mu.Lock()
	ids := slices.Sorted(maps.Keys(w.payments))
	outside := slices.Clone(w.outside)
	w.mu.Unlock()

	f := &Final{}
	settle, cancel := context.WithTimeout(ctx, w.cfg.SettleTimeout)
	for {
		done, why, err := w.settled(settle, ids, outside)
		if err == nil && done {
			f.Settled = true
			break
		}
		if settle.Err() != nil {
			w.log.Warn("lightning not settled", "timeout", w.cfg.SettleTimeout, "why", why, "err", err)
			break
		}
		pace.Sleep(settle, 500*time.Millisecond)
	}
	cancel()

	balances := func(ctx context.Context) (map[string]Balance, error) {
		out := map[string]Balance{}
		for _, acc := range w.customers {
			b, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (Balance, error) {
				return getBalance(ctx, cl, acc)
			})
			if err != nil {
				return nil, fmt.Errorf("final balance of %s: %w", acc, err)
			}
			out[acc] = b
		}
		return out, nil
	}
	type inner struct {
		payments map[string]Payment
		nodes    map[string]NodeBooks
	}
	b, in, err := ledger.ConsistentRead(ctx, balances, func(ctx context.Context) (inner, error) {
		payments, err := w.readPayments(ctx, ids)
		if err != nil {
			return inner{}, err
		}
		nodes, err := w.readNodeBooks(ctx)
		return inner{payments, nodes}, err
	})
	if err != nil {
		return nil, fmt.Errorf("final state: %w", err)
	}
	f.Balances, f.Payments, f.Nodes = b, in.payments, in.nodes
	if f.Record, err = w.net.Record(ctx, outside); err != nil {
		return nil, fmt.Errorf("the network's record: %w", err)
	}
	return f, nil
}

// settled reports whether no payment is in flight in the cluster or on a node, and the cluster
// has followed every settlement of every node; why says what is still going when not.
func (w *Workload) settled(ctx context.Context, ids, outside []string) (bool, string, error) {
	payments, err := w.readPayments(ctx, ids)
	if err != nil {
		return false, "", err
	}
	for _, p := range payments {
		if p.State == bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT.String() {
			return false, "payment " + p.ID + " in flight", nil
		}
	}
	rec, err := w.net.Record(ctx, outside)
	if err != nil {
		return false, "", err
	}
	nodes, err := w.listNodes(ctx)
	if err != nil {
		return false, "", err
	}
	cursor := map[string]uint64{}
	for _, n := range nodes {
		cursor[n.Id] = n.SettleIndex
	}
	for _, n := range rec.Nodes {
		if len(n.Held) > 0 {
			return false, n.Name + " holds payments", nil
		}
		var last uint64
		for _, inv := range n.Invoices {
			last = max(last, inv.SettleIndex)
		}
		if cursor[n.Name] < last {
			return false, fmt.Sprintf("%s settle index %d, the cluster at %d", n.Name, last, cursor[n.Name]), nil
		}
	}
	return true, "", nil
}

// readPayments reads every payment id sent (linearizably); ids the cluster does not know are
// left out.
func (w *Workload) readPayments(ctx context.Context, ids []string) (map[string]Payment, error) {
	out := map[string]Payment{}
	for _, id := range ids {
		p, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (*bankdv1.LnPayment, error) {
			res, err := cl.Lightning.GetPayment(ctx, connect.NewRequest(&bankdv1.GetPaymentRequest{Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
			if connect.CodeOf(err) == connect.CodeNotFound {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return res.Msg.Payment, nil
		})
		if err != nil {
			return nil, fmt.Errorf("read payment %s: %w", id, err)
		}
		if p != nil {
			out[id] = Payment{ID: p.Id, Account: p.AccountId, Hash: p.Hash, Node: p.NodeId, State: p.State.String(),
				Internal: p.Internal, Amount: p.AmountSat, Fee: p.FeeSat}
		}
	}
	return out, nil
}

// readNodeBooks reads each pool node's ledger account and the settlements booked on it.
func (w *Workload) readNodeBooks(ctx context.Context) (map[string]NodeBooks, error) {
	nodes, err := w.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]NodeBooks{}
	for _, n := range nodes {
		acc := n.AccountId
		if acc == "" {
			acc = "ln:" + n.Id // fsm.LightningNodeAccountPrefix
		}
		books, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (NodeBooks, error) {
			return nodeBooks(ctx, cl, acc)
		})
		if err != nil {
			return nil, fmt.Errorf("books of %s: %w", acc, err)
		}
		out[n.Id] = books
	}
	return out, nil
}

func nodeBooks(ctx context.Context, cl *apiclient.Clients, account string) (NodeBooks, error) {
	res, err := cl.Ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: account, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
	if err != nil {
		return NodeBooks{}, err
	}
	bal := res.Msg.GetAccount().GetBalance()
	books := NodeBooks{Posted: bal.GetDebitsPosted() - bal.GetCreditsPosted(), Pending: bal.GetDebitsPending() + bal.GetCreditsPending()}
	entries, err := ledger.AccountHistory(ctx, cl, account)
	if err != nil {
		return NodeBooks{}, err
	}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.TransferID, "lni:"):
			books.Credits = append(books.Credits, Credit{TransferID: e.TransferID, Hash: hashOfID(strings.TrimPrefix(e.TransferID, "lni:")), Amount: e.DebitsPostedDelta})
		case strings.HasPrefix(e.TransferID, "lnu:"):
			t, err := cl.Ledger.GetTransfer(ctx, connect.NewRequest(&bankdv1.GetTransferRequest{Id: e.TransferID, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
			if err != nil {
				return NodeBooks{}, fmt.Errorf("transfer %s: %w", e.TransferID, err)
			}
			books.Credits = append(books.Credits, Credit{TransferID: e.TransferID, Hash: t.Msg.Transfer.GetExternalRef(), Amount: e.DebitsPostedDelta})
		}
	}
	return books, nil
}

// hashOfID is the payment hash of an lni:<hash> id, which carries it in unpadded base64url
// (fsm's hashTransferID keeps ids short); an id of another form is returned as it is.
func hashOfID(s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return s
	}
	return hex.EncodeToString(b)
}
