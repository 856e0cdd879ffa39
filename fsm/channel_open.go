package fsm

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Channel funding through PSBTs. A pool node opens a channel funded from the hot wallet; lnd's
// PSBT funding flow and the payout pipeline take turns, every step committed before the next:
//
//	CHANNEL_OPEN_REQUEST  an operator asks (node, peer, amount); the leader stamps lnd's
//	                      pending channel id                                  -> REQUESTED
//	STEP NEGOTIATED       lnd named the 2-of-2 funding output                 -> NEGOTIATED
//	PAYOUT_PLAN           the payout driver plans the funding transaction in queue "channel":
//	                      output 0 the funding output, then change           -> PLANNED
//	STEP VERIFIED         lnd accepted the unsigned transaction (psbt_verify) -> VERIFIED
//	PAYOUT_SIGNED         the hot wallet's signer signs it, as any payout
//	STEP FINALIZING       recorded before the signed transaction goes to lnd (psbt_finalize)
//	STEP PENDING          lnd holds the peer's commitment signature and published it
//	final depth           booked wallet:<hot> -> ln:<node>                   -> OPEN
//
// Nobody but lnd may publish a funding transaction before the peer has signed the commitment
// (the coins would be locked in a 2-of-2 nobody can spend): the payout driver broadcasts a
// channel batch only once its open is PENDING, and never bumps one (a replacement changes the
// txid the channel is bound to).
//
// STEP FAILED gives an open up: the driver proposes it when lnd refuses a step before the
// signed transaction went to lnd; an operator may also propose it in FINALIZING, when lnd
// cannot say what became of the transaction. A planned or signed batch is abandoned with it and
// its coins released; should the transaction appear on chain all the same, followBatch records
// a problem.

// Channel limits.
const (
	// ChannelQueue is the queue of channel funding batches. No configured queue may take the
	// name.
	ChannelQueue = "channel"
	// MinChannelSat is lnd's default minimum channel size (--minchansize).
	MinChannelSat  = 20_000
	MaxPeerHostLen = 255
)

// Channel open tables: K <id> -> ChannelOpen; J <id> -> empty, for the opens the leader's
// driver still has work on (REQUESTED to PENDING), so that its tick reads those only.
const (
	tagChannelOpen   = 'K'
	tagChannelActive = 'J'
)

func channelOpenKey(id string) []byte   { return tagged(tagChannelOpen, id) }
func channelActiveKey(id string) []byte { return tagged(tagChannelActive, id) }

// channelActive reports whether the driver still has work on an open in state s.
func channelActive(s bankdv1.ChannelOpenState) bool {
	return s >= bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_REQUESTED && s <= bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING
}

// channelTransferID names a channel funding's booking into the node's books.
func channelTransferID(batchIndex uint64) string { return batchTransferID(batchIndex, ":channel") }

func channelStateName(s bankdv1.ChannelOpenState) string {
	return strings.TrimPrefix(s.String(), "CHANNEL_OPEN_STATE_")
}

// ChannelPeer is a parsed <pubkey>[@<host>:<port>].
type ChannelPeer struct {
	Pubkey string
	Host   string
}

// ParseChannelPeer checks a peer: a compressed public key in hex, optionally @host:port.
func ParseChannelPeer(field, s string) (ChannelPeer, *Error) {
	key, host, hasHost := strings.Cut(s, "@")
	raw, err := hex.DecodeString(key)
	if err != nil || len(raw) != 33 {
		return ChannelPeer{}, invalid("%s: want a 33-byte compressed public key in hex, optionally @host:port; got %q", field, truncate(s))
	}
	if _, err := btcec.ParsePubKey(raw); err != nil {
		return ChannelPeer{}, invalid("%s: %q is not a public key: %v", field, truncate(key), err)
	}
	if hasHost {
		h, port, err := net.SplitHostPort(host)
		if err != nil || h == "" || len(host) > MaxPeerHostLen {
			return ChannelPeer{}, invalid("%s: want host:port (at most %d characters) after @, got %q", field, MaxPeerHostLen, truncate(host))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return ChannelPeer{}, invalid("%s: port %q is not 1-65535", field, truncate(port))
		}
	}
	return ChannelPeer{Pubkey: strings.ToLower(key), Host: host}, nil
}

