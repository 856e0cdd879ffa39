package fsm

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Lightning state: the registry of pool lnd nodes, invoices issued to accounts and payments
// made from them. The leader's pool driver (package lnpool) proposes every command here and
// calls lnd only after the command that records its intent has applied; every replica applies
// them the same way.
//
// Ledger side. Each pool node has an ASSET account ln:<id>, non-negative, mirroring what its
// channels hold for the bank. When a node first answers, what its channels hold is posted from
// the EQUITY account LightningCapitalAccount. Then:
//
//   - an invoice settled on a node posts ln:<id> -> customer (amount paid);
//   - a settlement of a hash the cluster never issued posts ln:<id> -> LightningUnattributedAccount,
//     so no received money is lost and an operator can place it;
//   - a payment reserves amount + fee reserve customer -> ln:<id> with a pending transfer before
//     lnd is asked to pay; success posts amount + fee and releases the rest; an explicit failure
//     voids it. A payment is never failed on a timeout or an error: it stays IN_FLIGHT until its
//     node reports a final outcome;
//   - a payment of an invoice of our own pool moves payer -> payee inside the ledger with no lnd
//     call; the invoice is canceled on its node afterwards.
//
// Pay-once across the pool: a payment hash has at most one payment IN_FLIGHT or SUCCEEDED
// (hash table below). lnd forgets a FAILED payment's hash is spoken for, and so do we: a failed
// payment frees its hash.

// Accounts of the Lightning pool.
const (
	// LightningCapitalAccount is the EQUITY account opening balances of pool nodes come from.
	LightningCapitalAccount = "ln-capital"
	// LightningUnattributedAccount is the LIABILITY account credited with settlements of
	// invoices the cluster never issued (or paid twice).
	LightningUnattributedAccount = "ln-unattributed"
	// LightningNodeAccountPrefix starts the ASSET account of each pool node.
	LightningNodeAccountPrefix = "ln:"
)

// Lightning limits.
const (
	MaxLndNodeIDLen       = 32
	MaxLndAddressLen      = 256
	MaxLndPathLen         = 1024
	MaxPaymentRequestLen  = 7089 // the longest BOLT11 string lnd accepts
	MaxInvoiceMemoLen     = 639  // BOLT11's description limit
	MaxInvoiceUpdates     = 10_000
	MaxLightningErrorLen  = 512
	MaxLightningAmountSat = 21_000_000 * 100_000_000
)

// Lightning tables (see keys.go for the rest of the keyspace):
//
//	L <node id>                -> LndNode
//	I <payment hash>           -> LnInvoice
//	R <request id>             -> payment hash of the invoice CreateInvoice request_id made
//	O <node id> 0x00 <hash>    -> empty: OPEN invoices by node
//	C <hash>                   -> empty: internally settled invoices still open on their node
//	P <payment id>             -> LnPayment
//	H <payment hash>           -> id of the payment IN_FLIGHT or SUCCEEDED for the hash (or
//	                              FAILED by an admin after its node was lost, lightning_lost.go)
//	F <node id> 0x00 <payment id> -> empty: IN_FLIGHT payments by node
const (
	tagLndNode        = 'L'
	tagInvoice        = 'I'
	tagInvoiceRequest = 'R'
	tagOpenInvoice    = 'O'
	tagInvoiceCancel  = 'C'
	tagPayment        = 'P'
	tagPaymentHash    = 'H'
	tagInFlight       = 'F'
)

func lndNodeKey(id string) []byte             { return tagged(tagLndNode, id) }
func invoiceKey(hash string) []byte           { return tagged(tagInvoice, hash) }
func invoiceRequestKey(id string) []byte      { return tagged(tagInvoiceRequest, id) }
func invoiceCancelKey(hash string) []byte     { return tagged(tagInvoiceCancel, hash) }
func paymentKey(id string) []byte             { return tagged(tagPayment, id) }
func paymentHashKey(hash string) []byte       { return tagged(tagPaymentHash, hash) }
func openInvoicePrefix(node string) []byte    { return append(tagged(tagOpenInvoice, node), 0) }
func inFlightPrefix(node string) []byte       { return append(tagged(tagInFlight, node), 0) }
func openInvoiceKey(node, hash string) []byte { return append(openInvoicePrefix(node), hash...) }
func inFlightKey(node, id string) []byte      { return append(inFlightPrefix(node), id...) }

// LightningNodeAccount is the ledger account of pool node id.
func LightningNodeAccount(id string) string { return LightningNodeAccountPrefix + id }

// --- validation ---

// CheckLndNodeID checks a pool node id: 1-32 characters from [A-Za-z0-9._-].
func CheckLndNodeID(field, id string) *Error {
	if id == "" || len(id) > MaxLndNodeIDLen {
		return invalid("%s: must be 1-%d characters, got %d", field, MaxLndNodeIDLen, len(id))
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("%s: %q has a character outside [A-Za-z0-9._-]", field, truncate(id))
		}
	}
	return nil
}

// CheckPaymentHash checks a payment hash or preimage: 64 lower-case hex characters.
func CheckPaymentHash(field, h string) *Error {
	if len(h) != 64 {
		return invalid("%s: must be 64 hex characters, got %d", field, len(h))
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return invalid("%s: must be lower-case hex, got %q", field, truncate(h))
		}
	}
	return nil
}

