package fsm

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Hand-written encoders for the records a transfer writes: the transfer itself (twice: its
// request hash and its record), two history entries, the accounts it changed and its event
// item. They produce exactly the bytes of proto.MarshalOptions{Deterministic: true}, which the
// stored format and the state hash are made of, without the reflection that cost an eighth of
// the apply path: fields in number order, zero values left out, map entries sorted by key with
// both key and value written, unknown fields last. Strings are checked for UTF-8 as
// proto.Marshal does, so a record it refuses is refused here too. encode_test.go compares them
// with proto.Marshal on random records.

// appendTransfer appends t's deterministic protobuf encoding to b.
func appendTransfer(b []byte, t *bankdv1.Transfer) ([]byte, error) {
	var err error
	b = appendString(b, 1, t.Id, &err)
	b = appendString(b, 2, t.DebitAccountId, &err)
	b = appendString(b, 3, t.CreditAccountId, &err)
	b = appendInt64(b, 4, t.Amount)
	b = appendString(b, 5, t.Currency, &err)
	b = appendUint64(b, 6, uint64(t.Code))
	b = appendString(b, 7, t.ExternalRef, &err)
	b = appendStringMap(b, 8, t.Metadata, &err)
	b = appendBool(b, 9, t.Linked)
	b = appendBool(b, 10, t.Pending)
	b = appendBool(b, 11, t.PostPending)
	b = appendBool(b, 12, t.VoidPending)
	b = appendString(b, 13, t.PendingId, &err)
	b = appendInt64(b, 14, t.TimeoutMs)
	b = appendUint64(b, 20, t.Index)
	b = appendInt64(b, 21, t.CreatedAtUnixMs)
	b = appendInt64(b, 22, int64(t.State))
	b = appendInt64(b, 23, t.PostedAmount)
	b = appendInt64(b, 24, t.ExpiresAtUnixMs)
	b = appendInt64(b, 25, int64(t.Owner))
	b = append(b, t.ProtoReflect().GetUnknown()...)
	if err != nil {
		return nil, fmt.Errorf("transfer %q: %w", t.Id, err)
	}
	return b, nil
}

func sizeTransfer(t *bankdv1.Transfer) int {
	n := sizeString(1, t.Id) + sizeString(2, t.DebitAccountId) + sizeString(3, t.CreditAccountId) +
		sizeInt64(4, t.Amount) + sizeString(5, t.Currency) + sizeUint64(6, uint64(t.Code)) +
		sizeString(7, t.ExternalRef) + sizeStringMap(8, t.Metadata) +
		sizeBool(9, t.Linked) + sizeBool(10, t.Pending) + sizeBool(11, t.PostPending) + sizeBool(12, t.VoidPending) +
		sizeString(13, t.PendingId) + sizeInt64(14, t.TimeoutMs) + sizeUint64(20, t.Index) +
		sizeInt64(21, t.CreatedAtUnixMs) + sizeInt64(22, int64(t.State)) + sizeInt64(23, t.PostedAmount) +
		sizeInt64(24, t.ExpiresAtUnixMs) + sizeInt64(25, int64(t.Owner))
	return n + len(t.ProtoReflect().GetUnknown())
}

// appendBalanceField appends a balance as a field of its parent (tag and length first); a nil
// balance is left out, as proto.Marshal leaves out an unset message field.
func appendBalanceField(b []byte, num protowire.Number, bal *bankdv1.Balance) []byte {
	if bal == nil {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeBalance(bal)))
	b = appendInt64(b, 1, bal.DebitsPosted)
	b = appendInt64(b, 2, bal.CreditsPosted)
	b = appendInt64(b, 3, bal.DebitsPending)
	b = appendInt64(b, 4, bal.CreditsPending)
	b = appendInt64(b, 5, bal.Posted)
	b = appendInt64(b, 6, bal.Available)
	return append(b, bal.ProtoReflect().GetUnknown()...)
}

func sizeBalance(bal *bankdv1.Balance) int {
	return sizeInt64(1, bal.DebitsPosted) + sizeInt64(2, bal.CreditsPosted) + sizeInt64(3, bal.DebitsPending) +
		sizeInt64(4, bal.CreditsPending) + sizeInt64(5, bal.Posted) + sizeInt64(6, bal.Available) +
		len(bal.ProtoReflect().GetUnknown())
}

// historyRecord is a HistoryEntry as changeBalance has it, encoded without building the
// message.
type historyRecord struct {
	transferID string
	index      uint64
	atUnixMs   int64
	change     delta
	after      *bankdv1.Balance
	cause      bankdv1.TransferState
}

// appendHistory appends the deterministic protobuf encoding of the HistoryEntry r describes.
func appendHistory(b []byte, r historyRecord) ([]byte, error) {
	var err error
	b = appendString(b, 1, r.transferID, &err)
	b = appendUint64(b, 2, r.index)
	b = appendInt64(b, 3, r.atUnixMs)
	b = appendInt64(b, 4, r.change.debitsPosted)
	b = appendInt64(b, 5, r.change.creditsPosted)
	b = appendInt64(b, 6, r.change.debitsPending)
	b = appendInt64(b, 7, r.change.creditsPending)
	b = appendBalanceField(b, 8, r.after)
	b = appendInt64(b, 9, int64(r.cause))
	if err != nil {
		return nil, fmt.Errorf("history entry of transfer %q: %w", r.transferID, err)
	}
	return b, nil
}

