package fsm

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Lost pool nodes. A pool lnd that is gone for good (its disk lost, its host decommissioned)
// would otherwise keep its open invoices OPEN and its payments IN_FLIGHT for ever: the pool
// resolves them only from the node's own word, and a node with either cannot retire.
//
// DECLARE_LND_LOST (an admin, with a reason) moves an ACTIVE or DRAINING node that did not
// answer its last health check to LOST. From then on the pool never calls it, and no driver
// command brings it back (health reports, new invoices or payments, registration). The command
// cancels the node's OPEN invoices in the ledger (EXPIRED, canceled_node_lost; nothing was
// credited for them), at most maxLostInvoicesPerCommand per command: declaring the same node
// again with the same reason cancels the next ones (the API does so until none is left).
//
// RESOLVE_LOST_PAYMENT (an admin, with evidence) books the outcome of a payment IN_FLIGHT on a
// LOST node exactly as the node's own report would (bookPaymentOutcome): SUCCEEDED with the
// preimage, which must hash to the payment hash, and the fee paid (at most the reserve is
// charged); FAILED with a force-close resolution or the payee's statement and a reference. The
// decision is recorded on the payment (LnPayment.lost_resolution) with the token that made it.
//
//   - A resolution is final. The same request again is a replay; another one is refused
//     (ALREADY_EXISTS), except a preimage of a payment resolved FAILED: that is evidence the
//     failure was wrong (the lost node paid after all, the customer got the hold back and the
//     bank bears the amount). It is recorded as a problem for an operator, once, and changes
//     nothing in the ledger: a customer is never charged again silently.
//   - A hash whose payment an admin resolved FAILED stays spoken for (the H table keeps it):
//     the lost node may have paid it, so the pool never pays it again, and a retry needs a new
//     invoice from the payee. A failure the node itself reported frees its hash as before.
//   - Only payments of a LOST node: while the node lives its pool tracking is authoritative.
//     An outcome the node itself reported that raced the declaration still applies
//     (LN_PAYMENT_RESULT), since it is the node's own word.
//
// A LOST node with no open invoice and no payment in flight retires in the same command
// (retireIfResolved), whichever command resolved the last one. Its ledger account ln:<node>
// keeps what it holds; the channels' money that comes back on chain after force closes is
// booked with adjustments (docs/LOST_NODES.md).
//
// Both types are newer than BaselineCommandTypes: the leader proposes them only once every
// server applies them (node.checkUpgraded). LOST exists only after a DECLARE_LND_LOST, so what
// the older commands do differently for a LOST node never happens in a log an older binary
// applies.

const (
	// MaxLostReasonLen bounds the reason a node is declared lost.
	MaxLostReasonLen = MaxMetadataValueLen
	// MaxLostEvidenceReferenceLen bounds the reference of a lost payment's evidence.
	MaxLostEvidenceReferenceLen = MaxExternalRefLen
	// maxLostInvoicesPerCommand bounds the invoices one DECLARE_LND_LOST cancels.
	maxLostInvoicesPerCommand = 1000
)

const lndLost = bankdv1.LndNodeState_LND_NODE_STATE_LOST

// retireIfResolved retires a LOST node once nothing is open or in flight on it.
func retireIfResolved(n *bankdv1.LndNode) {
	if n.State == lndLost && n.OpenInvoices == 0 && n.InflightPayments == 0 {
		n.State = bankdv1.LndNodeState_LND_NODE_STATE_RETIRED
	}
}

// ValidateDeclareLndLost checks a DeclareNodeLost request on its own: the API runs it before
// proposing, the state machine again.
func ValidateDeclareLndLost(req *bankdv1.DeclareLndLostRequest) *Error {
	if err := CheckLndNodeID("node_id", req.GetNodeId()); err != nil {
		return err
	}
	return checkUTF8Text("reason", req.GetReason(), MaxLostReasonLen)
}