func checkSat(field string, v int64, allowZero bool) *Error {
	if v < 0 || (!allowZero && v == 0) || v > MaxLightningAmountSat {
		lo := "1"
		if allowZero {
			lo = "0"
		}
		return invalid("%s: must be %s-%d satoshis, got %d", field, lo, int64(MaxLightningAmountSat), v)
	}
	return nil
}

func checkText(field, s string, max int, required bool) *Error {
	switch {
	case required && s == "":
		return invalid("%s: required", field)
	case len(s) > max:
		return invalid("%s: at most %d bytes, got %d", field, max, len(s))
	}
	return nil
}

// ValidateUpsertLndNode checks an UpsertLndNode request on its own.
func ValidateUpsertLndNode(req *bankdv1.UpsertLndNodeRequest) *Error {
	if err := CheckLndNodeID("id", req.GetId()); err != nil {
		return err
	}
	if err := checkText("address", req.GetAddress(), MaxLndAddressLen, true); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(req.GetAddress())
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
		return invalid("address: must be host:port with a port of 1-65535, got %q", truncate(req.GetAddress()))
	}
	for _, p := range []struct{ field, path string }{{"tls_cert_path", req.GetTlsCertPath()}, {"macaroon_path", req.GetMacaroonPath()}} {
		if err := checkText(p.field, p.path, MaxLndPathLen, true); err != nil {
			return err
		}
		if !strings.HasPrefix(p.path, "/") {
			return invalid("%s: must be an absolute path, got %q", p.field, truncate(p.path))
		}
	}
	return nil
}

// ValidateLnInvoice checks an invoice the leader is about to record.
func ValidateLnInvoice(inv *bankdv1.LnInvoice) *Error {
	if inv == nil {
		return invalid("invoice: required")
	}
	if err := CheckPaymentHash("invoice.hash", inv.Hash); err != nil {
		return err
	}
	if err := checkID("invoice.account_id", inv.AccountId); err != nil {
		return err
	}
	if err := CheckLndNodeID("invoice.node_id", inv.NodeId); err != nil {
		return err
	}
	if err := checkID("invoice.request_id", inv.RequestId); err != nil {
		return err
	}
	if err := checkSat("invoice.amount_sat", inv.AmountSat, false); err != nil {
		return err
	}
	if err := checkText("invoice.memo", inv.Memo, MaxInvoiceMemoLen, false); err != nil {
		return err
	}
	if err := checkText("invoice.payment_request", inv.PaymentRequest, MaxPaymentRequestLen, true); err != nil {
		return err
	}
	if inv.ExpiresUnixMs <= 0 {
		return invalid("invoice.expires_unix_ms: required")
	}
	if inv.AddIndex == 0 {
		return invalid("invoice.add_index: required (lnd numbers invoices from 1)")
	}
	return nil
}

// ValidateLnPaymentStart checks a payment the leader is about to start.
func ValidateLnPaymentStart(req *bankdv1.LnPaymentStart) *Error {
	if err := checkID("id", req.GetId()); err != nil {
		return err
	}
	if err := checkID("account_id", req.GetAccountId()); err != nil {
		return err
	}
	if err := CheckPaymentHash("hash", req.GetHash()); err != nil {
		return err
	}
	if err := checkText("payment_request", req.GetPaymentRequest(), MaxPaymentRequestLen, true); err != nil {
		return err
	}
	if err := checkText("destination", req.GetDestination(), 66, false); err != nil {
		return err
	}
	if err := checkSat("amount_sat", req.GetAmountSat(), false); err != nil {
		return err
	}
	if err := checkSat("fee_reserve_sat", req.GetFeeReserveSat(), true); err != nil {
		return err
	}
	if req.GetAmountSat()+req.GetFeeReserveSat() > MaxLightningAmountSat {
		return invalid("amount_sat + fee_reserve_sat: above %d", int64(MaxLightningAmountSat))
	}
	return nil
}

// CheckPayer refuses an account money may not leave the bank from. Only customer balances pay:
// client-owned LIABILITY accounts in BTC that cannot go negative, so that no payment can
// overdraw an account. lnpool runs it before it asks lnd anything; LN_PAYMENT_START runs it
// again.
func CheckPayer(field string, acc *bankdv1.Account) *Error {
	kind := strings.TrimPrefix(acc.GetKind().String(), "ACCOUNT_KIND_")
	switch o := accountOwner(acc); {
	case o != bankdv1.Owner_OWNER_CLIENT:
		return invalid("%s: %q is an account of %s; only customer accounts pay", field, acc.GetId(), ownerPhrase(o))
	case acc.GetKind() != bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY:
		return invalid("%s: %q is a %s account; only customer (LIABILITY) accounts pay", field, acc.GetId(), kind)
	case !acc.GetNonNegative():
		return invalid("%s: %q was created without non_negative and could be overdrawn; only accounts that cannot go negative pay", field, acc.GetId())
	case acc.GetCurrency() != "BTC":
		return invalid("%s: %q is in %s; payments are in BTC", field, acc.GetId(), acc.GetCurrency())
	}
	return nil
}

