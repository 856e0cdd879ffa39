package fsm

import (
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Reads of wallets, deposit addresses and the script table. Reads that combine several keys
// (a wallet and its counters) take them from one Pebble snapshot.

// view runs fn on a consistent snapshot of the store.
func (f *FSM) view(fn func(r pebble.Reader) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return errors.New("state machine is closed")
	}
	snap := f.db.NewSnapshot()
	defer snap.Close()
	return fn(snap)
}

// readValue returns a copy of the value at key; ok is false if it does not exist.
func readValue(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %q: %w", key, err)
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

// readWallet reads a wallet with its branch counters.
func readWallet(r pebble.Reader, id string) (*bankdv1.Wallet, error) {
	v, found, err := readValue(r, walletKey(id))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("wallet %q: %w", id, ErrNotFound)
	}
	w := &bankdv1.Wallet{}
	if err := proto.Unmarshal(v, w); err != nil {
		return nil, fmt.Errorf("corrupt wallet %q: %w", id, err)
	}
	counters, found, err := readValue(r, walletBranchesKey(id))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("wallet %q has no branch counters", id)
	}
	if w.Branches, err = decodeBranches(counters); err != nil {
		return nil, fmt.Errorf("wallet %q: %w", id, err)
	}
	return w, nil
}

// Wallet returns a wallet with its branches' counters, or ErrNotFound.
func (f *FSM) Wallet(id string) (*bankdv1.Wallet, error) {
	var w *bankdv1.Wallet
	err := f.view(func(r pebble.Reader) error {
		var err error
		w, err = readWallet(r, id)
		return err
	})
	return w, err
}

// ListWallets returns wallets in id order after pageToken, and the token of the next page
// ("" on the last page).
func (f *FSM) ListWallets(pageToken string, pageSize int) ([]*bankdv1.Wallet, string, error) {
	if pageToken != "" && !validID(pageToken) {
		return nil, "", invalid("page_token: malformed")
	}
	limit := clampPageSize(pageSize)
	lower := walletKey(pageToken)
	if pageToken != "" {
		lower = append(lower, 0) // first key after the token's id
	}
	var out []*bankdv1.Wallet
	more := false
	err := f.view(func(r pebble.Reader) error {
		iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd([]byte{tagWallet})})
		if err != nil {
			return fmt.Errorf("iterate wallets: %w", err)
		}
		for ok := iter.First(); ok; ok = iter.Next() {
			if len(out) == limit {
				more = true
				break
			}
			w, err := readWallet(r, string(iter.Key()[1:]))
			if err != nil {
				iter.Close()
				return err
			}
			out = append(out, w)
		}
		return iter.Close()
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = out[len(out)-1].Id
	}
	return out, next, nil
}

// ListDepositAddresses returns the addresses handed out to an account, oldest first, after
// pageToken.
func (f *FSM) ListDepositAddresses(accountID, pageToken string, pageSize int) ([]*bankdv1.DepositAddress, string, error) {
	if _, err := f.Account(accountID); err != nil {
		return nil, "", err
	}
	return readPage(f, depositAddressPrefix(accountID), 12, pageToken, pageSize,
		func() *bankdv1.DepositAddress { return &bankdv1.DepositAddress{} }, "deposit address of "+accountID, nil)
}

// LookupScript returns the script table's record of a scriptPubKey, or ErrNotFound when no
// wallet watches it.
func (f *FSM) LookupScript(script []byte) (*bankdv1.WatchedScript, error) {
	rec := &bankdv1.WatchedScript{}
	if err := f.get(scriptKey(script), rec); err != nil {
		return nil, fmt.Errorf("script %x: %w", script, err)
	}
	return rec, nil
}

// LookupAddress returns the script table's record of an address of the cluster's chain
// network, or ErrNotFound. An address that does not parse, or is for another network, is
// refused with INVALID_ARGUMENT.
func (f *FSM) LookupAddress(address string) (*bankdv1.WatchedScript, error) {
	network, err := f.ChainNetwork()
	if err != nil {
		return nil, err
	}
	if network == "" {
		return nil, fmt.Errorf("address %q: %w (the cluster has no wallets)", address, ErrNotFound)
	}
	net, ok := ChainParams(network)
	if !ok {
		return nil, fmt.Errorf("stored chain network %q is unknown", network)
	}
	addr, err := btcutil.DecodeAddress(address, net)
	if err != nil {
		return nil, invalid("address: %q is not a %s address: %v", truncate(address), network, err)
	}
	if !addr.IsForNet(net) {
		return nil, invalid("address: %q is not a %s address", truncate(address), network)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, invalid("address: %q has no output script: %v", truncate(address), err)
	}
	rec, err := f.LookupScript(script)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("address %q: %w", address, ErrNotFound)
	}
	return rec, err
}

// ChainNetwork returns the cluster's chain network ("mainnet", "testnet", "signet" or
// "regtest"), set by its first wallet, or "" while it has no wallet.
func (f *FSM) ChainNetwork() (string, error) {
	var network string
	err := f.view(func(r pebble.Reader) error {
		v, _, err := readValue(r, keyNetwork)
		network = string(v)
		return err
	})
	return network, err
}

// ForEachWatchedScript calls fn with every script in the script table (in the order of their
// SHA-256), stopping at the first error, which it returns. The chain follower builds its
// in-memory index with it at start, then follows Options.OnScriptsWatched. It holds the
// store's read lock throughout: applies go on, a snapshot restore waits. fn may keep script.
func (f *FSM) ForEachWatchedScript(fn func(script []byte) error) error {
	return f.scan([]byte{tagScript}, prefixEnd([]byte{tagScript}), func(_, v []byte) (bool, error) {
		rec := &bankdv1.WatchedScript{}
		if err := proto.Unmarshal(v, rec); err != nil {
			return false, fmt.Errorf("corrupt script record: %w", err)
		}
		if err := fn(rec.Script); err != nil {
			return false, err
		}
		return true, nil
	})
}
