package chainrpc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// ErrBadReply is wrapped by every error about a reply that the node sent but
// that is not acceptable: not JSON-RPC, wrong JSON types, bad hex, a block that
// does not hash to the hash asked for, a merkle root that does not match, and
// so on. Such an error means the node is broken or lying; retrying the same
// call on the same node is unlikely to help.
var ErrBadReply = errors.New("invalid reply from node")

// ErrReplyTooLarge is wrapped when a reply body exceeds Config.MaxReplyBytes.
// It also wraps ErrBadReply.
var ErrReplyTooLarge = fmt.Errorf("%w: reply too large", ErrBadReply)

// badReply returns an error wrapping ErrBadReply with the given detail.
func badReply(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadReply, fmt.Sprintf(format, args...))
}

// JSON-RPC error codes that btcd and bitcoind share (bitcoind's
// src/rpc/protocol.h; btcd's btcjson/jsonrpcerr.go).
const (
	// CodeMisc is a generic error. btcd also uses it for "Block number out
	// of range" in getblockhash.
	CodeMisc = -1
	// CodeNotFound is RPC_INVALID_ADDRESS_OR_KEY, which both nodes use for
	// an unknown block or transaction.
	CodeNotFound = -5
	// CodeInvalidParameter is bitcoind's code for, among others, a block
	// height out of range.
	CodeInvalidParameter = -8
	// CodeDeserialization means the node could not decode what we sent.
	CodeDeserialization = -22
	// CodeVerifyError, CodeVerifyRejected and CodeAlreadyInChain are
	// sendrawtransaction refusals.
	CodeVerifyError    = -25
	CodeVerifyRejected = -26
	CodeAlreadyInChain = -27
	// CodeInWarmup means the node is still starting.
	CodeInWarmup = -28
	// CodeMethodNotFound means the node does not know the method.
	CodeMethodNotFound = -32601
)

// RPCError is an error the node returned in the "error" member of a reply:
// the node understood the call and refused it. The client returns it wrapped
// with the call; use errors.As.
type RPCError struct {
	Method  string // the JSON-RPC method called
	Code    int
	Message string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("node error %d: %s", e.Code, e.Message)
}

// IsNotFound reports whether err is an RPC error meaning that the block or
// transaction asked for is unknown to the node.
func IsNotFound(err error) bool {
	var re *RPCError
	return errors.As(err, &re) && re.Code == CodeNotFound
}

// IsOutOfRange reports whether err is an RPC error meaning that a block
// height is beyond the node's best chain. bitcoind says -8 "Block height out
// of range"; btcd says -1 "Block number out of range".
func IsOutOfRange(err error) bool {
	var re *RPCError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Code {
	case CodeInvalidParameter:
		return strings.Contains(strings.ToLower(re.Message), "out of range")
	case CodeMisc:
		return strings.Contains(strings.ToLower(re.Message), "out of range")
	}
	return false
}

// HTTPError is a reply whose HTTP status is not 200 and whose body is not a
// JSON-RPC error: most often 401 (wrong user or password), 403, 404 (wrong
// URL) or 503 (btcd has too many clients). The client returns it wrapped with
// the call; use errors.As.
type HTTPError struct {
	Method     string // the JSON-RPC method called
	StatusCode int
	// Body is the start of the reply body, for the log.
	Body string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("HTTP %d", e.StatusCode)
	if e.StatusCode == 401 || e.StatusCode == 403 {
		msg += " (check the RPC user and password)"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// NetworkMismatchError is returned by CheckNetwork when the node follows a
// different chain than the one bankd is configured for.
type NetworkMismatchError struct {
	// NodeNetwork is the node's network as far as it could be identified
	// (from its genesis block, else the chain name it reports).
	NodeNetwork string
	NodeChain   string // the chain name from getblockchaininfo
	NodeGenesis chainhash.Hash
	WantNetwork string
	WantGenesis chainhash.Hash
}

func (e *NetworkMismatchError) Error() string {
	return fmt.Sprintf("chainrpc: node is on network %s (chain %q, genesis %s), bankd is configured for %s (genesis %s)",
		e.NodeNetwork, e.NodeChain, e.NodeGenesis, e.WantNetwork, e.WantGenesis)
}