// --- helpers ---

func loadLndNode(tx *txn, id string) (*bankdv1.LndNode, error) {
	n := &bankdv1.LndNode{}
	found, err := getProto(tx, lndNodeKey(id), n)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "node_id: no pool node %q", id)
	}
	return n, nil
}

func (a *applier) saveLndNode(tx *txn, n *bankdv1.LndNode) error {
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_LndNode{LndNode: proto.Clone(n).(*bankdv1.LndNode)}})
	return putProto(tx, lndNodeKey(n.Id), n)
}

func (a *applier) saveInvoice(tx *txn, inv *bankdv1.LnInvoice) error {
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Invoice{Invoice: proto.Clone(inv).(*bankdv1.LnInvoice)}})
	return putProto(tx, invoiceKey(inv.Hash), inv)
}

func (a *applier) savePayment(tx *txn, p *bankdv1.LnPayment) error {
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Payment{Payment: proto.Clone(p).(*bankdv1.LnPayment)}})
	return putProto(tx, paymentKey(p.Id), p)
}

// LndNodeUsable reports whether a node may take new work: active, answering, synced, and
// bound to its pubkey.
func LndNodeUsable(n *bankdv1.LndNode) bool {
	return n.GetState() == bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE && n.GetReachable() && n.GetSyncedToChain() && n.GetPubkey() != ""
}

func lightningConflict(format string, args ...any) *Error {
	return refuse(bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, format, args...)
}

// move applies a transfer the Lightning state needs; a refusal comes back as *Error and leaves
// nothing behind.
func (a *applier) move(tx *txn, t *bankdv1.Transfer) (*bankdv1.Transfer, error) {
	if t.Currency == "" && !t.PostPending && !t.VoidPending {
		t.Currency = "BTC"
	}
	res, err := a.driverTransfer(tx, t)
	if err != nil {
		return nil, err
	}
	if res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		return nil, refuse(res.Code, "%s", res.Message)
	}
	return res.Transfer, nil
}

// The ids of the Lightning driver's transfers; owner.go lists their forms.

// hashTransferID names a ledger transfer after a payment hash: kind, then the hash in base64url.
func hashTransferID(kind, hash string) string {
	raw, _ := hex.DecodeString(hash)
	return kind + ":" + base64.RawURLEncoding.EncodeToString(raw)
}

// openingTransferID names the posting of a pool node's opening balance.
func openingTransferID(node string) string { return "ln-open:" + node }

// unattributedTransferID names the booking of a node's settlement the cluster did not issue.
func unattributedTransferID(node string, settleIndex uint64) string {
	return "lnu:" + node + ":" + strconv.FormatUint(settleIndex, 10)
}

// paymentTransferID names the hold of a payment started at a Raft index.
func paymentTransferID(index uint64) string { return "lnp:" + strconv.FormatUint(index, 10) }

// paymentResolutionID names the post (succeeded) or void (failed) of a payment's hold.
func paymentResolutionID(hold string, succeeded bool) string {
	if succeeded {
		return hold + ":post"
	}
	return hold + ":void"
}

// --- registry ---

func (a *applier) upsertLndNode(tx *txn, req *bankdv1.UpsertLndNodeRequest) (proto.Message, error) {
	if err := ValidateUpsertLndNode(req); err != nil {
		return nil, err
	}
	n := &bankdv1.LndNode{}
	found, err := getProto(tx, lndNodeKey(req.Id), n)
	if err != nil {
		return nil, err
	}
	if found {
		if n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED || n.State == lndLost {
			return nil, lightningConflict("id: node %q is %s; add the new node under a new id", req.Id, strings.ToLower(strings.TrimPrefix(n.State.String(), "LND_NODE_STATE_")))
		}
		if n.Address == req.Address && n.TlsCertPath == req.TlsCertPath && n.MacaroonPath == req.MacaroonPath {
			return &bankdv1.UpsertLndNodeResponse{Node: n}, nil
		}
		n.Address, n.TlsCertPath, n.MacaroonPath = req.Address, req.TlsCertPath, req.MacaroonPath
		return &bankdv1.UpsertLndNodeResponse{Node: n}, a.saveLndNode(tx, n)
	}
	for _, acc := range []*bankdv1.Account{
		{Id: LightningCapitalAccount, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_EQUITY,
			Metadata: map[string]string{"purpose": "opening balances of Lightning pool nodes"}},
		{Id: LightningUnattributedAccount, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY,
			Metadata: map[string]string{"purpose": "Lightning settlements of invoices the cluster did not issue"}},
		{Id: LightningNodeAccount(req.Id), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET, NonNegative: true,
			Metadata: map[string]string{"purpose": "channel balance of Lightning pool node " + req.Id}},
	} {
		if err := a.ensureAccount(tx, acc); err != nil {
			return nil, err
		}
	}
	n = &bankdv1.LndNode{
		Id: req.Id, Address: req.Address, TlsCertPath: req.TlsCertPath, MacaroonPath: req.MacaroonPath,
		State: bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE, AccountId: LightningNodeAccount(req.Id), AddedUnixMs: a.now,
	}
	return &bankdv1.UpsertLndNodeResponse{Node: n, Created: true}, a.saveLndNode(tx, n)
}

