package fsm

import (
	"encoding/binary"
	"encoding/hex"
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
	lower := []byte{tagUtxo}
	if pageToken != "" {
		pos, err := hex.DecodeString(pageToken)
		if err != nil || len(pos) != 68 {
			return nil, "", invalid("page_token: malformed")
		}
		lower = append(append([]byte{tagUtxo}, pos...), 0)
	}
	limit := clampPageSize(pageSize)
	var out []*bankdv1.Utxo
	var lastKey []byte
	more := false
	err := f.scan(lower, []byte{tagUtxo + 1}, func(k, v []byte) (bool, error) {
		u := &bankdv1.Utxo{}
		if err := proto.Unmarshal(v, u); err != nil {
			return false, fmt.Errorf("corrupt utxo at %x: %w", k, err)
		}
		if walletID != "" && u.WalletId != walletID {
			return true, nil
		}
		if len(out) == limit {
			more = true
			return false, nil
		}
		out = append(out, u)
		lastKey = append(lastKey[:0], k...)
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = hex.EncodeToString(lastKey[1:])
	}
	return out, next, nil
}

// ListDeposits returns an account's deposits in the order they were first seen, after
// pageToken.
func (f *FSM) ListDeposits(accountID, pageToken string, pageSize int) ([]*bankdv1.Deposit, string, error) {
	if _, err := f.Account(accountID); err != nil {
		return nil, "", err
	}
	prefix := append(tagged(tagAccountDeposit, accountID), 0)
	lower := prefix
	if pageToken != "" {
		pos, err := hex.DecodeString(pageToken)
		if err != nil || len(pos) != 12 {
			return nil, "", invalid("page_token: malformed")
		}
		lower = append(append(append([]byte(nil), prefix...), pos...), 0)
	}
	limit := clampPageSize(pageSize)
	var ops [][]byte
	var keys [][]byte
	more := false
	err := f.scan(lower, prefixEnd(prefix), func(k, v []byte) (bool, error) {
		if len(ops) == limit {
			more = true
			return false, nil
		}
		ops = append(ops, append([]byte(nil), v...))
		keys = append(keys, append([]byte(nil), k...))
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]*bankdv1.Deposit, 0, len(ops))
	for _, v := range ops {
		op := &bankdv1.Outpoint{}
		if err := proto.Unmarshal(v, op); err != nil {
			return nil, "", fmt.Errorf("corrupt deposit index of %q: %w", accountID, err)
		}
		d := &bankdv1.Deposit{}
		if err := f.get(outpointKey(tagDeposit, op), d); err != nil {
			return nil, "", fmt.Errorf("deposit %s: %w", outpointString(op), err)
		}
		out = append(out, d)
	}
	next := ""
	if more {
		next = hex.EncodeToString(keys[len(keys)-1][len(prefix):])
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
