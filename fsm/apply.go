package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
)

// applier applies one command. Its root txn collects everything the command writes; the
// command body runs in a child txn that is dropped if the command is refused.
type applier struct {
	root  *txn
	index uint64
	term  uint64
	now   int64
	seq   uint32 // orders history entries written by this command
	// format is the stored format this command writes (format.go); SWITCH_FORMAT changes it
	// for the commands after it.
	format uint32
	items  []*bankdv1.EventItem
	// cmdType and owner are the command's type and the owner it acts as (commandBodies).
	cmdType bankdv1.CommandType
	owner   bankdv1.Owner
	// principal is the authenticated API token that asked for the command ("" for drivers).
	principal string
	// crossBooks lets the chain driver move coins into a Lightning node's books: set only
	// around a final channel funding's one transfer (finalizeChannel).
	crossBooks bool
	// problems are the unexpected states this command met and applied around (problem.go).
	problems []*bankdv1.Problem
	// allowNegative lets the next balance change take a non-negative account below zero: only
	// for reversals of deposits the chain took back.
	allowNegative bool
	// watched are the scripts this command added to the script table, for
	// Options.OnScriptsWatched.
	watched [][]byte
	// scratch is a buffer for encodings that are hashed and dropped (requestHash).
	scratch []byte
	// results, transferItems and records hold the per-transfer records of a command
	// (slab.go): its results, its event's items and the transfer records it creates.
	results       slab[bankdv1.TransferResult]
	transferItems slab[transferItem]
	records       slab[bankdv1.Transfer]
}

// commandHandler applies one command type. It returns the response, or an *Error to refuse the
// command; any other error means the store is broken and stops the state machine.
type commandHandler struct {
	// owner is who the command acts as: what it creates is stamped with this owner, and what
	// it may touch is judged against it (owner.go).
	owner   bankdv1.Owner
	newBody func() proto.Message
	apply   func(a *applier, tx *txn, body proto.Message) (proto.Message, error)
	// decode, when set, decodes the bodies of the common shape without proto.Unmarshal, or
	// returns ok=false for proto.Unmarshal to decode (decode.go).
	decode func(body []byte) (msg proto.Message, ok bool)
}

// decodedBy adds a decoder for the common shape of h's bodies.
func decodedBy[T proto.Message](h commandHandler, decode func([]byte) (T, bool)) commandHandler {
	h.decode = func(body []byte) (proto.Message, bool) { return decode(body) }
	return h
}

// handle adapts a typed apply function to the command table.
func handle[T proto.Message](owner bankdv1.Owner, apply func(*applier, *txn, T) (proto.Message, error)) commandHandler {
	return commandHandler{
		owner: owner,
		newBody: func() proto.Message {
			var zero T
			return zero.ProtoReflect().Type().New().Interface()
		},
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) { return apply(a, tx, body.(T)) },
	}
}

// decodeBody decodes a command's body, refusing one that does not decode.
func (h commandHandler) decodeBody(b []byte) (proto.Message, error) {
	if h.decode != nil {
		if body, ok := h.decode(b); ok {
			return body, nil
		}
	}
	body := h.newBody()
	if err := proto.Unmarshal(b, body); err != nil {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "command body does not decode as %s: %v", body.ProtoReflect().Descriptor().FullName(), err)
	}
	return body, nil
}

const (
	asClient    = bankdv1.Owner_OWNER_CLIENT
	asChain     = bankdv1.Owner_OWNER_CHAIN
	asLightning = bankdv1.Owner_OWNER_LIGHTNING
)