func (a *applier) lndNodeHealth(tx *txn, req *bankdv1.LndNodeHealth) (proto.Message, error) {
	if err := CheckLndNodeID("id", req.GetId()); err != nil {
		return nil, err
	}
	if err := checkText("error", req.GetError(), MaxLightningErrorLen, false); err != nil {
		return nil, err
	}
	if err := checkSat("opening_balance_sat", req.GetOpeningBalanceSat(), true); err != nil {
		return nil, err
	}
	if req.GetReachable() {
		if err := checkPubkey(req.GetPubkey()); err != nil {
			return nil, err
		}
	}
	n, err := loadLndNode(tx, req.Id)
	if err != nil {
		return nil, err
	}
	switch n.State {
	case bankdv1.LndNodeState_LND_NODE_STATE_RETIRED:
		return nil, lightningConflict("id: node %q is retired", req.Id)
	case lndLost:
		return nil, lightningConflict("id: node %q was declared lost; the pool does not call it", req.Id)
	}
	n.Reachable, n.SyncedToChain, n.HealthError, n.HealthCheckedUnixMs = req.Reachable, req.SyncedToChain, req.Error, a.now
	switch {
	case !req.Reachable:
	case n.Pubkey == "":
		// First contact: bind the identity and record what the channels hold, unless another
		// registered node is this lnd already (its channels would be counted twice).
		if other, err := nodeWithPubkey(tx, req.Pubkey); err != nil {
			return nil, err
		} else if other != "" {
			n.Reachable, n.SyncedToChain = false, false
			n.HealthError = "node answered with pubkey " + req.Pubkey + ", which pool node " + other + " already has"
			break
		}
		n.Pubkey, n.OpeningBalanceSat = req.Pubkey, req.OpeningBalanceSat
		if req.OpeningBalanceSat > 0 {
			if _, err := a.move(tx, &bankdv1.Transfer{
				Id: openingTransferID(n.Id), DebitAccountId: n.AccountId, CreditAccountId: LightningCapitalAccount,
				Amount: req.OpeningBalanceSat, ExternalRef: n.Pubkey,
			}); err != nil {
				refusal, ok := asRefusal(err)
				if !ok {
					return nil, err
				}
				// The node is bound all the same: refusing the report would leave the node
				// unusable and the driver reporting it again for ever. What its channels held is
				// then missing from its account, which reconciliation shows; the problem says why.
				a.problem("node "+n.Id, "opening balance of %d sat not posted: %s", req.OpeningBalanceSat, refusal.Message)
			}
		}
	case n.Pubkey != req.Pubkey:
		// Another lnd answers at this address: never trust it with the bank's money.
		n.Reachable, n.SyncedToChain = false, false
		n.HealthError = "node answered with pubkey " + req.Pubkey + ", registered as " + n.Pubkey
	}
	return n, a.saveLndNode(tx, n)
}

// nodeWithPubkey returns the id of the pool node bound to pubkey, or "". Retired nodes count:
// their account still holds what their channels held.
func nodeWithPubkey(tx *txn, pubkey string) (string, error) {
	var id string
	err := tx.scan([]byte{tagLndNode}, []byte{tagLndNode + 1}, func(_, v []byte) (bool, error) {
		n := &bankdv1.LndNode{}
		if err := proto.Unmarshal(v, n); err != nil {
			return false, fmt.Errorf("corrupt pool node: %w", err)
		}
		if n.Pubkey == pubkey {
			id = n.Id
			return false, nil
		}
		return true, nil
	})
	return id, err
}

func checkPubkey(pk string) *Error {
	if len(pk) != 66 || (pk[:2] != "02" && pk[:2] != "03") {
		return invalid("pubkey: must be a 33-byte compressed key in hex, got %q", truncate(pk))
	}
	if _, err := hex.DecodeString(pk); err != nil {
		return invalid("pubkey: not hex: %q", truncate(pk))
	}
	return nil
}

func (a *applier) setLndNodeState(tx *txn, req *bankdv1.SetLndNodeStateRequest) (proto.Message, error) {
	if err := CheckLndNodeID("id", req.GetId()); err != nil {
		return nil, err
	}
	n, err := loadLndNode(tx, req.Id)
	if err != nil {
		return nil, err
	}
	const (
		active   = bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE
		draining = bankdv1.LndNodeState_LND_NODE_STATE_DRAINING
		retired  = bankdv1.LndNodeState_LND_NODE_STATE_RETIRED
	)
	switch {
	case req.State == n.State:
		return &bankdv1.SetLndNodeStateResponse{Node: n}, nil
	case req.State == draining && n.State == active, req.State == active && n.State == draining:
	case req.State == retired && n.State == draining:
		if n.OpenInvoices > 0 || n.InflightPayments > 0 {
			return nil, lightningConflict("id: node %q still has %d open invoices and %d payments in flight", n.Id, n.OpenInvoices, n.InflightPayments)
		}
	default:
		return nil, lightningConflict("state: node %q cannot go from %s to %s", n.Id, n.State, req.State)
	}
	n.State = req.State
	return &bankdv1.SetLndNodeStateResponse{Node: n}, a.saveLndNode(tx, n)
}

// --- invoices ---

