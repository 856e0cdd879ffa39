package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// The Pebble keyspace. Every key starts with a one-byte table tag so that each table is one
// contiguous range; integers inside keys are big-endian so that byte order is numeric order.
//
//	m applied                      -> uint64 last applied Raft index
//	m now                          -> int64 cluster time, unix ms
//	a <account id>                 -> Account (with its balance)
//	d <account id>                 -> dailyDebits (UTC day of cluster time, total)
//	t <transfer id>                -> sha256(request) || Transfer
//	x <expires_at ms> <transfer>   -> empty: pending transfers by expiry
//	h <account id> 0x00 <index> <seq> -> HistoryEntry (G: a group of them; history.go)
//	l <lock name>                  -> Lock
//	e <index>                      -> Event
//
// Wallets and deposit addresses (wallet.go):
//
//	m network                      -> the cluster's chain network, set by the first wallet
//	m deposit-wallet               -> id of the only DEPOSIT wallet; empty once there are several
//	w <wallet id>                  -> Wallet: the definition, never changed after creation
//	c <wallet id>                  -> per branch: uint32 next_index, uint32 watched_end
//	s <sha256(script)>             -> WatchedScript: every script any wallet watches, handed out or look-ahead
//	p <account id> 0x00 <index> <seq> -> DepositAddress: an account's addresses in allocation order
//	q <request id>                 -> DepositAddress: what NewDepositAddress request_id allocated
const (
	tagMeta     = 'm'
	tagAccount  = 'a'
	tagDaily    = 'd'
	tagTransfer = 't'
	tagExpiry   = 'x'
	tagHistory  = 'h'
	tagLock     = 'l'
	tagEvent    = 'e'

	tagWallet         = 'w'
	tagWalletBranches = 'c'
	tagScript         = 's'
	tagDepositAddress = 'p'
	tagDepositRequest = 'q'
)

var (
	keyApplied = []byte("mapplied")
	keyNow     = []byte("mnow")

	keyNetwork        = []byte("mnetwork")
	keyDepositDefault = []byte("mdeposit-wallet")
)

func tagged(tag byte, s string) []byte {
	k := make([]byte, 0, 1+len(s))
	k = append(k, tag)
	return append(k, s...)
}

func accountKey(id string) []byte    { return tagged(tagAccount, id) }
func dailyKey(id string) []byte      { return tagged(tagDaily, id) }
func transferKey(id string) []byte   { return tagged(tagTransfer, id) }
func lockKey(name string) []byte     { return tagged(tagLock, name) }
func eventKey(index uint64) []byte   { return binary.BigEndian.AppendUint64([]byte{tagEvent}, index) }
func historyPrefix(id string) []byte { return append(tagged(tagHistory, id), 0) }

// historyKeyLen is the length of an account's history keys.
func historyKeyLen(id string) int { return 1 + len(id) + 1 + 8 + 4 }

// appendHistoryKey appends the key of an account's history entry (or, under tagHistoryGroup,
// of the group that starts with it; history.go).
func appendHistoryKey(b []byte, tag byte, id string, index uint64, seq uint32) []byte {
	b = append(append(append(b, tag), id...), 0)
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(b, index), seq)
}

func walletKey(id string) []byte         { return tagged(tagWallet, id) }
func walletBranchesKey(id string) []byte { return tagged(tagWalletBranches, id) }
func depositRequestKey(id string) []byte { return tagged(tagDepositRequest, id) }
func depositAddressPrefix(accountID string) []byte {
	return append(tagged(tagDepositAddress, accountID), 0)
}

func depositAddressKey(accountID string, index uint64, seq uint32) []byte {
	k := depositAddressPrefix(accountID)
	k = binary.BigEndian.AppendUint64(k, index)
	return binary.BigEndian.AppendUint32(k, seq)
}

// scriptKey keys the script table by the SHA-256 of the script, so that keys have one length
// whatever the script type and a block's outputs are looked up by hash.
func scriptKey(script []byte) []byte {
	sum := sha256.Sum256(script)
	return append([]byte{tagScript}, sum[:]...)
}

func expiryKey(expiresAtMs int64, transferID string) []byte {
	k := binary.BigEndian.AppendUint64([]byte{tagExpiry}, uint64(expiresAtMs))
	return append(k, transferID...)
}

func parseExpiryKey(k []byte) (expiresAtMs int64, transferID string, err error) {
	if len(k) < 9 || k[0] != tagExpiry {
		return 0, "", fmt.Errorf("malformed expiry key %x", k)
	}
	return int64(binary.BigEndian.Uint64(k[1:9])), string(k[9:]), nil
}

// prefixEnd returns the first key after every key that starts with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("want 8 bytes, have %d", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
