package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Adjustments. Money sometimes moves outside bankd: a channel opened or closed by hand, routing
// fees a node earned, the on-chain fees of a close, the fractions of a satoshi customers were
// charged above what lnd paid. Reconciliation then shows a difference between a pool node's
// ln:<node> (or a wallet's wallet:<id>) and what lnd (or the chain) holds. BOOK_ADJUSTMENT lets
// an operator book it, with a reason and a reference to check outside bankd, so that the
// difference returns to zero and the books say why:
//
//	amount_sat > 0   <counter> -> <account>   the account holds more than the books said
//	amount_sat < 0   <account> -> <counter>   it holds less
//
// The counter-account is the kind's account in the books of the driver that owns the adjusted
// account (ln-adjust:<kind> for ln:<node>, onchain-adjust:<kind> for wallet:<id>), created on
// first use. The command acts as that driver (the ownership rules, owner.go, stay whole: a
// driver moves money through its own accounts only), and records the API token that asked
// (Command.principal) as the decider.
//
//	A <index>          -> Adjustment, by the Raft index that booked it
//	D <adjustment id>  -> SHA-256 of the request, then the index (8 bytes): the idempotency key
//	m adjustments      -> the index of the first adjustment (the gate of the new id forms)
//
// BOOK_ADJUSTMENT is newer than BaselineCommandTypes, so the leader proposes it only once every
// server applies it (node.checkUpgraded). The id forms it adds (accounts ln-adjust:<kind> and
// onchain-adjust:<kind>, transfers ln-adjust:<index> and onchain-adjust:<index>) are refused to
// clients at the API edge at once, but inside the state machine only from the first adjustment
// on: an older binary accepts a client's account or transfer under such an id, and a replica
// must apply every entry of a mixed cluster as that binary does (a log without adjustments
// applies byte for byte as before).

const (
	tagAdjustment   = 'A'
	tagAdjustmentID = 'D'

	// LightningAdjustmentPrefix starts the Lightning driver's counter-account of each kind.
	LightningAdjustmentPrefix = "ln-adjust:"
	// WalletAdjustmentPrefix starts the chain driver's counter-account of each kind.
	WalletAdjustmentPrefix = "onchain-adjust:"
	// MaxAdjustmentReasonLen bounds an adjustment's reason (it also travels as a metadata value
	// of its transfer).
	MaxAdjustmentReasonLen = MaxMetadataValueLen
	// MaxAdjustmentReferenceLen bounds an adjustment's external reference (its transfer's
	// external_ref).
	MaxAdjustmentReferenceLen = MaxExternalRefLen
	// MaxAdjustmentSat bounds the size of one adjustment: the 21 million bitcoin there are.
	MaxAdjustmentSat = 21_000_000 * 100_000_000
)

var keyAdjustments = []byte("madjustments")

func adjustmentKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagAdjustment}, index)
}
func adjustmentIDKey(id string) []byte { return tagged(tagAdjustmentID, id) }

// adjustmentKinds names each kind's counter-account and the account kind it has: capital moved
// in or out by hand is EQUITY, fees earned INCOME, fees paid EXPENSE.
var adjustmentKinds = map[bankdv1.AdjustmentKind]struct {
	slug string
	kind bankdv1.AccountKind
}{
	bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CHANNEL_OPENED_BY_HAND: {"channel-opened", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY},
	bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CHANNEL_CLOSED_BY_HAND: {"channel-closed", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY},
	bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES:           {"routing-fees", bankdv1.AccountKind_ACCOUNT_KIND_INCOME},
	bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CLOSE_FEES:             {"close-fees", bankdv1.AccountKind_ACCOUNT_KIND_EXPENSE},
	bankdv1.AdjustmentKind_ADJUSTMENT_KIND_FEE_ROUNDING:           {"fee-rounding", bankdv1.AccountKind_ACCOUNT_KIND_INCOME},
	bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER:                  {"other", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY},
}

// AdjustmentCounterAccount is the counter-account of an adjustment of kind to account, and
// false when account is not one adjustments book (a pool node's or a wallet's) or kind is not
// a kind.
func AdjustmentCounterAccount(account string, kind bankdv1.AdjustmentKind) (string, bool) {
	k, ok := adjustmentKinds[kind]
	if !ok {
		return "", false
	}
	switch {
	case systemIDForm{prefix: LightningNodeAccountPrefix, rest: isLndNodeID}.match(account):
		return LightningAdjustmentPrefix + k.slug, true
	case systemIDForm{prefix: WalletAccountPrefix, rest: validID}.match(account):
		return WalletAdjustmentPrefix + k.slug, true
	}
	return "", false
}