// declareLndLost applies DECLARE_LND_LOST (see the top of this file).
func (a *applier) declareLndLost(tx *txn, req *bankdv1.DeclareLndLostRequest) (proto.Message, error) {
	if err := ValidateDeclareLndLost(req); err != nil {
		return nil, err
	}
	if a.principal == "" {
		return nil, invalid("decided_by: a node is declared lost by an authenticated API token; this command carries none")
	}
	n, err := loadLndNode(tx, req.NodeId)
	if err != nil {
		return nil, err
	}
	replayed := n.LostIndex != 0
	switch {
	case replayed && n.LostReason != req.Reason:
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "node_id: node %q was declared lost by %q with another reason (%q)", n.Id, n.LostDecidedBy, n.LostReason)
	case replayed:
		// The same declaration again: it goes on canceling the invoices left, if any.
	case n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED:
		return nil, lightningConflict("node_id: node %q is retired already", n.Id)
	case n.Reachable:
		return nil, lightningConflict("node_id: node %q answered its last health check; a node declared lost must be gone: stop it first (or drain it)", n.Id)
	default:
		n.State, n.LostReason, n.LostDecidedBy, n.LostUnixMs, n.LostIndex = lndLost, req.Reason, a.principal, a.now, a.index
	}
	res := &bankdv1.DeclareLndLostResponse{Replayed: replayed}
	if n.State == lndLost {
		canceled, err := a.cancelLostInvoices(tx, n)
		if err != nil {
			return nil, err
		}
		res.InvoicesCanceled = canceled
		retireIfResolved(n)
	}
	if replayed && res.InvoicesCanceled == 0 {
		res.Node = n // nothing changed: no event
		return res, nil
	}
	res.Node = proto.Clone(n).(*bankdv1.LndNode)
	return res, a.saveLndNode(tx, n)
}

// cancelLostInvoices closes up to maxLostInvoicesPerCommand OPEN invoices of lost node n in the
// ledger: EXPIRED, nothing credited.
func (a *applier) cancelLostInvoices(tx *txn, n *bankdv1.LndNode) (uint32, error) {
	prefix := openInvoicePrefix(n.Id)
	var hashes []string
	err := tx.scan(prefix, prefixEnd(prefix), func(k, _ []byte) (bool, error) {
		hashes = append(hashes, string(k[len(prefix):]))
		return len(hashes) < maxLostInvoicesPerCommand, nil
	})
	if err != nil {
		return 0, err
	}
	for _, hash := range hashes {
		inv := &bankdv1.LnInvoice{}
		if found, err := getProto(tx, invoiceKey(hash), inv); err != nil {
			return 0, err
		} else if !found || inv.State != bankdv1.InvoiceState_INVOICE_STATE_OPEN || inv.NodeId != n.Id {
			return 0, fmt.Errorf("open invoice index of node %q names %s, which is not an open invoice of it", n.Id, hash)
		}
		inv.State, inv.CanceledNodeLost = bankdv1.InvoiceState_INVOICE_STATE_EXPIRED, true
		if err := a.closeInvoice(tx, n, inv); err != nil {
			return 0, err
		}
	}
	return uint32(len(hashes)), nil
}

// ValidateResolveLostPayment checks a ResolveLostPayment request on its own: the API runs it
// before proposing, the state machine again.
func ValidateResolveLostPayment(req *bankdv1.ResolveLostPaymentRequest) *Error {
	if err := checkID("payment_id", req.GetPaymentId()); err != nil {
		return err
	}
	if ref := req.GetReference(); ref != "" || !req.GetSucceeded() {
		if err := checkUTF8Text("reference", ref, MaxLostEvidenceReferenceLen); err != nil {
			return err
		}
	}
	if req.GetSucceeded() {
		if req.GetEvidence() != bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE {
			return invalid("evidence: a success rests on the preimage (PREIMAGE), got %s", req.GetEvidence())
		}
		if err := CheckPaymentHash("preimage", req.GetPreimage()); err != nil {
			return err
		}
		return checkSat("fee_sat", req.GetFeeSat(), true)
	}
	switch req.GetEvidence() {
	case bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_FORCE_CLOSE_RESOLUTION, bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT:
	default:
		return invalid("evidence: a failure rests on a force-close resolution (FORCE_CLOSE_RESOLUTION) or the payee's statement (PAYEE_STATEMENT), got %s", req.GetEvidence())
	}
	if req.GetPreimage() != "" {
		return invalid("preimage: a preimage proves the payment succeeded; resolve it as succeeded")
	}
	if req.GetFeeSat() != 0 {
		return invalid("fee_sat: a failed payment paid no fee")
	}
	return nil
}

// sameLostResolution reports whether req asks for resolution r again.
func sameLostResolution(r *bankdv1.LostPaymentResolution, req *bankdv1.ResolveLostPaymentRequest) bool {
	return r.Succeeded == req.Succeeded && r.Evidence == req.Evidence && r.Preimage == req.Preimage &&
		r.FeeSat == req.FeeSat && r.Reference == req.Reference
}

