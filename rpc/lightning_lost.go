package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// maxLostDeclarations bounds the DECLARE_LND_LOST entries one DeclareNodeLost proposes: each
// cancels up to 1,000 open invoices, and a node counts at most 2^32 of them.
const maxLostDeclarations = 1 << 13

// DeclareNodeLost declares a pool node gone for good (docs/LOST_NODES.md): DECLARE_LND_LOST
// entries, proposed once the request is valid on its own, again with the same body until every
// open invoice of the node is canceled in the ledger (each entry cancels a bounded number).
// Who decided is the caller's token, which the leader stamps on the command; nothing in the
// request names it. The type is newer than the baseline: while some server runs a binary
// without it, node.Apply refuses to propose it (failed_precondition naming the nodes).
func (l *lightningService) DeclareNodeLost(ctx context.Context, req *connect.Request[bankdv1.DeclareLndLostRequest]) (*connect.Response[bankdv1.DeclareLndLostResponse], error) {
	if fe := fsm.ValidateDeclareLndLost(req.Msg); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.DeclareLndLostRequest) (*bankdv1.DeclareLndLostResponse, error) {
		body := &bankdv1.DeclareLndLostRequest{NodeId: m.GetNodeId(), Reason: m.GetReason()}
		var out *bankdv1.DeclareLndLostResponse
		for range maxLostDeclarations {
			res, err := apply[*bankdv1.DeclareLndLostResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST, body, nil)
			if err != nil {
				return nil, err
			}
			if out == nil {
				out = res
			} else {
				out.Node, out.InvoicesCanceled = res.Node, out.InvoicesCanceled+res.InvoicesCanceled
			}
			if res.Node.GetState() != bankdv1.LndNodeState_LND_NODE_STATE_LOST || res.Node.GetOpenInvoices() == 0 {
				return out, nil
			}
		}
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("node %q still has %d open invoices after %d declarations; declare it again",
			body.NodeId, out.Node.GetOpenInvoices(), maxLostDeclarations))
	})
}

// ResolveLostPayment resolves a payment in flight on a LOST node from evidence: one
// RESOLVE_LOST_PAYMENT entry. A success needs no evidence kind (the preimage is the evidence).
func (l *lightningService) ResolveLostPayment(ctx context.Context, req *connect.Request[bankdv1.ResolveLostPaymentRequest]) (*connect.Response[bankdv1.ResolveLostPaymentResponse], error) {
	m := req.Msg
	// Only the fields the command knows: anything else a client sent stays out of the log.
	body := &bankdv1.ResolveLostPaymentRequest{PaymentId: m.GetPaymentId(), Succeeded: m.GetSucceeded(), Evidence: m.GetEvidence(),
		Preimage: m.GetPreimage(), FeeSat: m.GetFeeSat(), Reference: m.GetReference()}
	if body.Succeeded && body.Evidence == bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_UNSPECIFIED {
		body.Evidence = bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE
	}
	if fe := fsm.ValidateResolveLostPayment(body); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, _ *bankdv1.ResolveLostPaymentRequest) (*bankdv1.ResolveLostPaymentResponse, error) {
		res, err := apply[*bankdv1.ResolveLostPaymentResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT, body, nil)
		if err == nil && res.Problem != "" {
			// The preimage contradicts a failure decided before: the failure stands and the
			// contradiction is a problem for an operator (recorded once), not a success.
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("payment_id: not applied, recorded as a problem: %s", res.Problem))
		}
		return res, err
	})
}

// ListUnresolved lists what is still open or in flight on a node: exactly its OPEN invoices
// and its IN_FLIGHT payments, a page of each.
func (l *lightningService) ListUnresolved(ctx context.Context, req *connect.Request[bankdv1.ListUnresolvedRequest]) (*connect.Response[bankdv1.ListUnresolvedResponse], error) {
	m := req.Msg
	if fe := fsm.CheckLndNodeID("node_id", m.GetNodeId()); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	size, err := pageSize("page_size", m.GetPageSize())
	if err != nil {
		return nil, err
	}
	if after := m.GetInvoicesAfter(); after != "" {
		if fe := fsm.CheckPaymentHash("invoices_after", after); fe != nil {
			return nil, fsmFieldError(fe, "", "")
		}
	}
	if after := m.GetPaymentsAfter(); after != "" {
		if err := checkID("payments_after", after); err != nil {
			return nil, err
		}
	}
	if err := checkConsistency(m.GetConsistency()); err != nil {
		return nil, err
	}
	id, invoicesAfter, paymentsAfter := m.GetNodeId(), m.GetInvoicesAfter(), m.GetPaymentsAfter()
	return read(ctx, l.s, req, m.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListUnresolvedResponse, error) {
		n, err := st.LndNode(id)
		if err != nil {
			return nil, fmt.Errorf("pool node %q: %w", id, err)
		}
		out := &bankdv1.ListUnresolvedResponse{Node: n, Meta: meta}
		if out.Invoices, err = st.OpenInvoices(id, invoicesAfter, size+1); err != nil {
			return nil, fmt.Errorf("open invoices of %q: %w", id, err)
		}
		if len(out.Invoices) > size {
			out.Invoices = out.Invoices[:size]
			out.NextInvoicesAfter = out.Invoices[size-1].Hash
		}
		if out.Payments, err = st.InFlightPayments(id, paymentsAfter, size+1); err != nil {
			return nil, fmt.Errorf("payments in flight on %q: %w", id, err)
		}
		if len(out.Payments) > size {
			out.Payments = out.Payments[:size]
			out.NextPaymentsAfter = out.Payments[size-1].Id
		}
		return out, nil
	})
}
