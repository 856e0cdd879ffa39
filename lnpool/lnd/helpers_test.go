package lnd

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"
)

// testKey signs the payment requests of these tests.
var testKey, _ = btcec.NewPrivateKey()

// preimageFor makes a fixed preimage from a byte, and its hash.
func preimageFor(b byte) (preimage, hash []byte) {
	preimage = make([]byte, 32)
	for i := range preimage {
		preimage[i] = b
	}
	sum := sha256.Sum256(preimage)
	return preimage, sum[:]
}

// makePaymentRequest encodes a regtest BOLT 11 invoice as lnd would.
func makePaymentRequest(t testing.TB, net *chaincfg.Params, hash []byte, msat int64, memo string, expiry time.Duration, created time.Time) string {
	t.Helper()
	var h [32]byte
	copy(h[:], hash)
	opts := []func(*zpay32.Invoice){zpay32.Description(memo), zpay32.Expiry(expiry)}
	if msat > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(msat)))
	}
	inv, err := zpay32.NewInvoice(net, h, created, opts...)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		digest := sha256.Sum256(msg)
		return ecdsa.SignCompact(testKey, digest[:], true), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// validInvoice is a settled invoice as lnd reports it.
func validInvoice(t testing.TB) *lnrpc.Invoice {
	t.Helper()
	pre, hash := preimageFor(1)
	created := time.Unix(1_700_000_000, 0)
	return &lnrpc.Invoice{
		Memo:           "deposit",
		RPreimage:      pre,
		RHash:          hash,
		Value:          5000,
		ValueMsat:      5_000_000,
		Settled:        true,
		CreationDate:   created.Unix(),
		SettleDate:     created.Unix() + 5,
		PaymentRequest: makePaymentRequest(t, &chaincfg.RegressionNetParams, hash, 5_000_000, "deposit", time.Hour, created),
		Expiry:         3600,
		AddIndex:       7,
		SettleIndex:    3,
		AmtPaid:        5_000_000,
		AmtPaidSat:     5000,
		AmtPaidMsat:    5_000_000,
		State:          lnrpc.Invoice_SETTLED,
	}
}

// validPayment is a succeeded payment as lnd reports it.
func validPayment() *lnrpc.Payment {
	pre, hash := preimageFor(2)
	return &lnrpc.Payment{
		PaymentHash:     hex.EncodeToString(hash),
		Value:           1000,
		ValueSat:        1000,
		ValueMsat:       1_000_000,
		CreationDate:    1_700_000_000,
		CreationTimeNs:  1_700_000_000_000_000_000,
		Fee:             1,
		FeeSat:          1,
		FeeMsat:         1_500,
		PaymentPreimage: hex.EncodeToString(pre),
		Status:          lnrpc.Payment_SUCCEEDED,
		PaymentIndex:    1,
	}
}
