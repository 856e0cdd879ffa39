package lnd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"

	"github.com/bankd/bankd/lnpool/bolt11"
)

// maxMsat is 21 million bitcoin in millisatoshis: no amount lnd reports can be larger.
const maxMsat = 21_000_000 * 100_000_000 * 1000

// knownNetworks are the values of GetInfo's chains[].network lnd v0.20 can report.
var knownNetworks = map[string]bool{
	"mainnet": true, "testnet": true, "testnet4": true, "regtest": true, "signet": true,
	"simnet": true,
}

func convertInfo(r *lnrpc.GetInfoResponse) (Info, error) {
	if r == nil {
		return Info{}, invalid("GetInfoResponse", "missing")
	}
	if err := checkPubkey("identity_pubkey", r.IdentityPubkey); err != nil {
		return Info{}, err
	}
	if len(r.Chains) != 1 || r.Chains[0] == nil {
		return Info{}, invalid("chains", "%d entries, want 1", len(r.Chains))
	}
	network := r.Chains[0].Network
	if !knownNetworks[network] {
		return Info{}, invalid("chains[0].network", "unknown network %q", network)
	}
	return Info{
		Pubkey:        r.IdentityPubkey,
		Alias:         r.Alias,
		Version:       r.Version,
		Network:       network,
		SyncedToChain: r.SyncedToChain,
		BlockHeight:   r.BlockHeight,
	}, nil
}

var invoiceStates = map[lnrpc.Invoice_InvoiceState]InvoiceState{
	lnrpc.Invoice_OPEN:     InvoiceOpen,
	lnrpc.Invoice_SETTLED:  InvoiceSettled,
	lnrpc.Invoice_CANCELED: InvoiceCanceled,
	lnrpc.Invoice_ACCEPTED: InvoiceAccepted,
}

// convertInvoice checks an invoice lnd reports and converts it. net is the network its
// payment request must be for; nil takes the network the payment request names.
func convertInvoice(r *lnrpc.Invoice, net *chaincfg.Params) (Invoice, error) {
	if r == nil {
		return Invoice{}, invalid("Invoice", "missing")
	}
	if len(r.RHash) != 32 {
		return Invoice{}, invalid("r_hash", "%d bytes, want 32", len(r.RHash))
	}
	// lnd knows the preimage of every invoice except hold invoices.
	switch len(r.RPreimage) {
	case 0:
	case 32:
		if sum := sha256.Sum256(r.RPreimage); !bytes.Equal(sum[:], r.RHash) {
			return Invoice{}, invalid("r_preimage", "does not hash to r_hash")
		}
	default:
		return Invoice{}, invalid("r_preimage", "%d bytes, want 32", len(r.RPreimage))
	}
	if err := checkMsat("value_msat", r.ValueMsat); err != nil {
		return Invoice{}, err
	}
	if r.Value != r.ValueMsat/1000 {
		return Invoice{}, invalid("value", "%d sat does not match value_msat %d", r.Value, r.ValueMsat)
	}
	if err := checkMsat("amt_paid_msat", r.AmtPaidMsat); err != nil {
		return Invoice{}, err
	}
	state, ok := invoiceStates[r.State]
	if !ok {
		return Invoice{}, invalid("state", "unknown value %d", int32(r.State))
	}
	if r.AddIndex == 0 {
		return Invoice{}, invalid("add_index", "0")
	}
	if r.CreationDate <= 0 {
		return Invoice{}, invalid("creation_date", "%d", r.CreationDate)
	}
	if r.Expiry < 0 {
		return Invoice{}, invalid("expiry", "%d", r.Expiry)
	}
	if state == InvoiceSettled {
		switch {
		case r.SettleIndex == 0:
			return Invoice{}, invalid("settle_index", "0 on a settled invoice")
		case r.AmtPaidMsat <= 0:
			return Invoice{}, invalid("amt_paid_msat", "%d on a settled invoice", r.AmtPaidMsat)
		case r.AmtPaidMsat < r.ValueMsat:
			// lnd never settles an invoice for less than it asks.
			return Invoice{}, invalid("amt_paid_msat", "%d on a settled invoice of %d msat",
				r.AmtPaidMsat, r.ValueMsat)
		case r.SettleDate <= 0:
			return Invoice{}, invalid("settle_date", "%d on a settled invoice", r.SettleDate)
		}
	} else if r.SettleIndex != 0 {
		return Invoice{}, invalid("settle_index", "%d on a %s invoice", r.SettleIndex, state)
	}

	hash := hex.EncodeToString(r.RHash)
	if r.PaymentRequest != "" {
		if _, err := checkPaymentRequest(r.PaymentRequest, net, hash, r.ValueMsat); err != nil {
			return Invoice{}, err
		}
	}
	return Invoice{
		Hash:           hash,
		PaymentRequest: r.PaymentRequest,
		Memo:           r.Memo,
		ValueMsat:      r.ValueMsat,
		AmtPaidMsat:    r.AmtPaidMsat,
		State:          state,
		AddIndex:       r.AddIndex,
		SettleIndex:    r.SettleIndex,
		CreationUnix:   r.CreationDate,
		SettleUnix:     r.SettleDate,
		ExpirySeconds:  r.Expiry,
	}, nil
}

