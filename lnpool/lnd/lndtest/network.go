// Package lndtest is an in-memory stand-in for a few lnd nodes and the Lightning network
// between them, for fast tests of code written against lnd.Client.
//
// A Network holds Nodes (each an lnd.Client) and an "outside" world: invoices one node
// makes can be paid by another node or from outside (PayFromOutside), and nodes can pay
// each other's invoices or outside ones (OutsideInvoice). Invoices are real regtest BOLT 11
// strings signed with each node's own key. Knobs on a Node make it unreachable, hold
// payments in flight, fail them, or charge fees.
//
// The fake mirrors the lnd behaviour the pool relies on: a node pays a hash once
// (ErrAlreadyPaid once it succeeded, ErrInFlight while in flight, a failed payment may be
// sent again); add and settle indexes count up from 1 per node; SubscribeInvoices replays
// from the indexes given and streams additions and settlements, not cancellations; open
// invoices are canceled once expired; TrackPayment of an unknown hash is ErrNotFound.
package lndtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"

	"github.com/bankd/bankd/lnpool/bolt11"
	"github.com/bankd/bankd/lnpool/lnd"
)

// Failure reasons, as lnd names them (lnrpc.PaymentFailureReason).
const (
	FailTimeout             = "FAILURE_REASON_TIMEOUT"
	FailNoRoute             = "FAILURE_REASON_NO_ROUTE"
	FailError               = "FAILURE_REASON_ERROR"
	FailIncorrectDetails    = "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"
	FailInsufficientBalance = "FAILURE_REASON_INSUFFICIENT_BALANCE"
	FailCanceled            = "FAILURE_REASON_CANCELED"
)

var failureReasons = map[string]bool{
	FailTimeout: true, FailNoRoute: true, FailError: true, FailIncorrectDetails: true,
	FailInsufficientBalance: true, FailCanceled: true,
}

// DefaultBalanceSat is the Lightning balance a new node starts with.
const DefaultBalanceSat = 10_000_000

// Network is a set of fake nodes and the world outside them. Safe for concurrent use.
type Network struct {
	params *chaincfg.Params

	mu              sync.Mutex // guards everything below and all Node state
	now             func() time.Time
	nodes           map[string]*Node // by pubkey
	names           map[string]bool
	outsideKey      *btcec.PrivateKey
	outsidePubkey   string
	outsideInvoices map[string]*outsideInvoice // by hash
	// outsideTakesRepeats: an outside invoice takes every payment of it, not only the first.
	outsideTakesRepeats bool
	changed             chan struct{} // closed and replaced on every change
}

type outsideInvoice struct {
	amountMsat int64
	preimage   string
	paidMsat   int64
	payments   int // how many payments it took
}

// NewNetwork makes an empty regtest network.
func NewNetwork() *Network {
	key := newKey()
	return &Network{
		params:          &chaincfg.RegressionNetParams,
		now:             time.Now,
		nodes:           make(map[string]*Node),
		names:           make(map[string]bool),
		outsideKey:      key,
		outsidePubkey:   hex.EncodeToString(key.PubKey().SerializeCompressed()),
		outsideInvoices: make(map[string]*outsideInvoice),
		changed:         make(chan struct{}),
	}
}

// Params are the chain parameters of the network's invoices (regtest).
func (n *Network) Params() *chaincfg.Params { return n.params }

// SetClock replaces the clock used for invoice timestamps and expiry.
func (n *Network) SetClock(now func() time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.now = now
	n.notifyLocked()
}

// NewNode adds a node with a fresh key and DefaultBalanceSat. It panics if name is taken.
func (n *Network) NewNode(name string) *Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names[name] {
		panic(fmt.Sprintf("lndtest: node %q exists", name))
	}
	key := newKey()
	node := &Node{
		net:         n,
		name:        name,
		key:         key,
		pubkey:      hex.EncodeToString(key.PubKey().SerializeCompressed()),
		invoices:    make(map[string]*invoice),
		payments:    make(map[string]*payment),
		balanceMsat: DefaultBalanceSat * 1000,
	}
	n.names[name] = true
	n.nodes[node.pubkey] = node
	return node
}

// OutsidePubkey is the node id of the world outside the fake nodes.
func (n *Network) OutsidePubkey() string { return n.outsidePubkey }

// OutsideInvoice makes an invoice for sat satoshis payable to the outside world, for fake
// nodes to pay. Each can be paid once.
func (n *Network) OutsideInvoice(sat int64) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	preimage, hash := newPreimage()
	pr, err := encodeInvoice(n.params, n.outsideKey, hash, sat*1000, "outside", time.Hour, n.now())
	if err != nil {
		panic(fmt.Sprintf("lndtest: outside invoice: %v", err))
	}
	n.outsideInvoices[hex.EncodeToString(hash[:])] = &outsideInvoice{
		amountMsat: sat * 1000,
		preimage:   hex.EncodeToString(preimage[:]),
	}
	return pr
}

// OutsidePreimage is the preimage of the outside invoice of hash, as its payee would tell it,
// or "" for a hash the outside world did not issue.
func (n *Network) OutsidePreimage(hash string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if oi := n.outsideInvoices[hash]; oi != nil {
		return oi.preimage
	}
	return ""
}