// isAdjustmentKindSlug reports whether slug names an adjustment kind's counter-account, after
// its prefix.
func isAdjustmentKindSlug(slug string) bool {
	for _, k := range adjustmentKinds {
		if k.slug == slug {
			return true
		}
	}
	return false
}

// adjustmentTransferID is the id of the transfer an adjustment booked at index posts: the
// counter-account's prefix (whose driver it is), then the index.
func adjustmentTransferID(prefix string, index uint64) string {
	return prefix + strconv.FormatUint(index, 10)
}

// ValidateBookAdjustment checks a BookAdjustment request on its own: the API runs it before
// proposing, the state machine again.
func ValidateBookAdjustment(req *bankdv1.BookAdjustmentRequest) *Error {
	if err := checkID("id", req.GetId()); err != nil {
		return err
	}
	if err := checkID("account_id", req.GetAccountId()); err != nil {
		return err
	}
	if _, ok := adjustmentKinds[req.GetKind()]; !ok {
		return invalid("kind: must be one of channel_opened_by_hand, channel_closed_by_hand, routing_fees, close_fees, fee_rounding, other")
	}
	if _, ok := AdjustmentCounterAccount(req.GetAccountId(), req.GetKind()); !ok {
		return invalid("account_id: %q is not a pool node's %s<node> or a wallet's %s<wallet> account; adjustments book only those",
			truncate(req.GetAccountId()), LightningNodeAccountPrefix, WalletAccountPrefix)
	}
	switch amount := req.GetAmountSat(); {
	case amount == 0:
		return invalid("amount_sat: must not be 0 (> 0 the account holds more than the books, < 0 less)")
	case amount > MaxAdjustmentSat || amount < -MaxAdjustmentSat:
		return invalid("amount_sat: at most %d satoshis either way, got %d", int64(MaxAdjustmentSat), amount)
	}
	if err := checkUTF8Text("reason", req.GetReason(), MaxAdjustmentReasonLen); err != nil {
		return err
	}
	return checkUTF8Text("external_reference", req.GetExternalReference(), MaxAdjustmentReferenceLen)
}

// checkUTF8Text checks a required text of at most max bytes of UTF-8 without control characters.
func checkUTF8Text(field, s string, max int) *Error {
	switch {
	case s == "":
		return invalid("%s: required", field)
	case len(s) > max:
		return invalid("%s: at most %d bytes, got %d", field, max, len(s))
	case !utf8.ValidString(s):
		return invalid("%s: must be UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return invalid("%s: no control characters", field)
		}
	}
	return nil
}