// convertAddInvoice checks lnd's answer to AddInvoice against what was asked and builds
// the new invoice from both.
func convertAddInvoice(req AddInvoiceRequest, r *lnrpc.AddInvoiceResponse, net *chaincfg.Params) (Invoice, error) {
	if r == nil {
		return Invoice{}, invalid("AddInvoiceResponse", "missing")
	}
	if len(r.RHash) != 32 {
		return Invoice{}, invalid("r_hash", "%d bytes, want 32", len(r.RHash))
	}
	if r.AddIndex == 0 {
		return Invoice{}, invalid("add_index", "0")
	}
	if r.PaymentRequest == "" {
		return Invoice{}, invalid("payment_request", "missing")
	}
	hash := hex.EncodeToString(r.RHash)
	valueMsat := req.ValueSat * 1000
	decoded, err := checkPaymentRequest(r.PaymentRequest, net, hash, valueMsat)
	if err != nil {
		return Invoice{}, err
	}
	if decoded.Description != req.Memo {
		return Invoice{}, invalid("payment_request", "description %q, asked for %q",
			decoded.Description, req.Memo)
	}
	expiry := int64(decoded.Expiry.Seconds())
	if expiry != req.ExpirySeconds {
		return Invoice{}, invalid("payment_request", "expiry %d s, asked for %d s", expiry, req.ExpirySeconds)
	}
	return Invoice{
		Hash:           hash,
		PaymentRequest: r.PaymentRequest,
		Memo:           req.Memo,
		ValueMsat:      valueMsat,
		State:          InvoiceOpen,
		AddIndex:       r.AddIndex,
		CreationUnix:   decoded.CreatedAt.Unix(),
		ExpirySeconds:  expiry,
	}, nil
}

// checkPaymentRequest decodes a BOLT 11 invoice lnd made and checks it carries hash and
// valueMsat. A nil net takes the network the invoice names.
func checkPaymentRequest(pr string, net *chaincfg.Params, hash string, valueMsat int64) (bolt11.Invoice, error) {
	if net == nil {
		var err error
		if net, err = bolt11.Network(pr); err != nil {
			return bolt11.Invoice{}, invalid("payment_request", "%v", err)
		}
	}
	decoded, err := bolt11.Decode(pr, net)
	if err != nil {
		return bolt11.Invoice{}, invalid("payment_request", "%v", err)
	}
	if decoded.Hash != hash {
		return bolt11.Invoice{}, invalid("payment_request", "payment hash %s, want %s", decoded.Hash, hash)
	}
	if decoded.AmountMsat != valueMsat {
		return bolt11.Invoice{}, invalid("payment_request", "amount %d msat, want %d msat",
			decoded.AmountMsat, valueMsat)
	}
	return decoded, nil
}

var paymentStatuses = map[lnrpc.Payment_PaymentStatus]PaymentStatus{
	lnrpc.Payment_INITIATED: PaymentInitiated,
	lnrpc.Payment_IN_FLIGHT: PaymentInFlight,
	lnrpc.Payment_SUCCEEDED: PaymentSucceeded,
	lnrpc.Payment_FAILED:    PaymentFailed,
}

var zeroPreimage = hex.EncodeToString(make([]byte, 32))

