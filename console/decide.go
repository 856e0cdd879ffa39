package console

import (
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// decision is an approve or reject form of the approvals page.
type decision struct {
	id      string
	approve bool
	reason  string
}

// parseDecision reads and bounds the decision form; the API checks the rest (the id exists,
// the decider is not the requester, a rejection has a reason).
func parseDecision(q *request) (decision, string) {
	f := q.r.PostForm
	d := decision{id: strings.TrimSpace(f.Get("id")), reason: strings.TrimSpace(f.Get("reason"))}
	switch f.Get("decision") {
	case "approve":
		d.approve = true
	case "reject":
	default:
		return d, "The form named no decision (approve or reject)."
	}
	switch {
	case d.id == "" || len(d.id) > maxIDLen:
		return d, "The form named no valid id."
	case len(d.reason) > maxReasonLen:
		return d, fmt.Sprintf("A reason may be at most %d bytes.", maxReasonLen)
	}
	return d, ""
}

func (d decision) verb() string {
	if d.approve {
		return "approved"
	}
	return "rejected"
}

// decidePayout approves or rejects a payout awaiting approval, through the API (operator
// scope, and another identity than the requester's), and shows the outcome on the approvals page.
func (c *Console) decidePayout(q *request) {
	d, bad := parseDecision(q)
	if bad != "" {
		q.finishDecision("Payout", d, bad, nil)
		return
	}
	req := connect.NewRequest(&bankdv1.DecidePayoutRequest{Id: d.id, Approve: d.approve, Reason: d.reason})
	var res *connect.Response[bankdv1.DecidePayoutResponse]
	var err error
	if d.approve {
		res, err = c.api.payout.ApprovePayout(q.ctx(), req)
	} else {
		res, err = c.api.payout.RejectPayout(q.ctx(), req)
	}
	state := ""
	if err == nil {
		state = enumText(res.Msg.GetPayout().GetState())
	}
	q.finishDecision("Payout", d, "", &outcome{err: err, state: state})
}

// decideVault approves or rejects a cold-vault proposal, through the API.
func (c *Console) decideVault(q *request) {
	d, bad := parseDecision(q)
	if bad != "" {
		q.finishDecision("Vault proposal", d, bad, nil)
		return
	}
	req := connect.NewRequest(&bankdv1.DecideVaultProposalRequest{Id: d.id, Approve: d.approve, Reason: d.reason})
	var res *connect.Response[bankdv1.DecideVaultProposalResponse]
	var err error
	if d.approve {
		res, err = c.api.vault.Approve(q.ctx(), req)
	} else {
		res, err = c.api.vault.Reject(q.ctx(), req)
	}
	state := ""
	if err == nil {
		state = enumText(res.Msg.GetProposal().GetState())
	}
	q.finishDecision("Vault proposal", d, "", &outcome{err: err, state: state})
}

// outcome is an API call's error, or the state it left the subject in.
type outcome struct {
	err   error
	state string
}

// finishDecision records the outcome as the session's flash and sends the browser back to the
// approvals page (post, redirect, get: a reload does not decide twice).
func (q *request) finishDecision(what string, d decision, bad string, o *outcome) {
	var f flash
	switch {
	case bad != "":
		f = flash{Kind: "refused", Text: what + ": " + bad}
	case o.err != nil:
		if connect.CodeOf(o.err) == connect.CodeUnauthenticated {
			q.expire()
			return
		}
		f = flash{Kind: "refused", Text: fmt.Sprintf("%s %s was not %s. %s", what, d.id, d.verb(), describeAPIError(o.err))}
	default:
		f = flash{Kind: "ok", Text: fmt.Sprintf("%s %s %s; it is now %s.", what, d.id, d.verb(), o.state)}
	}
	outcome := "ok"
	if f.Kind != "ok" {
		outcome = "refused"
	}
	q.c.log.Info("console decision", "subject", what, "id", d.id, "approve", d.approve, "outcome", outcome, "peer", q.r.RemoteAddr)
	q.c.sessions.setFlash(q.sess, f)
	http.Redirect(q.w, q.r, "/ui/approvals", http.StatusSeeOther)
}