// bookAdjustment applies a BOOK_ADJUSTMENT command (see the top of this file).
func (a *applier) bookAdjustment(tx *txn, req *bankdv1.BookAdjustmentRequest) (proto.Message, error) {
	if err := ValidateBookAdjustment(req); err != nil {
		return nil, err
	}
	if a.principal == "" {
		return nil, invalid("decided_by: an adjustment is booked by an authenticated API token; this command carries none")
	}
	// The request's own fields only: unknown ones a newer or a crafted body carries do not make
	// a retry look like another body.
	b, err := marshal.Marshal(&bankdv1.BookAdjustmentRequest{Id: req.Id, AccountId: req.AccountId, AmountSat: req.AmountSat,
		Kind: req.Kind, Reason: req.Reason, ExternalReference: req.ExternalReference})
	if err != nil {
		return nil, fmt.Errorf("marshal adjustment %q: %w", req.Id, err)
	}
	sum := sha256.Sum256(b)
	if v, found, err := tx.get(adjustmentIDKey(req.Id)); err != nil {
		return nil, err
	} else if found {
		if len(v) != 40 {
			return nil, fmt.Errorf("corrupt adjustment id record %q", req.Id)
		}
		if [32]byte(v[:32]) != sum {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "id: %q was already used for an adjustment with a different body", req.Id)
		}
		adj := &bankdv1.Adjustment{}
		if found, err := getProto(tx, adjustmentKey(binary.BigEndian.Uint64(v[32:])), adj); err != nil {
			return nil, err
		} else if !found {
			return nil, fmt.Errorf("adjustment id %q names a missing record", req.Id)
		}
		return &bankdv1.BookAdjustmentResponse{Adjustment: adj, Replayed: true}, nil
	}

	target, found := tx.account(req.AccountId)
	if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "account_id: no account %q", req.AccountId)
	}
	// The form says whose books the account belongs to; the owner recorded with it must agree
	// (a client may have taken such an id before owners were recorded).
	want, prefix := bankdv1.Owner_OWNER_LIGHTNING, LightningAdjustmentPrefix
	if strings.HasPrefix(req.AccountId, WalletAccountPrefix) {
		want, prefix = bankdv1.Owner_OWNER_CHAIN, WalletAdjustmentPrefix
	}
	if o := accountOwner(target); o != want {
		return nil, invalid("account_id: %q is an account of %s, not of the %s driver; adjustments book only the drivers' node and wallet accounts",
			req.AccountId, ownerPhrase(o), OwnerName(want))
	}
	// From here the command acts as the driver whose books it corrects.
	a.owner = want
	counterID, _ := AdjustmentCounterAccount(req.AccountId, req.Kind)
	kind := adjustmentKinds[req.Kind]
	if err := a.ensureAccount(tx, &bankdv1.Account{Id: counterID, Currency: target.Currency, Kind: kind.kind,
		Metadata: map[string]string{"purpose": "adjustments of kind " + kind.slug + " (money that moved outside bankd)"}}); err != nil {
		return nil, err
	}
	if a.index == 0 {
		return nil, fmt.Errorf("adjustment %q applied without a Raft index", req.Id)
	}
	t := &bankdv1.Transfer{
		Id: adjustmentTransferID(prefix, a.index), DebitAccountId: req.AccountId, CreditAccountId: counterID,
		Amount: req.AmountSat, Currency: target.Currency, ExternalRef: req.ExternalReference,
		Metadata: map[string]string{"adjustment": req.Id, "kind": kind.slug, "reason": req.Reason, "decided_by": truncateTo(a.principal, MaxMetadataValueLen)},
	}
	if req.AmountSat < 0 {
		t.DebitAccountId, t.CreditAccountId, t.Amount = counterID, req.AccountId, -req.AmountSat
	}
	res, err := a.applyTransfer(tx, t)
	if err != nil {
		return nil, err
	}
	if res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		return nil, refuse(res.Code, "%s", res.Message)
	}
	if res.Replayed {
		// The id holds the command's own Raft index: only a client's transfer taken under it
		// before the id form was in force can be there.
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "transfer %q is taken", t.Id)
	}
	adj := &bankdv1.Adjustment{
		Id: req.Id, AccountId: req.AccountId, AmountSat: req.AmountSat, Kind: req.Kind, Reason: req.Reason,
		ExternalReference: req.ExternalReference, DecidedBy: a.principal, DecidedUnixMs: a.now, Index: a.index,
		TransferId: t.Id, CounterAccountId: counterID,
	}
	if err := putProto(tx, adjustmentKey(a.index), adj); err != nil {
		return nil, err
	}
	tx.set(adjustmentIDKey(req.Id), binary.BigEndian.AppendUint64(sum[:], a.index))
	if _, reserved, err := tx.get(keyAdjustments); err != nil {
		return nil, err
	} else if !reserved {
		tx.set(keyAdjustments, encodeUint64(a.index))
	}
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Adjustment{Adjustment: adj}})
	return &bankdv1.BookAdjustmentResponse{Adjustment: adj}, nil
}

// refuseGatedClientID refuses, in a client's command, an account or transfer id of a form the
// adjustments added (gated), once the first adjustment put them in force (see the top of this
// file). It reads the store only for an id of such a form.
func refuseGatedClientID(tx *txn, field, id string, gated []systemIDForm) error {
	o, ok := systemOwner(nil, gated, id)
	if !ok {
		return nil
	}
	_, inForce, err := tx.get(keyAdjustments)
	if err != nil || !inForce {
		return err
	}
	return invalid("%s: %q has the form of the ids the cluster's %s driver uses; choose another id", field, truncate(id), OwnerName(o))
}

func truncateTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Adjustment returns an adjustment by its id, or ErrNotFound.
func (f *FSM) Adjustment(id string) (*bankdv1.Adjustment, error) {
	adj := &bankdv1.Adjustment{}
	err := f.view(func(r pebble.Reader) error {
		v, ok, err := readValue(r, adjustmentIDKey(id))
		if err != nil {
			return err
		}
		if !ok || len(v) != 40 {
			return fmt.Errorf("adjustment %q: %w", id, ErrNotFound)
		}
		if ok, err := readProto(r, adjustmentKey(binary.BigEndian.Uint64(v[32:])), adj); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("adjustment %q: its id names a missing record", id)
		}
		return nil
	})
	return adj, err
}

// ListAdjustments returns adjustments in booking order after pageToken, only those of
// accountID when it is set.
func (f *FSM) ListAdjustments(accountID, pageToken string, pageSize int) ([]*bankdv1.Adjustment, string, error) {
	var keep func(*bankdv1.Adjustment) bool
	if accountID != "" {
		keep = func(adj *bankdv1.Adjustment) bool { return adj.AccountId == accountID }
	}
	return readPage(f, []byte{tagAdjustment}, 8, pageToken, pageSize, func() *bankdv1.Adjustment { return &bankdv1.Adjustment{} }, "adjustment", keep)
}
