package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Reads of the payout state (payout.go), for the API and the leader's payout driver.

// Payout returns a withdrawal by its client id, or ErrNotFound.
func (f *FSM) Payout(id string) (*bankdv1.Payout, error) {
	p := &bankdv1.Payout{}
	err := f.view(func(r pebble.Reader) error {
		v, ok, err := readValue(r, payoutIDKey(id))
		if err != nil {
			return err
		}
		if !ok || len(v) != 40 {
			return fmt.Errorf("withdrawal %q: %w", id, ErrNotFound)
		}
		if ok, err := readProto(r, payoutKey(binary.BigEndian.Uint64(v[32:])), p); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("withdrawal %q: its id names a missing record", id)
		}
		return nil
	})
	return p, err
}

// ListPayouts returns withdrawals in request order after pageToken, only those of accountID
// and in state when they are set.
func (f *FSM) ListPayouts(accountID string, state bankdv1.PayoutState, pageToken string, pageSize int) ([]*bankdv1.Payout, string, error) {
	keep := func(p *bankdv1.Payout) bool {
		return (accountID == "" || p.AccountId == accountID) && (state == 0 || p.State == state)
	}
	return readPage(f, []byte{tagPayout}, 8, pageToken, pageSize, func() *bankdv1.Payout { return &bankdv1.Payout{} }, "payout", keep)
}

// PayoutBatch returns a batch by id, or ErrNotFound.
func (f *FSM) PayoutBatch(id string) (*bankdv1.PayoutBatch, error) {
	index, ok := ParseBatchID(id)
	if !ok {
		return nil, fmt.Errorf("batch %q: %w", id, ErrNotFound)
	}
	b := &bankdv1.PayoutBatch{}
	if err := f.get(batchKey(index), b); err != nil {
		return nil, fmt.Errorf("batch %q: %w", id, err)
	}
	return b, nil
}

// ListPayoutBatches returns batches in plan order after pageToken, only those in state when it
// is set.
func (f *FSM) ListPayoutBatches(state bankdv1.BatchState, pageToken string, pageSize int) ([]*bankdv1.PayoutBatch, string, error) {
	var keep func(*bankdv1.PayoutBatch) bool
	if state != 0 {
		keep = func(b *bankdv1.PayoutBatch) bool { return b.State == state }
	}
	return readPage(f, []byte{tagBatch}, 8, pageToken, pageSize, func() *bankdv1.PayoutBatch { return &bankdv1.PayoutBatch{} }, "batch", keep)
}

// QueuedPayouts returns up to max QUEUED withdrawals of a queue, in request order.
func (f *FSM) QueuedPayouts(queue string, max int) ([]*bankdv1.Payout, error) {
	var out []*bankdv1.Payout
	err := f.view(func(r pebble.Reader) error {
		prefix := payoutQueuePrefix(queue)
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < max; ok = it.Next() {
			k := it.Key()
			if len(k) != len(prefix)+8 {
				return fmt.Errorf("corrupt queue key %x", k)
			}
			p := &bankdv1.Payout{}
			if found, err := readProto(r, payoutKey(binary.BigEndian.Uint64(k[len(prefix):])), p); err != nil {
				return err
			} else if !found {
				return fmt.Errorf("queue %q names a missing withdrawal", queue)
			}
			out = append(out, p)
		}
		return it.Error()
	})
	return out, err
}

// SpendableUtxos returns the UTXOs of a wallet that a new plan may spend: confirmed, not being
// spent by a tracked transaction and not reserved by a batch, in outpoint order.
func (f *FSM) SpendableUtxos(walletID string) ([]*bankdv1.Utxo, error) {
	return f.spendableUtxos(walletID, false)
}

// SweepableUtxos returns the spendable UTXOs of a DEPOSIT wallet whose deposits are credited
// (final), which a sweep may move to the hot wallet.
func (f *FSM) SweepableUtxos(walletID string) ([]*bankdv1.Utxo, error) {
	return f.spendableUtxos(walletID, true)
}

func (f *FSM) spendableUtxos(walletID string, credited bool) ([]*bankdv1.Utxo, error) {
	var out []*bankdv1.Utxo
	err := f.view(func(r pebble.Reader) error {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagUtxo}, UpperBound: []byte{tagUtxo + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			u := &bankdv1.Utxo{}
			if err := proto.Unmarshal(it.Value(), u); err != nil {
				return fmt.Errorf("corrupt UTXO at %x: %w", it.Key(), err)
			}
			if u.WalletId != walletID || u.SpendingTxid != "" {
				continue
			}
			if _, reserved, err := readValue(r, outpointKey(tagReserved, u.Outpoint)); err != nil {
				return err
			} else if reserved {
				continue
			}
			if credited {
				d := &bankdv1.Deposit{}
				if found, err := readProto(r, outpointKey(tagDeposit, u.Outpoint), d); err != nil {
					return err
				} else if !found || d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED {
					continue
				}
			}
			out = append(out, u)
		}
		return it.Error()
	})
	return out, err
}
