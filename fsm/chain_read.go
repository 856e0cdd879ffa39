package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Reads of the chain state (chain.go). The chain watcher uses ChainTip, ChainBlockHash,
// ForEachChainOutpoint and PendingChainTxs; the API the rest.

// ChainTip returns the block the cluster has followed up to; ok is false for an empty chain.
func (f *FSM) ChainTip() (tip *bankdv1.ChainTip, ok bool, err error) {
	tip = &bankdv1.ChainTip{}
	err = f.get(keyChainTip, tip)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return tip, err == nil, err
}

// ChainBlockHash returns the hash of the followed chain's block at height, if the state
// machine still keeps it (the tip and keep_hashes blocks below it).
func (f *FSM) ChainBlockHash(height uint32) (string, bool, error) {
	rec := &bankdv1.ChainBlockRecord{}
	err := f.get(heightKey(tagChainBlock, height), rec)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return rec.Tip.GetHash(), true, nil
}

// ChainStatus returns the tip, the network and the counters of the chain state.
func (f *FSM) ChainStatus() (*bankdv1.GetChainStatusResponse, error) {
	out := &bankdv1.GetChainStatusResponse{}
	err := f.view(func(r pebble.Reader) error {
		tip := &bankdv1.ChainTip{}
		if ok, err := readProto(r, keyChainTip, tip); err != nil {
			return err
		} else if ok {
			out.Tip = tip
		}
		v, ok, err := readValue(r, keyNetwork)
		if err != nil {
			return err
		}
		if ok {
			out.Network = string(v)
		}
		v, ok, err = readValue(r, keyChainStats)
		if err != nil {
			return err
		}
		var s chainStats
		if ok {
			if s, err = decodeChainStats(v); err != nil {
				return err
			}
		}
		out.PendingTxs, out.ConfirmedTxs, out.Utxos, out.UtxoValueSat = s.pending, s.confirmed, s.utxos, s.utxoValue
		p := &bankdv1.RescanProgress{}
		if ok, err := readProto(r, keyChainRescan, p); err != nil {
			return err
		} else if ok {
			out.Rescan = p
		}
		return nil
	})
	return out, err
}

// ChainTx returns a tracked transaction (with its confirmations at the tip) and the deposits it
// pays, or ErrNotFound.
func (f *FSM) ChainTx(txid string) (*bankdv1.ChainTx, []*bankdv1.Deposit, error) {
	if err := CheckHash("txid", txid); err != nil {
		return nil, nil, err
	}
	rec := &bankdv1.ChainTx{}
	var deposits []*bankdv1.Deposit
	err := f.view(func(r pebble.Reader) error {
		if ok, err := readProto(r, chainTxKey(txid), rec); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("transaction %s: %w", txid, ErrNotFound)
		}
		if rec.State == bankdv1.TxState_TX_STATE_CONFIRMED || rec.State == bankdv1.TxState_TX_STATE_FINAL {
			tip := &bankdv1.ChainTip{}
			if ok, err := readProto(r, keyChainTip, tip); err != nil {
				return err
			} else if ok && tip.Height >= rec.BlockHeight {
				rec.Confirmations = tip.Height - rec.BlockHeight + 1
			}
		}
		for _, o := range rec.Outputs {
			d := &bankdv1.Deposit{}
			if ok, err := readProto(r, outpointKey(tagDeposit, &bankdv1.Outpoint{Txid: txid, Vout: o.Vout}), d); err != nil {
				return err
			} else if ok {
				deposits = append(deposits, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return rec, deposits, nil
}

// ListUtxos returns our UTXOs in outpoint order after pageToken, those of walletID only when
// it is not empty.
func (f *FSM) ListUtxos(walletID, pageToken string, pageSize int) ([]*bankdv1.Utxo, string, error) {
	var keep func(*bankdv1.Utxo) bool
	if walletID != "" {
		keep = func(u *bankdv1.Utxo) bool { return u.WalletId == walletID }
	}
	return readPage(f, []byte{tagUtxo}, 68, pageToken, pageSize, func() *bankdv1.Utxo { return &bankdv1.Utxo{} }, "utxo", keep)
}

// ListDeposits returns an account's deposits in the order they were first seen, after
// pageToken.
func (f *FSM) ListDeposits(accountID, pageToken string, pageSize int) ([]*bankdv1.Deposit, string, error) {
	if _, err := f.Account(accountID); err != nil {
		return nil, "", err
	}
	ops, next, err := readPage(f, append(tagged(tagAccountDeposit, accountID), 0), 12, pageToken, pageSize,
		func() *bankdv1.Outpoint { return &bankdv1.Outpoint{} }, "deposit index of "+accountID, nil)
	if err != nil {
		return nil, "", err
	}
	out := make([]*bankdv1.Deposit, 0, len(ops))
	for _, op := range ops {
		d := &bankdv1.Deposit{}
		if err := f.get(outpointKey(tagDeposit, op), d); err != nil {
			return nil, "", fmt.Errorf("deposit %s: %w", outpointString(op), err)
		}
		out = append(out, d)
	}
	return out, next, nil
}

// ForEachChainOutpoint calls fn with every outpoint whose spending concerns us: our UTXOs and
// the inputs of tracked PENDING and CONFIRMED transactions (a block spending one of those
// double-spends the transaction).
func (f *FSM) ForEachChainOutpoint(fn func(txid string, vout uint32) error) error {
	for _, tag := range []byte{tagUtxo, tagSpender} {
		err := f.scan([]byte{tag}, []byte{tag + 1}, func(k, _ []byte) (bool, error) {
			if len(k) != 1+64+4 {
				return false, fmt.Errorf("corrupt outpoint key %x", k)
			}
			return true, fn(string(k[1:65]), binary.BigEndian.Uint32(k[65:]))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// PendingChainTxs returns the txids of the tracked PENDING transactions, in txid order.
func (f *FSM) PendingChainTxs() ([]string, error) {
	var out []string
	err := f.scan([]byte{tagPendingTx}, []byte{tagPendingTx + 1}, func(k, _ []byte) (bool, error) {
		out = append(out, string(k[1:]))
		return true, nil
	})
	return out, err
}

// readProto decodes the record at key into m; ok is false if there is none.
func readProto(r pebble.Reader, key []byte, m proto.Message) (bool, error) {
	v, ok, err := readValue(r, key)
	if err != nil || !ok {
		return false, err
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("corrupt %s at %q: %w", m.ProtoReflect().Descriptor().Name(), key, err)
	}
	return true, nil
}