func (a *applier) lnInvoiceCreated(tx *txn, req *bankdv1.LnInvoiceCreated) (proto.Message, error) {
	if err := ValidateLnInvoice(req.GetInvoice()); err != nil {
		return nil, err
	}
	inv := proto.Clone(req.Invoice).(*bankdv1.LnInvoice)
	if v, found, err := tx.get(invoiceRequestKey(inv.RequestId)); err != nil {
		return nil, err
	} else if found {
		// A retried request: answer with the invoice the first one recorded. The new lnd
		// invoice, if any, was never handed out.
		prev := &bankdv1.LnInvoice{}
		if _, err := getProto(tx, invoiceKey(string(v)), prev); err != nil {
			return nil, err
		}
		if prev.AccountId != inv.AccountId || prev.AmountSat != inv.AmountSat {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "request_id: %q was already used for another invoice", inv.RequestId)
		}
		return &bankdv1.CreateInvoiceResponse{Invoice: prev}, nil
	}
	if _, found, err := tx.get(invoiceKey(inv.Hash)); err != nil {
		return nil, err
	} else if found {
		return nil, lightningConflict("invoice.hash: %s is already recorded", inv.Hash)
	}
	n, err := loadLndNode(tx, inv.NodeId)
	if err != nil {
		return nil, err
	}
	if n.State != bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE {
		return nil, lightningConflict("invoice.node_id: node %q is %s and takes no new invoices", n.Id, n.State)
	}
	acc, err := loadAccount(tx, "invoice.account_id", inv.AccountId, "BTC")
	if err != nil {
		return nil, err
	}
	if acc.Kind != bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY {
		return nil, invalid("invoice.account_id: %q is a %s account; invoices credit customer (liability) accounts", acc.Id, acc.Kind)
	}
	if o := accountOwner(acc); o != bankdv1.Owner_OWNER_CLIENT {
		return nil, invalid("invoice.account_id: %q is an account of %s; invoices credit customer accounts", acc.Id, ownerPhrase(o))
	}
	inv.State, inv.CreatedUnixMs = bankdv1.InvoiceState_INVOICE_STATE_OPEN, a.now
	inv.SettleIndex, inv.AmountPaidSat, inv.SettledUnixMs, inv.Internal, inv.TransferId, inv.CancelOnNode = 0, 0, 0, false, "", false
	tx.set(invoiceRequestKey(inv.RequestId), []byte(inv.Hash))
	tx.set(openInvoiceKey(n.Id, inv.Hash), nil)
	n.OpenInvoices++
	if inv.AddIndex > n.AddIndex {
		n.AddIndex = inv.AddIndex
	}
	if err := a.saveLndNode(tx, n); err != nil {
		return nil, err
	}
	return &bankdv1.CreateInvoiceResponse{Invoice: inv}, a.saveInvoice(tx, inv)
}

func (a *applier) lnInvoiceUpdates(tx *txn, req *bankdv1.LnInvoiceUpdates) (proto.Message, error) {
	if err := CheckLndNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if len(req.Updates) == 0 || len(req.Updates) > MaxInvoiceUpdates {
		return nil, invalid("updates: must have 1-%d entries, got %d", MaxInvoiceUpdates, len(req.Updates))
	}
	for i, u := range req.Updates {
		if err := checkInvoiceUpdate(i, u); err != nil {
			return nil, err
		}
	}
	n, err := loadLndNode(tx, req.NodeId)
	if err != nil {
		return nil, err
	}
	out := &bankdv1.LnInvoiceUpdatesResponse{}
	for _, u := range req.Updates {
		if err := a.applyInvoiceUpdate(tx, n, u, out); err != nil {
			return nil, err
		}
		if req.FromSubscription {
			n.SettleIndex = max(n.SettleIndex, u.SettleIndex)
			n.AddIndex = max(n.AddIndex, u.AddIndex)
		}
	}
	retireIfResolved(n)
	return out, a.saveLndNode(tx, n)
}

func checkInvoiceUpdate(i int, u *bankdv1.LnInvoiceUpdate) *Error {
	field := "updates[" + strconv.Itoa(i) + "]"
	if err := CheckPaymentHash(field+".hash", u.Hash); err != nil {
		return err
	}
	switch u.State {
	case bankdv1.InvoiceState_INVOICE_STATE_SETTLED:
		if u.SettleIndex == 0 {
			return invalid("%s.settle_index: required for a settlement", field)
		}
		if err := checkSat(field+".amount_paid_sat", u.AmountPaidSat, false); err != nil {
			return err
		}
	case bankdv1.InvoiceState_INVOICE_STATE_EXPIRED:
	default:
		return invalid("%s.state: must be SETTLED or EXPIRED, got %s", field, u.State)
	}
	return nil
}

