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
	MaxAccountsPerCommand  = 8000
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

// CommandTypes is the set of command types this binary applies, as a bit mask (bit t for
// CommandType t): what a node advertises, so that the leader proposes a type only once every
// server of the configuration applies it.
func CommandTypes() uint64 {
	var mask uint64
	for t := range commandBodies {
		if t > 0 && t < 64 {
			mask |= 1 << uint(t)
		}
	}
	return mask
}

// BaselineCommandTypes are the types every bankd since the payouts release applies (1 to
// PAYOUT_BUMP, 28): a node that advertises no set is taken to apply these, and the leader
// proposes them without asking. Types added later are gated.
const BaselineCommandTypes uint64 = (1<<29 - 1) &^ 1