// commandBodies is the registry of every command type this binary applies, with the owner each
// acts as. Client commands are the API's; the chain and Lightning ones are proposed by the
// leader's drivers (or, for a few, by an operator through the API acting on the driver's state).
var commandBodies = map[bankdv1.CommandType]commandHandler{
	bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT:      handle(asClient, (*applier).createAccount),
	bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS:    decodedBy(handle(asClient, (*applier).createTransfers), decodeCreateTransfers),
	bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS:     handle(asClient, (*applier).createAccounts),
	bankdv1.CommandType_COMMAND_TYPE_ACQUIRE_LOCK:        handle(asClient, (*applier).acquireLock),
	bankdv1.CommandType_COMMAND_TYPE_RENEW_LOCK:          handle(asClient, (*applier).renewLock),
	bankdv1.CommandType_COMMAND_TYPE_RELEASE_LOCK:        handle(asClient, (*applier).releaseLock),
	bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET:       handle(asClient, (*applier).createWallet),
	bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS: handle(asClient, (*applier).newDepositAddress),
	// A tick only lets time pass (expiries run before every command); it creates nothing, so it
	// acts as no one.
	bankdv1.CommandType_COMMAND_TYPE_TICK: handle(bankdv1.Owner_OWNER_UNSPECIFIED, func(*applier, *txn, *emptypb.Empty) (proto.Message, error) {
		return &emptypb.Empty{}, nil
	}),

	bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED:    handle(asChain, (*applier).chainBlockConnected),
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED: handle(asChain, (*applier).chainBlockDisconnected),
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_MEMPOOL:            handle(asChain, (*applier).chainMempool),
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN:             handle(asChain, (*applier).chainRescan),
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN_BLOCK:       handle(asChain, (*applier).chainRescanBlock),

	bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT:             handle(asLightning, (*applier).upsertLndNode),
	bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH:             handle(asLightning, (*applier).lndNodeHealth),
	bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE:          handle(asLightning, (*applier).setLndNodeState),
	bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED:          handle(asLightning, (*applier).lnInvoiceCreated),
	bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_UPDATES:          handle(asLightning, (*applier).lnInvoiceUpdates),
	bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START:            handle(asLightning, (*applier).lnPaymentStart),
	bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT:           handle(asLightning, (*applier).lnPaymentResult),
	bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CANCELED_ON_NODE: handle(asLightning, (*applier).lnInvoiceCanceledOnNode),

	// Withdrawals move customers' money into the chain driver's books, so every payout command
	// acts as the chain driver; the API checks who may ask for each (rpc/auth.go), and the
	// state machine records who did (requested_by, decided_by, signed_by).
	bankdv1.CommandType_COMMAND_TYPE_PAYOUT_REQUEST: handle(asChain, (*applier).payoutRequest),
	bankdv1.CommandType_COMMAND_TYPE_PAYOUT_CANCEL:  handle(asChain, (*applier).payoutCancel),
	bankdv1.CommandType_COMMAND_TYPE_PAYOUT_DECIDE:  handle(asChain, (*applier).payoutDecide),
	bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN:    handle(asChain, (*applier).payoutPlan),
	bankdv1.CommandType_COMMAND_TYPE_PAYOUT_SIGNED:  handle(asChain, (*applier).payoutSigned),
	bankdv1.CommandType_COMMAND_TYPE_PAYOUT_ABANDON: handle(asChain, (*applier).payoutAbandon),
	bankdv1.CommandType_COMMAND_TYPE_PAYOUT_BUMP:    handle(asChain, (*applier).payoutBump),
	// A channel open spends the hot wallet, the chain driver's, through the payout pipeline.
	bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_REQUEST: handle(asChain, (*applier).channelOpenRequest),
	bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_STEP:    handle(asChain, (*applier).channelOpenStep),
	// So do moves between the hot wallet and the cold vault.
	bankdv1.CommandType_COMMAND_TYPE_VAULT_PROPOSE: handle(asChain, (*applier).vaultPropose),
	bankdv1.CommandType_COMMAND_TYPE_VAULT_DECIDE:  handle(asChain, (*applier).vaultDecide),
	bankdv1.CommandType_COMMAND_TYPE_VAULT_ABANDON: handle(asChain, (*applier).vaultAbandon),

	// Retention drops old records and creates nothing, so it acts as no one.
	bankdv1.CommandType_COMMAND_TYPE_COMPACT: handle(bankdv1.Owner_OWNER_UNSPECIFIED, (*applier).compact),
	// A format switch changes how later commands write, and creates nothing.
	bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT: handle(bankdv1.Owner_OWNER_UNSPECIFIED, (*applier).switchFormat),

	// An adjustment corrects one driver's books: it acts as the driver that owns the adjusted
	// account, which only the state tells, so it starts as no one (adjustment.go).
	bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT: handle(bankdv1.Owner_OWNER_UNSPECIFIED, (*applier).bookAdjustment),

	// A lost node and its payments are the Lightning driver's state, resolved by an admin
	// (lightning_lost.go); the principal records who decided.
	bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST:     handle(asLightning, (*applier).declareLndLost),
	bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT: handle(asLightning, (*applier).resolveLostPayment),
}

