package signer

import (
	"errors"
	"fmt"
	"strconv"
)

// Why Check refuses a batch. Every refusal is a *CheckError whose Kind is one of these, for
// errors.Is.
var (
	// ErrMalformed: the batch record or its PSBT is unusable (does not decode, lacks a field
	// the format requires, is not PLANNED, is already signed, asks for another sighash).
	ErrMalformed = errors.New("malformed batch")
	// ErrTxMismatch: the PSBT's transaction is not the batch record's (inputs, outputs, values,
	// txid, version, locktime or sequences differ).
	ErrTxMismatch = errors.New("transaction differs from the batch record")
	// ErrForeignInput: an input does not spend an output of this wallet's key and descriptor.
	ErrForeignInput = errors.New("input is not the wallet's")
	// ErrChange: an output without a withdrawal is not the wallet's change.
	ErrChange = errors.New("bad change output")
	// ErrPayout: an output does not pay a withdrawal of this batch exactly, or pays one twice.
	ErrPayout = errors.New("output does not pay its withdrawal")
	// ErrFee: the fee is not the record's or is not above zero.
	ErrFee = errors.New("bad fee")
	// ErrFeeCap: the fee is above the signer's absolute or per-vbyte cap.
	ErrFeeCap = errors.New("fee above the signer's cap")
	// ErrDailyLimit: signing would take the day's outflow above the daily limit.
	ErrDailyLimit = errors.New("daily outflow limit")
	// ErrLedgerConflict: the ledger holds this batch or transaction signed with other
	// contents.
	ErrLedgerConflict = errors.New("conflicts with a batch signed before")
)

// Why a key or descriptor is refused at load time.
var (
	// ErrKeyFile: the key file is missing, open to other users, or not one master extended
	// private key of the network.
	ErrKeyFile = errors.New("bad key file")
	// ErrKeyMismatch: the descriptor is not the master key's (fingerprint, origin path or
	// extended public key differ), or is not a supported hot wallet descriptor.
	ErrKeyMismatch = errors.New("descriptor is not the master key's")
)

// ErrSignature: a signature made by Sign did not verify. It never happens with a sound key and
// library; Sign hands nothing out when it does.
var ErrSignature = errors.New("signature does not verify")

// CheckError is a refused batch: which batch, which input or output (-1 when the refusal is
// about the whole batch), why (Kind) and the details.
type CheckError struct {
	BatchID string
	Input   int
	Output  int
	Kind    error
	Reason  string
}

func (e *CheckError) Error() string {
	s := "signer: batch " + strconv.Quote(e.BatchID)
	if e.Input >= 0 {
		s += ": input " + strconv.Itoa(e.Input)
	}
	if e.Output >= 0 {
		s += ": output " + strconv.Itoa(e.Output)
	}
	return s + ": " + e.Kind.Error() + ": " + e.Reason
}

// Unwrap returns Kind, so that errors.Is(err, ErrFeeCap) and the like work.
func (e *CheckError) Unwrap() error { return e.Kind }

func batchErr(batchID string, kind error, format string, args ...any) *CheckError {
	return &CheckError{BatchID: batchID, Input: -1, Output: -1, Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

func inputErr(batchID string, input int, kind error, format string, args ...any) *CheckError {
	e := batchErr(batchID, kind, format, args...)
	e.Input = input
	return e
}

func outputErr(batchID string, output int, kind error, format string, args ...any) *CheckError {
	e := batchErr(batchID, kind, format, args...)
	e.Output = output
	return e
}
