package fsm

import (
	"errors"
	"fmt"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// CommandVersion is the highest Command.version this binary applies.
const CommandVersion = 1

// Limits on what one command may carry.
const (
	MaxTransfersPerCommand = 8000
	MaxIDLen               = 64
	MaxLockNameLen         = 128
	MaxMetadataEntries     = 16
	MaxMetadataKeyLen      = 64
	MaxMetadataValueLen    = 256
	MaxExternalRefLen      = 128
	MinLockTTLMs           = 100
	MaxLockTTLMs           = 3_600_000
	MaxPageSize            = 1000
	DefaultPageSize        = 100
	// MaxEventPageBytes bounds the encoded events one Events call returns (it returns at least
	// one, however large).
	MaxEventPageBytes = 1 << 20
)

// ErrNotFound is returned by reads of a record that does not exist.
var ErrNotFound = errors.New("not found")

// Error is a refusal of a command (or of a request before it is proposed). Code decides the
// RPC status; Message names the field or the rule that was broken.
type Error struct {
	Code    bankdv1.ResultCode
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

func refuse(code bankdv1.ResultCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