// appendHistoryEntry appends h's deterministic protobuf encoding to b.
func appendHistoryEntry(b []byte, h *bankdv1.HistoryEntry) ([]byte, error) {
	b, err := appendHistory(b, historyRecord{
		transferID: h.TransferId,
		index:      h.Index,
		atUnixMs:   h.AtUnixMs,
		change:     delta{h.DebitsPostedDelta, h.CreditsPostedDelta, h.DebitsPendingDelta, h.CreditsPendingDelta},
		after:      h.BalanceAfter,
		cause:      h.Cause,
	})
	if err != nil {
		return nil, err
	}
	return append(b, h.ProtoReflect().GetUnknown()...), nil
}

// appendAccount appends acc's deterministic protobuf encoding to b.
func appendAccount(b []byte, acc *bankdv1.Account) ([]byte, error) {
	var err error
	b = appendString(b, 1, acc.Id, &err)
	b = appendString(b, 2, acc.Currency, &err)
	b = appendInt64(b, 3, int64(acc.Kind))
	b = appendBool(b, 4, acc.NonNegative)
	b = appendInt64(b, 5, acc.DailyDebitLimit)
	b = appendStringMap(b, 6, acc.Metadata, &err)
	b = appendBalanceField(b, 10, acc.Balance)
	b = appendInt64(b, 11, acc.CreatedAtUnixMs)
	b = appendUint64(b, 12, acc.CreatedIndex)
	b = appendInt64(b, 13, int64(acc.Owner))
	b = append(b, acc.ProtoReflect().GetUnknown()...)
	if err != nil {
		return nil, fmt.Errorf("account %q: %w", acc.Id, err)
	}
	return b, nil
}

// appendEvent appends ev's deterministic protobuf encoding to b. Transfer items, nearly all of
// a ledger's events, are encoded here; any other item by proto.Marshal.
func appendEvent(b []byte, ev *bankdv1.Event) ([]byte, error) {
	b = appendUint64(b, 1, ev.Index)
	b = appendInt64(b, 2, ev.AtUnixMs)
	for _, item := range ev.Items {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		t, ok := item.Kind.(*bankdv1.EventItem_Transfer)
		if !ok || t.Transfer == nil || len(item.ProtoReflect().GetUnknown()) > 0 {
			v, err := marshal.Marshal(item)
			if err != nil {
				return nil, fmt.Errorf("marshal event item: %w", err)
			}
			b = protowire.AppendBytes(b, v)
			continue
		}
		n := sizeTransfer(t.Transfer)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(2)+protowire.SizeBytes(n)))
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		var err error
		if b, err = appendTransfer(b, t.Transfer); err != nil {
			return nil, err
		}
	}
	return append(b, ev.ProtoReflect().GetUnknown()...), nil
}

func appendString(b []byte, num protowire.Number, s string, err *error) []byte {
	if s == "" {
		return b
	}
	if !utf8.ValidString(s) && *err == nil {
		*err = fmt.Errorf("field %d: string is not valid UTF-8", num)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendInt64(b []byte, num protowire.Number, v int64) []byte {
	return appendUint64(b, num, uint64(v))
}

func sizeInt64(num protowire.Number, v int64) int { return sizeUint64(num, uint64(v)) }

func appendUint64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func sizeUint64(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return append(protowire.AppendTag(b, num, protowire.VarintType), 1)
}

func sizeBool(num protowire.Number, v bool) int {
	if !v {
		return 0
	}
	return protowire.SizeTag(num) + 1
}

// appendStringMap writes a map<string, string> field: one entry per key, in key order, each
// with its key (1) and value (2) written even when empty.
func appendStringMap(b []byte, num protowire.Number, m map[string]string, err *error) []byte {
	if len(m) == 0 {
		return b
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		if (!utf8.ValidString(k) || !utf8.ValidString(v)) && *err == nil {
			*err = fmt.Errorf("field %d: map entry is not valid UTF-8", num)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeMapEntry(k, v)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

func sizeMapEntry(k, v string) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
}

func sizeStringMap(num protowire.Number, m map[string]string) int {
	n := 0
	for k, v := range m {
		n += protowire.SizeTag(num) + protowire.SizeBytes(sizeMapEntry(k, v))
	}
	return n
}

// encodeProto is marshal.Marshal for the records above and proto.Marshal's deterministic
// encoding for any other message.
func encodeProto(m proto.Message) ([]byte, error) {
	switch m := m.(type) {
	case *bankdv1.HistoryEntry:
		return appendHistoryEntry(make([]byte, 0, 96), m)
	case *bankdv1.Event:
		return appendEvent(make([]byte, 0, 32+160*len(m.Items)), m)
	case *bankdv1.Account:
		return appendAccount(make([]byte, 0, 128), m)
	case *bankdv1.Transfer:
		return appendTransfer(make([]byte, 0, sizeTransfer(m)), m)
	}
	return marshal.Marshal(m)
}
