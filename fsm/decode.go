package fsm

import (
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// A hand-written decoder for the body of CREATE_TRANSFERS, the one command whose size grows
// with the load: proto.Unmarshal allocates every transfer and each of its strings, three to
// four allocations per transfer. This one allocates the transfers of a command in one array and
// hands out strings that point into the body (which the command envelope's decoding copied
// and nothing writes again), so a command costs three allocations however many transfers it
// holds.
//
// It decodes only the common shape: transfers without metadata, every field with the wire type
// its number has, strings in UTF-8, and no fence or unknown field. Anything else, malformed
// input included, makes it give up, and the command is decoded by proto.Unmarshal as before,
// which keeps the refusals and their messages what they were. Where it does decode, it gives
// what proto.Unmarshal gives, which decode_test.go checks on random and fuzzed input.

// Field numbers of CreateTransfersRequest and Transfer (proto/bankd/v1/ledger.proto).
const (
	fieldRequestTransfers = 1

	fieldTransferID              = 1
	fieldTransferDebitAccountID  = 2
	fieldTransferCreditAccountID = 3
	fieldTransferAmount          = 4
	fieldTransferCurrency        = 5
	fieldTransferCode            = 6
	fieldTransferExternalRef     = 7
	fieldTransferLinked          = 9
	fieldTransferPending         = 10
	fieldTransferPostPending     = 11
	fieldTransferVoidPending     = 12
	fieldTransferPendingID       = 13
	fieldTransferTimeoutMs       = 14
	fieldTransferIndex           = 20
	fieldTransferCreatedAt       = 21
	fieldTransferState           = 22
	fieldTransferPostedAmount    = 23
	fieldTransferExpiresAt       = 24
	fieldTransferOwner           = 25
)

// decodeCreateTransfers decodes body as a CreateTransfersRequest of the common shape, or
// returns ok=false for proto.Unmarshal to decode.
func decodeCreateTransfers(body []byte) (req *bankdv1.CreateTransfersRequest, ok bool) {
	count, ok := countTransfers(body)
	if !ok {
		return nil, false
	}
	req = &bankdv1.CreateTransfersRequest{}
	if count == 0 {
		return req, true
	}
	records := make([]bankdv1.Transfer, count)
	req.Transfers = make([]*bankdv1.Transfer, count)
	for i := range req.Transfers {
		_, _, n := protowire.ConsumeTag(body)
		msg, m := protowire.ConsumeBytes(body[n:])
		if !decodeTransfer(msg, &records[i]) {
			return nil, false
		}
		req.Transfers[i] = &records[i]
		body = body[n+m:]
	}
	return req, true
}

// countTransfers checks that body holds only transfers, each a well-formed length-delimited
// field, and counts them.
func countTransfers(body []byte) (int, bool) {
	count := 0
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || num != fieldRequestTransfers || typ != protowire.BytesType {
			return 0, false
		}
		_, m := protowire.ConsumeBytes(body[n:])
		if m < 0 {
			return 0, false
		}
		body = body[n+m:]
		count++
	}
	return count, true
}

// decodeTransfer decodes msg into t, which must be zero, or returns false.
func decodeTransfer(msg []byte, t *bankdv1.Transfer) bool {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return false
		}
		msg = msg[n:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 || !utf8.Valid(v) {
				return false
			}
			msg = msg[m:]
			s := bodyString(v)
			switch num {
			case fieldTransferID:
				t.Id = s
			case fieldTransferDebitAccountID:
				t.DebitAccountId = s
			case fieldTransferCreditAccountID:
				t.CreditAccountId = s
			case fieldTransferCurrency:
				t.Currency = s
			case fieldTransferExternalRef:
				t.ExternalRef = s
			case fieldTransferPendingID:
				t.PendingId = s
			default:
				return false // metadata (8), or a field this decoder does not know
			}
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return false
			}
			msg = msg[m:]
			switch num {
			case fieldTransferAmount:
				t.Amount = int64(v)
			case fieldTransferCode:
				t.Code = uint32(v)
			case fieldTransferLinked:
				t.Linked = protowire.DecodeBool(v)
			case fieldTransferPending:
				t.Pending = protowire.DecodeBool(v)
			case fieldTransferPostPending:
				t.PostPending = protowire.DecodeBool(v)
			case fieldTransferVoidPending:
				t.VoidPending = protowire.DecodeBool(v)
			case fieldTransferTimeoutMs:
				t.TimeoutMs = int64(v)
			case fieldTransferIndex:
				t.Index = v
			case fieldTransferCreatedAt:
				t.CreatedAtUnixMs = int64(v)
			case fieldTransferState:
				t.State = bankdv1.TransferState(int32(v))
			case fieldTransferPostedAmount:
				t.PostedAmount = int64(v)
			case fieldTransferExpiresAt:
				t.ExpiresAtUnixMs = int64(v)
			case fieldTransferOwner:
				t.Owner = bankdv1.Owner(int32(v))
			default:
				return false
			}
		default:
			return false
		}
	}
	return true
}

// bodyString returns b as a string without a copy: b is part of a command's body, which
// nothing writes after it is decoded.
func bodyString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