// applyInvoiceUpdate applies one change a node reported. Replays change nothing.
func (a *applier) applyInvoiceUpdate(tx *txn, n *bankdv1.LndNode, u *bankdv1.LnInvoiceUpdate, out *bankdv1.LnInvoiceUpdatesResponse) error {
	inv := &bankdv1.LnInvoice{}
	found, err := getProto(tx, invoiceKey(u.Hash), inv)
	if err != nil {
		return err
	}
	settled := u.State == bankdv1.InvoiceState_INVOICE_STATE_SETTLED
	switch {
	case settled && found && inv.NodeId == n.Id && inv.State == bankdv1.InvoiceState_INVOICE_STATE_OPEN:
		t, err := a.move(tx, &bankdv1.Transfer{
			Id: hashTransferID("lni", inv.Hash), DebitAccountId: n.AccountId, CreditAccountId: inv.AccountId,
			Amount: u.AmountPaidSat, ExternalRef: inv.Hash,
		})
		switch refusal, refused := asRefusal(err); {
		case err == nil:
			inv.TransferId = t.Id
		case !refused:
			return err
		default:
			// The account cannot be credited (an account total at its limit, or the id taken by
			// a record of another owner). Refusing the batch would stop this node's settlements
			// here for good, since the driver proposes them again; so the money is booked where
			// unattributed money goes, neither lost nor credited twice, for an operator to place.
			a.problem("invoice "+inv.Hash, "settlement of %d sat not credited to %q: %s; booked to %s instead",
				u.AmountPaidSat, inv.AccountId, refusal.Message, LightningUnattributedAccount)
			if err := a.bookUnattributed(tx, n, u, out); err != nil {
				return err
			}
		}
		inv.State, inv.SettleIndex, inv.AmountPaidSat, inv.SettledUnixMs = bankdv1.InvoiceState_INVOICE_STATE_SETTLED, u.SettleIndex, u.AmountPaidSat, a.now
		out.Settled++
		return a.closeInvoice(tx, n, inv)
	case settled && found && inv.NodeId == n.Id && !inv.Internal && inv.SettleIndex == u.SettleIndex:
		return nil // the same settlement again
	case settled:
		// Money the cluster did not ask for, or an invoice paid a second time (once inside the
		// ledger, once on the node): keep it where an operator finds it. The node's settle
		// index makes the credit happen once.
		return a.bookUnattributed(tx, n, u, out)
	case found && inv.NodeId == n.Id && inv.State == bankdv1.InvoiceState_INVOICE_STATE_OPEN:
		inv.State = bankdv1.InvoiceState_INVOICE_STATE_EXPIRED
		out.Expired++
		return a.closeInvoice(tx, n, inv)
	}
	return nil // an expiry of an invoice already closed, or not ours
}

// bookUnattributed credits a settlement to LightningUnattributedAccount, once per node settle
// index. If even that is refused (the id taken, a total at its limit), the money is recorded
// nowhere but in the problem list: the batch still applies, for the reason above, and
// reconciliation shows the node holding more than its account.
func (a *applier) bookUnattributed(tx *txn, n *bankdv1.LndNode, u *bankdv1.LnInvoiceUpdate, out *bankdv1.LnInvoiceUpdatesResponse) error {
	res, err := a.driverTransfer(tx, &bankdv1.Transfer{
		Id:             unattributedTransferID(n.Id, u.SettleIndex),
		DebitAccountId: n.AccountId, CreditAccountId: LightningUnattributedAccount,
		Amount: u.AmountPaidSat, Currency: "BTC", ExternalRef: u.Hash,
	})
	if err != nil {
		return err
	}
	if res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		a.problem("invoice "+u.Hash, "settlement %d of %d sat on node %q not booked to %s: %s",
			u.SettleIndex, u.AmountPaidSat, n.Id, LightningUnattributedAccount, res.Message)
		return nil
	}
	if !res.Replayed {
		out.Unattributed++
	}
	return nil
}

// closeInvoice saves an invoice that left OPEN and takes it off its node's open list.
func (a *applier) closeInvoice(tx *txn, n *bankdv1.LndNode, inv *bankdv1.LnInvoice) error {
	tx.delete(openInvoiceKey(inv.NodeId, inv.Hash))
	if n.Id == inv.NodeId && n.OpenInvoices > 0 {
		n.OpenInvoices--
	}
	return a.saveInvoice(tx, inv)
}

func (a *applier) lnInvoiceCanceledOnNode(tx *txn, req *bankdv1.LnInvoiceCanceledOnNode) (proto.Message, error) {
	if err := CheckPaymentHash("hash", req.GetHash()); err != nil {
		return nil, err
	}
	inv := &bankdv1.LnInvoice{}
	found, err := getProto(tx, invoiceKey(req.Hash), inv)
	if err != nil {
		return nil, err
	}
	if !found || !inv.CancelOnNode {
		return nil, lightningConflict("hash: %s has no cancellation pending", req.Hash)
	}
	inv.CancelOnNode = false
	tx.delete(invoiceCancelKey(inv.Hash))
	return inv, a.saveInvoice(tx, inv)
}

// --- payments ---

