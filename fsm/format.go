package fsm

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Stored formats. A store starts in FormatBaseline; SWITCH_FORMAT moves every replica to a newer
// one at the same log index, so their states stay equal, and from the next command on they
// write the new layout. Readers accept every layout, since the records written before the
// switch stay as they are:
//
//	m format -> uint32 format, uint64 index of the SWITCH_FORMAT that set it (absent: baseline)
//
// The leader proposes the switch only once every server of the configuration advertises in
// gossip that it reads the new format (node/format.go), so no replica ever meets a layout it
// cannot read. One that does anyway (a log or snapshot from a newer release) stops, as it does
// for an unknown command type: answering with a refusal would leave it in another state than
// the replicas that switched.
const (
	// FormatBaseline writes one history key per entry: h <account> 0x00 <index> <seq>.
	FormatBaseline uint32 = 1
	// FormatGroupedHistory writes one history key per account per command, holding all of
	// that account's entries in the command (history.go). A batch that moves money through
	// one account writes one history key for it instead of one per transfer.
	FormatGroupedHistory uint32 = 2
	// LatestFormat is the newest format this binary writes.
	LatestFormat = FormatGroupedHistory
)

var keyFormat = []byte("mformat")

// Format returns the store's format.
func (f *FSM) Format() uint32 { return f.format.Load() }

func encodeFormat(format uint32, switchedAt uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, format), switchedAt)
}

func decodeFormat(v []byte) (uint32, uint64, error) {
	if len(v) != 12 {
		return 0, 0, fmt.Errorf("corrupt format record: %d bytes, want 12", len(v))
	}
	format, at := binary.BigEndian.Uint32(v), binary.BigEndian.Uint64(v[4:])
	if format < FormatBaseline || format > LatestFormat {
		return 0, 0, fmt.Errorf("the store is in format %d, which this binary (up to %d) does not read: upgrade this node", format, LatestFormat)
	}
	return format, at, nil
}

// loadFormat reads the store's format through tx (the baseline when none is recorded).
func loadFormat(tx *txn) (uint32, uint64, error) {
	v, ok, err := tx.get(keyFormat)
	if err != nil || !ok {
		return FormatBaseline, 0, err
	}
	return decodeFormat(v)
}

// switchFormat applies SWITCH_FORMAT. Asking for the format the store has, or an older one,
// changes nothing, so a leader that proposes it twice (a retry after a failover) is harmless.
// Format 0 is refused on every binary alike; a format newer than this binary's stops it.
func (a *applier) switchFormat(tx *txn, req *bankdv1.SwitchFormatRequest) (proto.Message, error) {
	if req.Format < FormatBaseline {
		return nil, invalid("format: %d is not a stored format", req.Format)
	}
	if req.Format > LatestFormat {
		return nil, fmt.Errorf("the log switches the store to format %d, which this binary (up to %d) does not write: upgrade this node", req.Format, LatestFormat)
	}
	current, at, err := loadFormat(tx)
	if err != nil {
		return nil, err
	}
	if req.Format <= current {
		return &bankdv1.SwitchFormatResponse{Format: current, SwitchedAtIndex: at}, nil
	}
	tx.set(keyFormat, encodeFormat(req.Format, a.index))
	a.format = req.Format
	return &bankdv1.SwitchFormatResponse{Format: req.Format, SwitchedAtIndex: a.index}, nil
}