// maxExpiriesPerCommand bounds the work one command does releasing timed-out pending
// transfers; the leader's tick drives the rest.
const maxExpiriesPerCommand = 256

func (a *applier) apply(data []byte) (any, error) {
	cmd, err := decodeCommand(data)
	if err != nil {
		return nil, err
	}
	if cmd.LeaderTimeUnixMs > a.now {
		a.now = cmd.LeaderTimeUnixMs
	}
	if err := a.expirePending(a.root, maxExpiriesPerCommand); err != nil {
		return nil, err
	}

	result, err := a.run(cmd)
	if refusal, ok := asRefusal(err); ok {
		result = refusal
	} else if err != nil {
		return nil, err
	}
	if err := a.writeEvent(); err != nil {
		return nil, err
	}
	if err := a.root.commit(); err != nil {
		return nil, err
	}
	return result, nil
}

// run checks the fence and applies the body in a child txn, committed only on success.
func (a *applier) run(cmd *bankdv1.Command) (any, error) {
	if cmd.Fence != nil && !failpoint.Enabled(failpoint.SkipFenceCheck) { // failpoint SkipFenceCheck
		if err := a.checkFence(a.root, cmd.Fence); err != nil {
			if refusal, ok := asRefusal(err); ok {
				a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_FenceRefused{FenceRefused: refusal.Message}})
			}
			return nil, err
		}
	}
	handler := commandBodies[cmd.Type]
	a.cmdType, a.owner, a.principal = cmd.Type, handler.owner, cmd.Principal
	body, err := handler.decodeBody(cmd.Body)
	if err != nil {
		return nil, err
	}
	tx := a.root.child()
	itemsMark := len(a.items)
	result, err := handler.apply(a, tx, body)
	if err != nil {
		// What the refused command did was written to the dropped txn: so are the events and
		// problems that describe it.
		tx.rollback()
		a.watched, a.items, a.problems = nil, a.items[:itemsMark], nil
		return nil, err
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	return result, a.writeProblems()
}

// asRefusal reports whether err is (or wraps) a refusal.
func asRefusal(err error) (*Error, bool) {
	if err == nil {
		return nil, false // the common case, without errors.As's allocation
	}
	var e *Error
	return e, errors.As(err, &e) && e != nil
}

func (a *applier) emit(item *bankdv1.EventItem) { a.items = append(a.items, item) }

func (a *applier) nextSeq() uint32 {
	a.seq++
	return a.seq
}

func (a *applier) writeEvent() error {
	if len(a.items) == 0 {
		return nil
	}
	ev := &bankdv1.Event{Index: a.index, AtUnixMs: a.now, Items: a.items}
	return putProto(a.root, eventKey(a.index), ev)
}

func putProto(tx *txn, key []byte, m proto.Message) error {
	v, err := encodeProto(m)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	tx.set(key, v)
	return nil
}

// getProto loads key into m; ok is false if the key does not exist.
func getProto(tx *txn, key []byte, m proto.Message) (bool, error) {
	v, ok, err := tx.get(key)
	if err != nil || !ok {
		return false, err
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("corrupt record at %q: %w", key, err)
	}
	return true, nil
}