// OutsidePaidMsat is what the outside world received for the outside invoice of hash.
func (n *Network) OutsidePaidMsat(hash string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if oi := n.outsideInvoices[hash]; oi != nil {
		return oi.paidMsat
	}
	return 0
}

// SetOutsideTakesRepeats makes the outside world take every payment of its invoices, as a
// receiver that keeps any HTLC set it is sent would, instead of refusing all but the first as
// lnd does: a hash paid twice then costs the payer twice, so a test can see it happen.
func (n *Network) SetOutsideTakesRepeats(take bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.outsideTakesRepeats = take
}

// OutsidePayments is how many payments the outside invoice of hash took, and their total.
func (n *Network) OutsidePayments(hash string) (count int, paidMsat int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if oi := n.outsideInvoices[hash]; oi != nil {
		return oi.payments, oi.paidMsat
	}
	return 0, 0
}

// PayFromOutside pays a fake node's invoice in full from outside the network: the invoice
// settles as if a payment arrived over a channel.
func (n *Network) PayFromOutside(paymentRequest string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	dec, err := bolt11.Decode(paymentRequest, n.params)
	if err != nil {
		return fmt.Errorf("lndtest: pay from outside: %w", err)
	}
	if dec.AmountMsat == 0 {
		return fmt.Errorf("lndtest: pay from outside: invoice %s names no amount", dec.Hash)
	}
	node := n.nodes[dec.Destination]
	if node == nil {
		return fmt.Errorf("lndtest: pay from outside: no fake node %s", dec.Destination)
	}
	if node.unreachable {
		return fmt.Errorf("lndtest: pay from outside: node %s: %w", node.name, lnd.ErrUnavailable)
	}
	inv := node.invoices[dec.Hash]
	if inv == nil {
		return fmt.Errorf("lndtest: pay from outside: node %s: invoice %s: %w", node.name, dec.Hash, lnd.ErrNotFound)
	}
	node.expireLocked(inv)
	if inv.State != lnd.InvoiceOpen {
		return fmt.Errorf("lndtest: pay from outside: node %s: invoice %s is %s", node.name, dec.Hash, inv.State)
	}
	node.settleLocked(inv, dec.AmountMsat)
	n.notifyLocked()
	return nil
}

// deliverLocked carries a payment of hash to dest and returns the preimage, or the reason
// the payer's node would report for its failure.
func (n *Network) deliverLocked(payer *Node, dest, hash string, amountMsat int64) (preimage, reason string) {
	if dest == n.outsidePubkey {
		oi := n.outsideInvoices[hash]
		if oi == nil || (oi.payments > 0 && !n.outsideTakesRepeats) || amountMsat < oi.amountMsat {
			return "", FailIncorrectDetails
		}
		oi.paidMsat += amountMsat
		oi.payments++
		return oi.preimage, ""
	}
	node := n.nodes[dest]
	if node == nil || node == payer || node.unreachable {
		return "", FailNoRoute
	}
	inv := node.invoices[hash]
	if inv == nil {
		return "", FailIncorrectDetails
	}
	node.expireLocked(inv)
	if inv.State != lnd.InvoiceOpen || amountMsat < inv.ValueMsat {
		return "", FailIncorrectDetails
	}
	node.settleLocked(inv, amountMsat)
	return inv.preimage, ""
}

// notifyLocked wakes every stream waiting for a change.
func (n *Network) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func newKey() *btcec.PrivateKey {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		panic(fmt.Sprintf("lndtest: new key: %v", err))
	}
	return key
}

func newPreimage() (preimage, hash [32]byte) {
	if _, err := rand.Read(preimage[:]); err != nil {
		panic(fmt.Sprintf("lndtest: random preimage: %v", err))
	}
	return preimage, sha256.Sum256(preimage[:])
}

// encodeInvoice makes a BOLT 11 invoice signed by key, with the fields lnd puts in its own.
func encodeInvoice(params *chaincfg.Params, key *btcec.PrivateKey, hash [32]byte, msat int64, memo string, expiry time.Duration, created time.Time) (string, error) {
	var addr [32]byte
	if _, err := rand.Read(addr[:]); err != nil {
		return "", fmt.Errorf("payment address: %w", err)
	}
	features := lnwire.NewFeatureVector(
		lnwire.NewRawFeatureVector(lnwire.TLVOnionPayloadRequired, lnwire.PaymentAddrRequired),
		lnwire.Features,
	)
	opts := []func(*zpay32.Invoice){
		zpay32.Description(memo),
		zpay32.Expiry(expiry),
		zpay32.CLTVExpiry(80),
		zpay32.PaymentAddr(addr),
		zpay32.Features(features),
	}
	if msat > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(msat)))
	}
	inv, err := zpay32.NewInvoice(params, hash, created.Truncate(time.Second), opts...)
	if err != nil {
		return "", fmt.Errorf("new invoice: %w", err)
	}
	pr, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		digest := sha256.Sum256(msg)
		return ecdsa.SignCompact(key, digest[:], true), nil
	}})
	if err != nil {
		return "", fmt.Errorf("encode invoice: %w", err)
	}
	return pr, nil
}