// convertPayment checks a payment lnd reports and converts it.
func convertPayment(r *lnrpc.Payment) (Payment, error) {
	if r == nil {
		return Payment{}, invalid("Payment", "missing")
	}
	hashBytes, err := decodeHex32("payment_hash", r.PaymentHash)
	if err != nil {
		return Payment{}, err
	}
	status, ok := paymentStatuses[r.Status]
	if !ok {
		return Payment{}, invalid("status", "unknown value %d", int32(r.Status))
	}
	if err := checkMsat("value_msat", r.ValueMsat); err != nil {
		return Payment{}, err
	}
	if err := checkMsat("fee_msat", r.FeeMsat); err != nil {
		return Payment{}, err
	}
	if r.CreationTimeNs < 0 {
		return Payment{}, invalid("creation_time_ns", "%d", r.CreationTimeNs)
	}
	if _, ok := lnrpc.PaymentFailureReason_name[int32(r.FailureReason)]; !ok {
		return Payment{}, invalid("failure_reason", "unknown value %d", int32(r.FailureReason))
	}

	// lnd reports 32 zero bytes while it has no preimage.
	var preimage string
	if r.PaymentPreimage != "" && r.PaymentPreimage != zeroPreimage {
		pre, err := decodeHex32("payment_preimage", r.PaymentPreimage)
		if err != nil {
			return Payment{}, err
		}
		if sum := sha256.Sum256(pre); !bytes.Equal(sum[:], hashBytes) {
			return Payment{}, invalid("payment_preimage", "does not hash to payment_hash")
		}
		preimage = hex.EncodeToString(pre)
	}

	p := Payment{
		Hash:             hex.EncodeToString(hashBytes),
		Status:           status,
		ValueMsat:        r.ValueMsat,
		Preimage:         preimage,
		CreationUnixNano: r.CreationTimeNs,
	}
	switch status {
	case PaymentSucceeded:
		if preimage == "" {
			return Payment{}, invalid("payment_preimage", "missing on a succeeded payment")
		}
		p.FeeMsat = r.FeeMsat
	case PaymentFailed:
		if r.FailureReason == lnrpc.PaymentFailureReason_FAILURE_REASON_NONE {
			return Payment{}, invalid("failure_reason", "none on a failed payment")
		}
		if preimage != "" {
			// A payment with a settled HTLC can no longer fail.
			return Payment{}, invalid("payment_preimage", "present on a failed payment")
		}
		p.FailureReason = r.FailureReason.String()
	}
	return p, nil
}

func convertChannelBalance(r *lnrpc.ChannelBalanceResponse) (ChannelBalance, error) {
	if r == nil {
		return ChannelBalance{}, invalid("ChannelBalanceResponse", "missing")
	}
	local, err := amountMsat("local_balance", r.LocalBalance)
	if err != nil {
		return ChannelBalance{}, err
	}
	unsettled, err := amountMsat("unsettled_local_balance", r.UnsettledLocalBalance)
	if err != nil {
		return ChannelBalance{}, err
	}
	pendingOpen, err := amountMsat("pending_open_local_balance", r.PendingOpenLocalBalance)
	if err != nil {
		return ChannelBalance{}, err
	}
	return ChannelBalance{
		LocalMsat:            local,
		UnsettledLocalMsat:   unsettled,
		PendingOpenLocalMsat: pendingOpen,
	}, nil
}

// amountMsat checks one lnrpc.Amount: present, within the bitcoin supply, sat and msat
// agreeing.
func amountMsat(field string, a *lnrpc.Amount) (int64, error) {
	if a == nil {
		return 0, invalid(field, "missing")
	}
	if a.Msat > maxMsat {
		return 0, invalid(field+".msat", "%d, more than 21 million bitcoin", a.Msat)
	}
	if a.Sat != a.Msat/1000 {
		return 0, invalid(field+".sat", "%d does not match msat %d", a.Sat, a.Msat)
	}
	return int64(a.Msat), nil
}

// routeFeeSat checks an EstimateRouteFee answer and rounds its fee up to whole satoshis.
func routeFeeSat(r *routerrpc.RouteFeeResponse) (int64, error) {
	if r == nil {
		return 0, invalid("RouteFeeResponse", "missing")
	}
	if _, ok := lnrpc.PaymentFailureReason_name[int32(r.FailureReason)]; !ok {
		return 0, invalid("failure_reason", "unknown value %d", int32(r.FailureReason))
	}
	if err := checkMsat("routing_fee_msat", r.RoutingFeeMsat); err != nil {
		return 0, err
	}
	return (r.RoutingFeeMsat + 999) / 1000, nil
}

func checkMsat(field string, v int64) error {
	if v < 0 {
		return invalid(field, "negative (%d)", v)
	}
	if v > maxMsat {
		return invalid(field, "%d, more than 21 million bitcoin", v)
	}
	return nil
}

func decodeHex32(field, s string) ([]byte, error) {
	if len(s) != 64 {
		return nil, invalid(field, "%d hex characters, want 64", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, invalid(field, "not hex")
	}
	return b, nil
}

// checkPubkey checks s is a compressed secp256k1 public key in hex.
func checkPubkey(field, s string) error {
	if len(s) != 66 {
		return invalid(field, "%d hex characters, want 66", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return invalid(field, "not hex")
	}
	if b[0] != 0x02 && b[0] != 0x03 {
		return invalid(field, "not a compressed public key")
	}
	if _, err := btcec.ParsePubKey(b); err != nil {
		return invalid(field, "not a point on secp256k1")
	}
	return nil
}

// satToMsat converts a request amount, refusing what would overflow.
func satToMsat(sat int64) (int64, bool) {
	if sat < 0 || sat > math.MaxInt64/1000 {
		return 0, false
	}
	return sat * 1000, true
}