// ValidateOpenChannel checks an open request on its own.
func ValidateOpenChannel(req *bankdv1.OpenChannelRequest) *Error {
	if err := checkID("id", req.GetId()); err != nil {
		return err
	}
	if err := CheckLndNodeID("node_id", req.GetNodeId()); err != nil {
		return err
	}
	if _, err := ParseChannelPeer("peer", req.GetPeer()); err != nil {
		return err
	}
	if a := req.GetAmountSat(); a < MinChannelSat || a > MaxLightningAmountSat {
		return invalid("amount_sat: a channel holds %d-%d satoshis, got %d", int64(MinChannelSat), int64(MaxLightningAmountSat), a)
	}
	return nil
}

func loadChannelOpen(tx *txn, id string) (*bankdv1.ChannelOpen, error) {
	o := &bankdv1.ChannelOpen{}
	if found, err := getProto(tx, channelOpenKey(id), o); err != nil {
		return nil, err
	} else if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "id: no channel open %q", truncate(id))
	}
	return o, nil
}

func (a *applier) saveChannelOpen(tx *txn, o *bankdv1.ChannelOpen) error {
	if channelActive(o.State) {
		tx.set(channelActiveKey(o.Id), nil)
	} else {
		tx.delete(channelActiveKey(o.Id))
	}
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_ChannelOpen{ChannelOpen: proto.Clone(o).(*bankdv1.ChannelOpen)}})
	return putProto(tx, channelOpenKey(o.Id), o)
}

func (a *applier) channelOpenRequest(tx *txn, cmd *bankdv1.ChannelOpenRequestCommand) (proto.Message, error) {
	req := cmd.GetRequest()
	if err := ValidateOpenChannel(req); err != nil {
		return nil, err
	}
	if len(cmd.GetPendingChanId()) != 32 {
		return nil, invalid("pending_chan_id: must be 32 bytes, got %d", len(cmd.GetPendingChanId()))
	}
	peer, _ := ParseChannelPeer("peer", req.Peer)
	prev := &bankdv1.ChannelOpen{}
	if found, err := getProto(tx, channelOpenKey(req.Id), prev); err != nil {
		return nil, err
	} else if found {
		if prev.NodeId != req.NodeId || prev.PeerPubkey != peer.Pubkey || prev.PeerHost != peer.Host || prev.AmountSat != req.AmountSat || prev.Private != req.Private {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "id: %q was already used for another channel open", req.Id)
		}
		return &bankdv1.OpenChannelResponse{Open: prev, Replayed: true}, nil
	}
	n, err := loadLndNode(tx, req.NodeId)
	if err != nil {
		return nil, err
	}
	if n.State != bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE {
		return nil, lightningConflict("node_id: pool node %q is %s; only an active node opens channels", n.Id, strings.TrimPrefix(n.State.String(), "LND_NODE_STATE_"))
	}
	if n.Pubkey != "" && n.Pubkey == peer.Pubkey {
		return nil, invalid("peer: %s is pool node %q itself", peer.Pubkey, n.Id)
	}
	o := &bankdv1.ChannelOpen{
		Id: req.Id, NodeId: req.NodeId, PeerPubkey: peer.Pubkey, PeerHost: peer.Host, AmountSat: req.AmountSat, Private: req.Private,
		PendingChanId: cmd.PendingChanId, State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_REQUESTED,
		RequestedBy: a.principal, RequestedUnixMs: a.now, Index: a.index,
	}
	return &bankdv1.OpenChannelResponse{Open: o}, a.saveChannelOpen(tx, o)
}