func (a *applier) lnPaymentStart(tx *txn, req *bankdv1.LnPaymentStart) (proto.Message, error) {
	if err := ValidateLnPaymentStart(req); err != nil {
		return nil, err
	}
	prev := &bankdv1.LnPayment{}
	if found, err := getProto(tx, paymentKey(req.Id), prev); err != nil {
		return nil, err
	} else if found {
		if prev.Hash != req.Hash || prev.AccountId != req.AccountId {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "id: %q was already used for another payment", req.Id)
		}
		return &bankdv1.LnPaymentStartResponse{Payment: prev, Replayed: true}, nil
	}
	if v, found, err := tx.get(paymentHashKey(req.Hash)); err != nil {
		return nil, err
	} else if found {
		other := &bankdv1.LnPayment{}
		if _, err := getProto(tx, paymentKey(string(v)), other); err != nil {
			return nil, err
		}
		switch other.State {
		case bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED:
			return nil, lightningConflict("payment_request: already paid by payment %q", other.Id)
		case bankdv1.PaymentState_PAYMENT_STATE_FAILED:
			// Only an admin's failure of a lost node's payment keeps its hash (lightning_lost.go).
			return nil, lightningConflict("payment_request: payment %q of this invoice was resolved FAILED by hand after its node was lost, which may have paid it all the same; the hash is never paid again: ask the payee for a new invoice", other.Id)
		}
		return nil, lightningConflict("payment_request: payment %q of this invoice is in flight", other.Id)
	}
	payer, err := loadAccount(tx, "account_id", req.AccountId, "BTC")
	if err != nil {
		return nil, err
	}
	if err := CheckPayer("account_id", payer); err != nil {
		return nil, err
	}
	p := &bankdv1.LnPayment{
		Id: req.Id, AccountId: req.AccountId, Hash: req.Hash, PaymentRequest: req.PaymentRequest,
		Destination: req.Destination, AmountSat: req.AmountSat, FeeReserveSat: req.FeeReserveSat,
		CreatedUnixMs: a.now, InvoiceExpiresUnixMs: req.InvoiceExpiresUnixMs,
	}
	inv := &bankdv1.LnInvoice{}
	own, err := getProto(tx, invoiceKey(req.Hash), inv)
	if err != nil {
		return nil, err
	}
	if own {
		err = a.payOwnInvoice(tx, p, inv)
	} else {
		err = a.startExternalPayment(tx, p, req.NodeId)
	}
	if err != nil {
		return nil, err
	}
	tx.set(paymentHashKey(p.Hash), []byte(p.Id))
	return &bankdv1.LnPaymentStartResponse{Payment: p}, a.savePayment(tx, p)
}

// payOwnInvoice settles an invoice of our own pool inside the ledger: payer -> payee, no lnd.
func (a *applier) payOwnInvoice(tx *txn, p *bankdv1.LnPayment, inv *bankdv1.LnInvoice) error {
	switch {
	case inv.State == bankdv1.InvoiceState_INVOICE_STATE_SETTLED:
		return lightningConflict("payment_request: the invoice is already paid")
	case inv.State != bankdv1.InvoiceState_INVOICE_STATE_OPEN:
		return lightningConflict("payment_request: the invoice has expired")
	case inv.AccountId == p.AccountId:
		return lightningConflict("payment_request: the invoice is account %q's own", p.AccountId)
	case inv.AmountSat != p.AmountSat:
		return invalid("amount_sat: the invoice is for %d, got %d", inv.AmountSat, p.AmountSat)
	}
	payee, err := loadAccount(tx, "payment_request", inv.AccountId, "BTC")
	if err != nil {
		return err
	}
	if o := accountOwner(payee); o != bankdv1.Owner_OWNER_CLIENT {
		return lightningConflict("payment_request: the invoice credits %q, an account of %s", payee.Id, ownerPhrase(o))
	}
	t, err := a.move(tx, &bankdv1.Transfer{
		Id: hashTransferID("lnin", inv.Hash), DebitAccountId: p.AccountId, CreditAccountId: inv.AccountId,
		Amount: p.AmountSat, ExternalRef: inv.Hash,
	})
	if err != nil {
		return err
	}
	p.Internal, p.State, p.ResolvedUnixMs, p.TransferId, p.FeeReserveSat = true, bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED, a.now, t.Id, 0
	inv.State, inv.Internal, inv.AmountPaidSat, inv.SettledUnixMs, inv.TransferId = bankdv1.InvoiceState_INVOICE_STATE_SETTLED, true, p.AmountSat, a.now, t.Id
	inv.CancelOnNode = true
	tx.set(invoiceCancelKey(inv.Hash), nil)
	n, err := loadLndNode(tx, inv.NodeId)
	if err != nil {
		return err
	}
	if err := a.closeInvoice(tx, n, inv); err != nil {
		return err
	}
	return a.saveLndNode(tx, n)
}

// startExternalPayment reserves amount + fee reserve and records the attempt on node.
func (a *applier) startExternalPayment(tx *txn, p *bankdv1.LnPayment, nodeID string) error {
	if err := CheckLndNodeID("node_id", nodeID); err != nil {
		return err
	}
	n, err := loadLndNode(tx, nodeID)
	if err != nil {
		return err
	}
	if !LndNodeUsable(n) {
		return lightningConflict("node_id: node %q takes no new payments (%s, reachable %v, synced %v)", n.Id, n.State, n.Reachable, n.SyncedToChain)
	}
	if p.Destination == n.Pubkey {
		return lightningConflict("payment_request: the invoice is node %q's own but not one the cluster issued", n.Id)
	}
	t, err := a.move(tx, &bankdv1.Transfer{
		Id: paymentTransferID(a.index), DebitAccountId: p.AccountId, CreditAccountId: n.AccountId,
		Amount: p.AmountSat + p.FeeReserveSat, Pending: true, ExternalRef: p.Hash,
	})
	if err != nil {
		return err
	}
	p.NodeId, p.Attempt, p.State, p.TransferId = n.Id, 1, bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT, t.Id
	tx.set(inFlightKey(n.Id, p.Id), nil)
	n.InflightPayments++
	return a.saveLndNode(tx, n)
}