// resolveLostPayment applies RESOLVE_LOST_PAYMENT (see the top of this file).
func (a *applier) resolveLostPayment(tx *txn, req *bankdv1.ResolveLostPaymentRequest) (proto.Message, error) {
	if err := ValidateResolveLostPayment(req); err != nil {
		return nil, err
	}
	if a.principal == "" {
		return nil, invalid("decided_by: a lost payment is resolved by an authenticated API token; this command carries none")
	}
	p := &bankdv1.LnPayment{}
	if found, err := getProto(tx, paymentKey(req.PaymentId), p); err != nil {
		return nil, err
	} else if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "payment_id: no payment %q", req.PaymentId)
	}
	if p.Internal {
		return nil, lightningConflict("payment_id: payment %q was settled inside the ledger; no node was involved", p.Id)
	}
	if req.Succeeded {
		if err := checkPreimage(p, req.Preimage); err != nil {
			return nil, err
		}
	}
	if r := p.LostResolution; r != nil {
		return a.resolvedAlready(tx, p, req)
	}
	if p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
		return nil, lightningConflict("payment_id: payment %q is %s, as its node reported; only payments in flight on a lost node are resolved by hand", p.Id, p.State)
	}
	n, err := loadLndNode(tx, p.NodeId)
	if err != nil {
		return nil, err
	}
	if n.State != lndLost {
		return nil, lightningConflict("payment_id: payment %q is in flight on node %q, which is %s: the pool tracks it with the node; declare the node lost first if it is gone for good", p.Id, n.Id, n.State)
	}
	o := paymentOutcome{succeeded: req.Succeeded, preimage: req.Preimage, feeSat: req.FeeSat, keepHash: true}
	if !req.Succeeded {
		o.failureReason = truncateTo("resolved by hand after node "+n.Id+" was lost: "+evidenceName(req.Evidence)+": "+req.Reference, MaxLightningErrorLen)
	}
	p.LostResolution = &bankdv1.LostPaymentResolution{
		Succeeded: req.Succeeded, Evidence: req.Evidence, Preimage: req.Preimage, FeeSat: req.FeeSat, Reference: req.Reference,
		DecidedBy: a.principal, DecidedUnixMs: a.now, Index: a.index,
	}
	if n, err = a.bookPaymentOutcome(tx, p, o); err != nil {
		return nil, err
	}
	return &bankdv1.ResolveLostPaymentResponse{Payment: p, Node: n}, a.savePayment(tx, p)
}

// resolvedAlready answers a resolution of a payment an admin resolved before: a replay, the
// problem a preimage of a failed payment is, or a refusal.
func (a *applier) resolvedAlready(tx *txn, p *bankdv1.LnPayment, req *bankdv1.ResolveLostPaymentRequest) (proto.Message, error) {
	r := p.LostResolution
	n, err := loadLndNode(tx, p.NodeId)
	if err != nil {
		return nil, err
	}
	res := &bankdv1.ResolveLostPaymentResponse{Payment: p, Node: n, Replayed: true}
	switch {
	case sameLostResolution(r, req):
		return res, nil
	case !r.Succeeded && req.Succeeded:
		// The preimage (checked above) proves the payee was paid: the failure was wrong. The
		// customer got the hold back, so the bank bears the amount; no one is charged again
		// silently. Recorded once for an operator.
		res.Problem = fmt.Sprintf("payment %q was resolved FAILED by %q at index %d (%s: %s), but its preimage was supplied: the lost node paid it. "+
			"The customer's hold of %d sat was released, so the bank bears the amount; an operator decides whether to recover it",
			p.Id, r.DecidedBy, r.Index, evidenceName(r.Evidence), r.Reference, p.AmountSat)
		if r.ContradictedIndex != 0 {
			return res, nil
		}
		a.problem("payment "+p.Id, "%s (preimage supplied by %q)", res.Problem, a.principal)
		r.ContradictedIndex = a.index
		return res, a.savePayment(tx, p)
	}
	outcome := "FAILED"
	if r.Succeeded {
		outcome = "SUCCEEDED"
	}
	return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "payment_id: payment %q was resolved %s by %q at index %d on other evidence (%s); a resolution is final",
		p.Id, outcome, r.DecidedBy, r.Index, evidenceName(r.Evidence))
}

// evidenceName is the short name of an evidence kind, as bankctl spells it.
func evidenceName(e bankdv1.LostPaymentEvidence) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e.String(), "LOST_PAYMENT_EVIDENCE_")), "_", "-")
}
