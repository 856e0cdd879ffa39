package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Account history is kept in one of two layouts, by the stored format (format.go):
//
//	h <account id> 0x00 <index> <seq> -> HistoryEntry                       (FormatBaseline)
//	G <account id> 0x00 <index> <seq> -> group: the account's entries of command <index>,
//	                                     from the one numbered <seq> on    (FormatGroupedHistory)
//
// A group is a run of (uvarint seq, uvarint length, HistoryEntry) in seq order. A command
// writes each entry as its own log entry, so a rolled-back transfer drops its entries as before;
// the root txn's writeBatch joins an account's entries into one key (groupHistory).
//
// Every index below the switch has its entries under h, every later one under G, so an
// account's history in commit order is its h range, then its G range. A page token is the
// (index, seq) of the last entry returned, in either layout.
const tagHistoryGroup = 'G'

func historyGroupPrefix(id string) []byte { return append(tagged(tagHistoryGroup, id), 0) }

// historyTag is the tag under which a command in format writes its history entries.
func historyTag(format uint32) byte {
	if format >= FormatGroupedHistory {
		return tagHistoryGroup
	}
	return tagHistory
}

// historyPosLen is the length of a history key's position: index and seq.
const historyPosLen = 12

// groupHistory returns the Pebble value of a group: entries are the log entries of one
// account's history in one command, in key order, and every one's key ends in its seq.
func groupHistory(buf []byte, entries []*logEntry) []byte {
	for _, e := range entries {
		seq := binary.BigEndian.Uint32([]byte(e.key[len(e.key)-4:]))
		buf = protowire.AppendVarint(buf, uint64(seq))
		buf = protowire.AppendBytes(buf, e.value)
	}
	return buf
}

// groupSize bounds the length of groupHistory's value for entries.
func groupSize(entries []*logEntry) int {
	n := 0
	for _, e := range entries {
		n += 2*binary.MaxVarintLen32 + len(e.value)
	}
	return n
}

// historyGroupKeyPrefix is how much of a grouped history key names its group: all but the seq.
func historyGroupKeyPrefix(key string) string { return key[:len(key)-4] }

// forEachGroupEntry calls fn with each entry of a group value in order, stopping early when fn
// returns false.
func forEachGroupEntry(v []byte, fn func(seq uint32, entry []byte) (bool, error)) error {
	for len(v) > 0 {
		seq, n := protowire.ConsumeVarint(v)
		if n < 0 || seq > 1<<32-1 {
			return fmt.Errorf("history group: malformed seq")
		}
		v = v[n:]
		entry, m := protowire.ConsumeBytes(v)
		if m < 0 {
			return fmt.Errorf("history group: entry %d truncated", seq)
		}
		v = v[m:]
		more, err := fn(uint32(seq), entry)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// AccountHistory returns an account's entries in commit order after pageToken, and the token
// of the next page ("" on the last).
func (f *FSM) AccountHistory(accountID, pageToken string, pageSize int) ([]*bankdv1.HistoryEntry, string, error) {
	if _, err := f.Account(accountID); err != nil {
		return nil, "", err
	}
	var after []byte // the position (index, seq) of the last entry already returned
	if pageToken != "" {
		pos, err := hex.DecodeString(pageToken)
		if err != nil || len(pos) != historyPosLen {
			return nil, "", invalid("page_token: malformed")
		}
		after = pos
	}
	limit := clampPageSize(pageSize)
	var out []*bankdv1.HistoryEntry
	var last []byte
	more := false
	take := func(pos, v []byte) (bool, error) {
		if len(out) == limit {
			more = true
			return false, nil
		}
		h := &bankdv1.HistoryEntry{}
		if err := proto.Unmarshal(v, h); err != nil {
			return false, fmt.Errorf("corrupt history entry of %q at %x: %w", accountID, pos, err)
		}
		out = append(out, h)
		last = append(last[:0], pos...)
		return true, nil
	}

	// The baseline layout, one key per entry.
	prefix := historyPrefix(accountID)
	lower := prefix
	if after != nil {
		lower = append(append(append([]byte(nil), prefix...), after...), 0)
	}
	err := f.scan(lower, prefixEnd(prefix), func(k, v []byte) (bool, error) { return take(k[len(prefix):], v) })
	if err != nil {
		return nil, "", err
	}

	// The grouped layout, from the group of the token's command on.
	if !more {
		prefix := historyGroupPrefix(accountID)
		lower := prefix
		if after != nil {
			lower = append(append([]byte(nil), prefix...), after[:8]...)
		}
		err := f.scan(lower, prefixEnd(prefix), func(k, v []byte) (bool, error) {
			if len(k) != len(prefix)+historyPosLen {
				return false, fmt.Errorf("corrupt history group key %x", k)
			}
			pos := append(make([]byte, 0, historyPosLen), k[len(prefix):len(prefix)+8]...) // the index
			goOn := true
			err := forEachGroupEntry(v, func(seq uint32, entry []byte) (bool, error) {
				pos = binary.BigEndian.AppendUint32(pos[:8], seq)
				if after != nil && bytes.Compare(pos, after) <= 0 {
					return true, nil
				}
				var err error
				goOn, err = take(pos, entry)
				return goOn, err
			})
			if err != nil {
				return false, fmt.Errorf("history of %q at %x: %w", accountID, k, err)
			}
			return goOn, nil
		})
		if err != nil {
			return nil, "", err
		}
	}
	next := ""
	if more {
		next = hex.EncodeToString(last)
	}
	return out, next, nil
}