func (a *applier) lnPaymentResult(tx *txn, req *bankdv1.LnPaymentResult) (proto.Message, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, err
	}
	if err := checkText("failure_reason", req.GetFailureReason(), MaxLightningErrorLen, !req.GetSucceeded()); err != nil {
		return nil, err
	}
	p := &bankdv1.LnPayment{}
	found, err := getProto(tx, paymentKey(req.Id), p)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "id: no payment %q", req.Id)
	}
	if p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT || p.Attempt != req.Attempt {
		return nil, lightningConflict("id: payment %q is %s at attempt %d, not in flight at attempt %d", p.Id, p.State, p.Attempt, req.Attempt)
	}
	if req.Succeeded {
		if err := checkPreimage(p, req.Preimage); err != nil {
			return nil, err
		}
		if err := checkSat("fee_sat", req.FeeSat, true); err != nil {
			return nil, err
		}
	}
	if _, err := a.bookPaymentOutcome(tx, p, paymentOutcome{succeeded: req.Succeeded, preimage: req.Preimage, feeSat: req.FeeSat, failureReason: req.FailureReason}); err != nil {
		return nil, err
	}
	return p, a.savePayment(tx, p)
}

// checkPreimage checks that preimage is the preimage of payment p's hash.
func checkPreimage(p *bankdv1.LnPayment, preimage string) *Error {
	if err := CheckPaymentHash("preimage", preimage); err != nil {
		return err
	}
	raw, _ := hex.DecodeString(preimage)
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != p.Hash {
		return invalid("preimage: does not hash to the payment hash %s", p.Hash)
	}
	return nil
}

// paymentOutcome is the final outcome of a payment in flight: its node's word (LN_PAYMENT_RESULT)
// or an admin's from evidence once the node is LOST (RESOLVE_LOST_PAYMENT).
type paymentOutcome struct {
	succeeded     bool
	preimage      string
	feeSat        int64
	failureReason string
	// keepHash leaves a failed payment's hash spoken for: a hash an admin failed by hand may
	// have been paid by the lost node all the same, so the pool must never pay it again.
	keepHash bool
}

// bookPaymentOutcome books the outcome of a payment in flight, the one way for both kinds of
// outcome: success posts amount + fee (at most the reserve) and releases the rest of the hold,
// failure voids it; the payment leaves its node's in-flight list, and a LOST node left with
// nothing unresolved retires. It saves the node and returns it; the caller saves p.
func (a *applier) bookPaymentOutcome(tx *txn, p *bankdv1.LnPayment, o paymentOutcome) (*bankdv1.LndNode, error) {
	if o.succeeded {
		// lnd keeps to the fee limit; should a node report more, the reserve is all the
		// account pays and the excess shows in reconciliation.
		charged := min(o.feeSat, p.FeeReserveSat)
		if err := a.resolveHold(tx, p, &bankdv1.Transfer{Id: paymentResolutionID(p.TransferId, true), PendingId: p.TransferId, PostPending: true, Amount: p.AmountSat + charged}); err != nil {
			return nil, err
		}
		p.State, p.FeeSat, p.Preimage = bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED, o.feeSat, o.preimage
	} else {
		if err := a.resolveHold(tx, p, &bankdv1.Transfer{Id: paymentResolutionID(p.TransferId, false), PendingId: p.TransferId, VoidPending: true}); err != nil {
			return nil, err
		}
		p.State, p.FailureReason = bankdv1.PaymentState_PAYMENT_STATE_FAILED, o.failureReason
		if !o.keepHash {
			tx.delete(paymentHashKey(p.Hash)) // the hash may be paid again
		}
	}
	p.ResolvedUnixMs = a.now
	tx.delete(inFlightKey(p.NodeId, p.Id))
	n, err := loadLndNode(tx, p.NodeId)
	if err != nil {
		return nil, err
	}
	if n.InflightPayments > 0 {
		n.InflightPayments--
	}
	retireIfResolved(n)
	return n, a.saveLndNode(tx, n)
}

// resolveHold posts or voids a payment's hold once lnd reported the outcome. The outcome is
// certain, so it is recorded even if the ledger refuses the resolution (the hold resolved by
// someone else, the id taken): refusing it would leave the payment in flight, its tracker
// proposing it again for ever and its node never retirable. The hold then stays as it is and a
// problem says why.
func (a *applier) resolveHold(tx *txn, p *bankdv1.LnPayment, t *bankdv1.Transfer) error {
	_, err := a.move(tx, t)
	refusal, refused := asRefusal(err)
	if !refused {
		return err
	}
	verb := "voided"
	if t.PostPending {
		verb = "posted"
	}
	a.problem("payment "+p.Id, "hold %s not %s: %s", p.TransferId, verb, refusal.Message)
	return nil
}
