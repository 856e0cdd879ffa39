package fsm

import (
	"encoding/binary"
	"fmt"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Problems. Fail-stop is for a store that is broken (a record that does not decode, an index
// naming what is not there) and for command types this binary does not know. A driver's command
// that meets a valid but unexpected state — a transfer id already taken, a pending transfer
// someone else resolved, a credit the ledger refuses — must not stop the state machine: every
// replica would stop at the same index, and again after every restart. Nor may it be refused as a
// whole when the driver would only propose it again (a block, a batch of settlements): the
// driver would be stuck there for good. So the command applies what it can, and records a
// Problem for the part it could not: a record under its own key, an event item, and a counter
// the metrics read without a scan.
//
//	y <index> <seq>   -> Problem
//	m problems        -> uint64 problems recorded so far

const tagProblem = 'y'

var keyProblemCount = []byte("mproblems")

func problemKey(index uint64, seq uint32) []byte {
	k := binary.BigEndian.AppendUint64([]byte{tagProblem}, index)
	return binary.BigEndian.AppendUint32(k, seq)
}

// MaxProblemMessageLen bounds a problem's message; longer ones are cut.
const MaxProblemMessageLen = 1024

// problem records that this command met an unexpected state about subject (e.g. "deposit
// <txid>:<vout>") and applied around it. It is kept only if the command commits.
func (a *applier) problem(subject, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > MaxProblemMessageLen {
		msg = msg[:MaxProblemMessageLen]
	}
	p := &bankdv1.Problem{
		Index: a.index, Seq: uint32(len(a.problems)), AtUnixMs: a.now,
		Owner: a.owner, CommandType: a.cmdType, Subject: subject, Message: msg,
	}
	a.problems = append(a.problems, p)
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Problem{Problem: p}})
}

// writeProblems stores the problems of a command that committed and counts them.
func (a *applier) writeProblems() error {
	if len(a.problems) == 0 {
		return nil
	}
	for _, p := range a.problems {
		if err := putProto(a.root, problemKey(p.Index, p.Seq), p); err != nil {
			return err
		}
	}
	n, err := loadProblemCount(a.root)
	if err != nil {
		return err
	}
	a.root.set(keyProblemCount, encodeUint64(n+uint64(len(a.problems))))
	return nil
}

func loadProblemCount(tx *txn) (uint64, error) {
	v, found, err := tx.get(keyProblemCount)
	if err != nil || !found {
		return 0, err
	}
	n, err := decodeUint64(v)
	if err != nil {
		return 0, fmt.Errorf("corrupt problem count: %w", err)
	}
	return n, nil
}

// ProblemCount returns how many problems have been recorded, with one read.
func (f *FSM) ProblemCount() (uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return 0, fmt.Errorf("state machine is closed")
	}
	n, err := f.readUint64(keyProblemCount)
	if err != nil {
		return 0, fmt.Errorf("read problem count: %w", err)
	}
	return n, nil
}

// ListProblems returns recorded problems, oldest first, after pageToken, and the token of the
// next page ("" on the last page).
func (f *FSM) ListProblems(pageToken string, pageSize int) ([]*bankdv1.Problem, string, error) {
	return readPage(f, []byte{tagProblem}, 12, pageToken, pageSize,
		func() *bankdv1.Problem { return &bankdv1.Problem{} }, "problem", nil)
}