// ValidateChannelOpenStep checks a step on its own.
func ValidateChannelOpenStep(req *bankdv1.ChannelOpenStep) *Error {
	if err := checkID("id", req.GetId()); err != nil {
		return err
	}
	switch req.GetState() {
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED:
		if req.GetFundingAddress() == "" {
			return invalid("funding_address: required")
		}
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED:
		return checkText("reason", req.GetReason(), MaxPayoutReasonLen, true)
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED, bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING,
		bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING:
	default:
		return invalid("state: a step is NEGOTIATED, VERIFIED, FINALIZING, PENDING or FAILED, got %s", req.GetState())
	}
	return nil
}

func (a *applier) channelOpenStep(tx *txn, req *bankdv1.ChannelOpenStep) (proto.Message, error) {
	if err := ValidateChannelOpenStep(req); err != nil {
		return nil, err
	}
	o, err := loadChannelOpen(tx, req.Id)
	if err != nil {
		return nil, err
	}
	if o.State == req.State {
		return &bankdv1.ChannelOpenStepResponse{Open: o}, nil // a retried step
	}
	wrongState := func(want ...bankdv1.ChannelOpenState) error {
		var names []string
		for _, w := range want {
			names = append(names, channelStateName(w))
		}
		return lightningConflict("id: channel open %q is %s, not %s", o.Id, channelStateName(o.State), strings.Join(names, " or "))
	}
	switch req.State {
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED:
		if o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_REQUESTED {
			return nil, wrongState(bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_REQUESTED)
		}
		if req.FundingAmountSat != o.AmountSat {
			return nil, invalid("funding_amount_sat: lnd asks for %d, the open is for %d", req.FundingAmountSat, o.AmountSat)
		}
		network, _, err := tx.get(keyNetwork)
		if err != nil {
			return nil, err
		}
		addr, verr := ParsePayoutAddress("funding_address", req.FundingAddress, string(network))
		if verr != nil {
			return nil, verr
		}
		if addr.Type != "p2wsh" && addr.Type != "p2tr" {
			return nil, invalid("funding_address: a channel's funding output is p2wsh or p2tr, got %s", addr.Type)
		}
		o.FundingAddress, o.FundingScript = req.FundingAddress, addr.Script
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED:
		if o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PLANNED {
			return nil, wrongState(bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PLANNED)
		}
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING:
		if o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED {
			return nil, wrongState(bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED)
		}
		b, err := loadBatch(tx, "batch", o.BatchId)
		if err != nil {
			return nil, err
		}
		if b.State != bankdv1.BatchState_BATCH_STATE_SIGNED {
			return nil, payoutConflict("id: the funding transaction (batch %s) is %s, not signed", b.Id, batchStateName(b.State))
		}
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING:
		if o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING {
			return nil, wrongState(bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING)
		}
		if req.Vout != 0 {
			return nil, invalid("vout: the funding output is output 0 of batch %s, got %d", o.BatchId, req.Vout)
		}
		o.Vout = req.Vout
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED:
		if err := a.failChannelOpen(tx, o, req.Reason); err != nil {
			return nil, err
		}
		return &bankdv1.ChannelOpenStepResponse{Open: o}, nil
	}
	o.State = req.State
	return &bankdv1.ChannelOpenStepResponse{Open: o}, a.saveChannelOpen(tx, o)
}

// failChannelOpen gives an open up and abandons its batch, if any. The driver may do so until
// the signed transaction goes to lnd; after that (FINALIZING) only an operator may, because
// only a person can know that lnd never published it.
func (a *applier) failChannelOpen(tx *txn, o *bankdv1.ChannelOpen, reason string) error {
	switch o.State {
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_REQUESTED, bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED,
		bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PLANNED, bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED:
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING:
		if a.principal == "" {
			return lightningConflict("id: channel open %q is FINALIZING: its signed transaction went to lnd and may be published, so only an operator gives it up", o.Id)
		}
	default:
		return lightningConflict("id: channel open %q is %s; it can no longer be given up", o.Id, channelStateName(o.State))
	}
	if o.BatchId != "" {
		b, err := loadBatch(tx, "batch", o.BatchId)
		if err != nil {
			return err
		}
		switch b.State {
		case bankdv1.BatchState_BATCH_STATE_PLANNED, bankdv1.BatchState_BATCH_STATE_SIGNED:
			if err := a.abandonBatch(tx, b, "channel open failed: "+reason); err != nil {
				return err
			}
		case bankdv1.BatchState_BATCH_STATE_ABANDONED:
		default:
			return payoutConflict("id: the funding transaction (batch %s) is %s on chain; the open can no longer be given up", b.Id, batchStateName(b.State))
		}
	}
	o.State, o.FailReason, o.FailedBy, o.ResolvedUnixMs = bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED, reason, a.principal, a.now
	return a.saveChannelOpen(tx, o)
}

