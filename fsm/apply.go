package fsm

import (
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
	items []*bankdv1.EventItem
	// allowNegative lets the next balance change take a non-negative account below zero: only
	// for reversals of deposits the chain took back.
	allowNegative bool
	// watched are the scripts this command added to the script table, for
	// Options.OnScriptsWatched.
	watched [][]byte
}

// commandHandler applies one command type. It returns the response, or an *Error to refuse the
// command; any other error means the store is broken and stops the state machine.
type commandHandler struct {
	newBody func() proto.Message
	apply   func(a *applier, tx *txn, body proto.Message) (proto.Message, error)
}

// commandBodies is the registry of every command type this binary applies.
var commandBodies = map[bankdv1.CommandType]commandHandler{
	bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT: {
		newBody: func() proto.Message { return &bankdv1.CreateAccountRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.createAccount(tx, body.(*bankdv1.CreateAccountRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS: {
		newBody: func() proto.Message { return &bankdv1.CreateTransfersRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.createTransfers(tx, body.(*bankdv1.CreateTransfersRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_ACQUIRE_LOCK: {
		newBody: func() proto.Message { return &bankdv1.AcquireLockRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.acquireLock(tx, body.(*bankdv1.AcquireLockRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_RENEW_LOCK: {
		newBody: func() proto.Message { return &bankdv1.RenewLockRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.renewLock(tx, body.(*bankdv1.RenewLockRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_RELEASE_LOCK: {
		newBody: func() proto.Message { return &bankdv1.ReleaseLockRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.releaseLock(tx, body.(*bankdv1.ReleaseLockRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_TICK: {
		newBody: func() proto.Message { return &emptypb.Empty{} },
		apply: func(*applier, *txn, proto.Message) (proto.Message, error) {
			return &emptypb.Empty{}, nil
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET: {
		newBody: func() proto.Message { return &bankdv1.CreateWalletRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.createWallet(tx, body.(*bankdv1.CreateWalletRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS: {
		newBody: func() proto.Message { return &bankdv1.NewDepositAddressRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.newDepositAddress(tx, body.(*bankdv1.NewDepositAddressRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED: {
		newBody: func() proto.Message { return &bankdv1.ChainBlockConnected{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.chainBlockConnected(tx, body.(*bankdv1.ChainBlockConnected))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED: {
		newBody: func() proto.Message { return &bankdv1.ChainBlockDisconnected{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.chainBlockDisconnected(tx, body.(*bankdv1.ChainBlockDisconnected))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_MEMPOOL: {
		newBody: func() proto.Message { return &bankdv1.ChainMempool{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.chainMempool(tx, body.(*bankdv1.ChainMempool))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN: {
		newBody: func() proto.Message { return &bankdv1.RescanChainRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.chainRescan(tx, body.(*bankdv1.RescanChainRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN_BLOCK: {
		newBody: func() proto.Message { return &bankdv1.ChainRescanBlock{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.chainRescanBlock(tx, body.(*bankdv1.ChainRescanBlock))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT: {
		newBody: func() proto.Message { return &bankdv1.UpsertLndNodeRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.upsertLndNode(tx, body.(*bankdv1.UpsertLndNodeRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH: {
		newBody: func() proto.Message { return &bankdv1.LndNodeHealth{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.lndNodeHealth(tx, body.(*bankdv1.LndNodeHealth))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE: {
		newBody: func() proto.Message { return &bankdv1.SetLndNodeStateRequest{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.setLndNodeState(tx, body.(*bankdv1.SetLndNodeStateRequest))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED: {
		newBody: func() proto.Message { return &bankdv1.LnInvoiceCreated{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.lnInvoiceCreated(tx, body.(*bankdv1.LnInvoiceCreated))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_UPDATES: {
		newBody: func() proto.Message { return &bankdv1.LnInvoiceUpdates{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.lnInvoiceUpdates(tx, body.(*bankdv1.LnInvoiceUpdates))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START: {
		newBody: func() proto.Message { return &bankdv1.LnPaymentStart{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.lnPaymentStart(tx, body.(*bankdv1.LnPaymentStart))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT: {
		newBody: func() proto.Message { return &bankdv1.LnPaymentResult{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.lnPaymentResult(tx, body.(*bankdv1.LnPaymentResult))
		},
	},
	bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CANCELED_ON_NODE: {
		newBody: func() proto.Message { return &bankdv1.LnInvoiceCanceledOnNode{} },
		apply: func(a *applier, tx *txn, body proto.Message) (proto.Message, error) {
			return a.lnInvoiceCanceledOnNode(tx, body.(*bankdv1.LnInvoiceCanceledOnNode))
		},
	},
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
	body := handler.newBody()
	if err := proto.Unmarshal(cmd.Body, body); err != nil {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "command body does not decode as %s: %v", body.ProtoReflect().Descriptor().FullName(), err)
	}
	tx := a.root.child()
	result, err := handler.apply(a, tx, body)
	if err != nil {
		a.watched = nil // they were written to the dropped txn
		return nil, err
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	return result, nil
}

func asRefusal(err error) (*Error, bool) {
	e, ok := err.(*Error)
	return e, ok && e != nil
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
	v, err := marshal.Marshal(m)
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