// planChannel checks a channel funding plan's open and returns it with its funding output
// (vout 0 of the batch).
func planChannel(tx *txn, req *bankdv1.PayoutPlan) (*bankdv1.ChannelOpen, *bankdv1.BatchOutput, error) {
	o, err := loadChannelOpen(tx, req.ChannelOpenId)
	if err != nil {
		return nil, nil, err
	}
	if o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED {
		return nil, nil, lightningConflict("channel_open_id: channel open %q is %s, not NEGOTIATED", o.Id, channelStateName(o.State))
	}
	out := &bankdv1.BatchOutput{Vout: 0, ValueSat: o.AmountSat, Script: o.FundingScript, Address: o.FundingAddress}
	return o, out, nil
}

// finalizeChannel books a final channel funding: the channel's coins leave the hot wallet's
// books for the node's. It is the one transfer between two drivers' books (checkAccountUse):
// the chain driver moves coins out of its wallet into the Lightning driver's ln:<node>.
func (c *chainApply) finalizeChannel(b *bankdv1.PayoutBatch, index uint64) error {
	a, tx := c.a, c.tx
	o, err := loadChannelOpen(tx, b.ChannelOpenId)
	if err != nil {
		return err
	}
	subject := "channel open " + o.Id
	a.crossBooks = true
	err = a.book(tx, subject, &bankdv1.Transfer{Id: channelTransferID(index), DebitAccountId: LightningNodeAccount(o.NodeId),
		CreditAccountId: WalletAccount(b.WalletId), Amount: b.Outputs[0].ValueSat, ExternalRef: b.Txid})
	a.crossBooks = false
	if err != nil {
		return err
	}
	if o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING {
		a.problem(subject, "its funding transaction %s is final while the open was %s; booked all the same", b.Txid, channelStateName(o.State))
	}
	o.State, o.Txid, o.Vout, o.ResolvedUnixMs = bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_OPEN, b.Txid, 0, a.now
	return a.saveChannelOpen(tx, o)
}

// ChannelOpen returns a channel open by id, or ErrNotFound.
func (f *FSM) ChannelOpen(id string) (*bankdv1.ChannelOpen, error) {
	o := &bankdv1.ChannelOpen{}
	err := f.view(func(r pebble.Reader) error {
		if found, err := readProto(r, channelOpenKey(id), o); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("channel open %q: %w", id, ErrNotFound)
		}
		return nil
	})
	return o, err
}

// ActiveChannelOpens returns the opens the leader's driver still has work on (REQUESTED to
// PENDING), at most max of them.
func (f *FSM) ActiveChannelOpens(max int) ([]*bankdv1.ChannelOpen, error) {
	var out []*bankdv1.ChannelOpen
	err := f.view(func(r pebble.Reader) error {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagChannelActive}, UpperBound: []byte{tagChannelActive + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < max; ok = it.Next() {
			id := string(it.Key()[1:])
			o := &bankdv1.ChannelOpen{}
			if found, err := readProto(r, channelOpenKey(id), o); err != nil {
				return err
			} else if !found {
				return fmt.Errorf("active channel open %q has no record", id)
			}
			out = append(out, o)
		}
		return it.Error()
	})
	if err != nil {
		return nil, fmt.Errorf("list channel opens: %w", err)
	}
	return out, nil
}
