package signer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Limits of the ledger file.
const (
	// ledgerRetentionDays is how many UTC days (today included) the ledger keeps. A batch
	// signed again after that is counted again, which errs on the safe side.
	ledgerRetentionDays = 31
	// maxLedgerBatchesPerDay bounds one day's entries (and so the file).
	maxLedgerBatchesPerDay = 10_000
	// maxLedgerBytes bounds the file read at start.
	maxLedgerBytes = 32 << 20
	// ledgerVersion is the file format's version.
	ledgerVersion = 1
)

// dayLayout names a UTC day in the ledger.
const dayLayout = time.DateOnly

// Ledger is the signer's record of what it signed: per UTC day, the batches with their
// transaction and outflow, so that the daily limit holds across restarts and a batch signed
// again (a retried submission) is not counted twice. It lives in a small JSON file rewritten
// atomically (temporary file, fsync, rename, fsync of the directory) on every change.
//
// A Ledger is safe for concurrent use; two processes must not share a file.
type Ledger struct {
	path string
	mu   sync.Mutex
	// days are in ascending order, at most one per day.
	days []ledgerDay
}

type ledgerFile struct {
	Version int         `json:"version"`
	Days    []ledgerDay `json:"days"`
}

type ledgerDay struct {
	// Day is the UTC date, YYYY-MM-DD.
	Day     string        `json:"day"`
	Batches []ledgerEntry `json:"batches"`
}

// ledgerEntry is one signed batch.
type ledgerEntry struct {
	BatchID string `json:"batch_id"`
	Txid    string `json:"txid"`
	// OutflowSat is the sum of the batch's withdrawal outputs (change excluded).
	OutflowSat int64 `json:"outflow_sat"`
	// InputsSHA256 digests the outpoints and values the inputs were signed with.
	InputsSHA256 string `json:"inputs_sha256"`
	SignedUnixMs int64  `json:"signed_unix_ms"`
}

// OpenLedger reads the ledger at path, or starts an empty one when the file does not exist
// (the file is created on the first signature). A file that exists but cannot be read or
// parsed is an error: a limit counter is never silently reset.
func OpenLedger(path string) (*Ledger, error) {
	l := &Ledger{path: path}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open signer ledger: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLedgerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read signer ledger %s: %w", path, err)
	}
	if len(b) > maxLedgerBytes {
		return nil, fmt.Errorf("signer ledger %s is larger than %d bytes", path, maxLedgerBytes)
	}
	var lf ledgerFile
	if err := json.Unmarshal(b, &lf); err != nil {
		return nil, fmt.Errorf("parse signer ledger %s: %w", path, err)
	}
	if err := lf.validate(); err != nil {
		return nil, fmt.Errorf("signer ledger %s: %w", path, err)
	}
	l.days = lf.Days
	return l, nil
}

func (lf *ledgerFile) validate() error {
	if lf.Version != ledgerVersion {
		return fmt.Errorf("version %d, this signer reads version %d", lf.Version, ledgerVersion)
	}
	prev := ""
	for _, d := range lf.Days {
		if _, err := time.Parse(dayLayout, d.Day); err != nil {
			return fmt.Errorf("day %q: %w", d.Day, err)
		}
		if d.Day <= prev {
			return fmt.Errorf("day %s is listed out of order or twice", d.Day)
		}
		prev = d.Day
		if len(d.Batches) > maxLedgerBatchesPerDay {
			return fmt.Errorf("day %s lists more than %d batches", d.Day, maxLedgerBatchesPerDay)
		}
		for _, e := range d.Batches {
			if e.BatchID == "" || e.Txid == "" || e.OutflowSat < 0 {
				return fmt.Errorf("day %s: an entry lacks its batch id or txid or has a negative outflow", d.Day)
			}
		}
	}
	return nil
}

// Path returns the ledger's file.
func (l *Ledger) Path() string { return l.path }

// OutflowSat returns the outflow signed on the UTC day of t.
func (l *Ledger) OutflowSat(t time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outflowLocked(t.UTC().Format(dayLayout))
}

func (l *Ledger) outflowLocked(day string) int64 {
	var sum int64
	for _, d := range l.days {
		if d.Day == day {
			for _, e := range d.Batches {
				sum += e.OutflowSat
			}
		}
	}
	return sum
}

// find returns the entry of batchID or of txid, if the ledger holds one.
func (l *Ledger) findLocked(batchID, txid string) (ledgerEntry, bool) {
	for _, d := range l.days {
		for _, e := range d.Batches {
			if e.BatchID == batchID || e.Txid == txid {
				return e, true
			}
		}
	}
	return ledgerEntry{}, false
}

// sameInputsLocked returns an entry signed with the same inputs and input values, if any.
func (l *Ledger) sameInputsLocked(inputsSHA256 string) (ledgerEntry, bool) {
	for _, d := range l.days {
		for _, e := range d.Batches {
			if e.InputsSHA256 == inputsSHA256 {
				return e, true
			}
		}
	}
	return ledgerEntry{}, false
}

// admit decides whether e may be signed at now under limitSat: nil and counted=true when the
// ledger already holds the same batch and transaction, or a batch with the same inputs paying
// out at least as much (signing adds no outflow), nil
// and counted=false when it fits, an error when it conflicts with an entry or exceeds the
// limit.
func (l *Ledger) admitLocked(e ledgerEntry, now time.Time, limitSat int64) (counted bool, err error) {
	if old, ok := l.findLocked(e.BatchID, e.Txid); ok {
		switch {
		case old.Txid != e.Txid:
			return false, batchErr(e.BatchID, ErrLedgerConflict, "the ledger holds batch %s signed as transaction %s, not %s", old.BatchID, old.Txid, e.Txid)
		case old.InputsSHA256 != e.InputsSHA256:
			return false, batchErr(e.BatchID, ErrLedgerConflict, "transaction %s was signed before (batch %s) with other input values", e.Txid, old.BatchID)
		}
		return true, nil
	}
	// A fee bump (bankd's PAYOUT_BUMP) spends exactly the inputs of a batch signed before, so at
	// most one of the two can confirm: its withdrawals are not counted again unless it pays out
	// more.
	if old, ok := l.sameInputsLocked(e.InputsSHA256); ok && e.OutflowSat <= old.OutflowSat {
		return true, nil
	}
	day := now.UTC().Format(dayLayout)
	signed := l.outflowLocked(day)
	if e.OutflowSat > limitSat-signed {
		return false, batchErr(e.BatchID, ErrDailyLimit, "outflow %d sat with %d sat signed on %s exceeds the daily limit of %d sat", e.OutflowSat, signed, day, limitSat)
	}
	if n := l.batchesLocked(day); n >= maxLedgerBatchesPerDay {
		return false, batchErr(e.BatchID, ErrDailyLimit, "%d batches were signed on %s, the most a day may hold", n, day)
	}
	return false, nil
}

func (l *Ledger) batchesLocked(day string) int {
	for _, d := range l.days {
		if d.Day == day {
			return len(d.Batches)
		}
	}
	return 0
}

// admit reports whether e may be signed now, without recording it.
func (l *Ledger) admit(e ledgerEntry, now time.Time, limitSat int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.admitLocked(e, now, limitSat)
	return err
}

// record admits e and, unless it was counted before, adds it to now's day and writes the file.
// When the write fails nothing is recorded and the error is returned.
func (l *Ledger) record(e ledgerEntry, now time.Time, limitSat int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	counted, err := l.admitLocked(e, now, limitSat)
	if err != nil || counted {
		return err
	}
	day := now.UTC().Format(dayLayout)
	oldest := now.UTC().AddDate(0, 0, -(ledgerRetentionDays - 1)).Format(dayLayout)
	next := make([]ledgerDay, 0, len(l.days)+1)
	found := false
	for _, d := range l.days {
		if d.Day < oldest {
			continue
		}
		if d.Day == day {
			d.Batches = append(slices.Clip(d.Batches), e)
			found = true
		}
		next = append(next, d)
	}
	if !found {
		next = append(next, ledgerDay{Day: day, Batches: []ledgerEntry{e}})
		slices.SortFunc(next, func(a, b ledgerDay) int {
			switch {
			case a.Day < b.Day:
				return -1
			case a.Day > b.Day:
				return 1
			}
			return 0
		})
	}
	if err := l.writeLocked(next); err != nil {
		return err
	}
	l.days = next
	return nil
}

func (l *Ledger) writeLocked(days []ledgerDay) error {
	b, err := json.MarshalIndent(ledgerFile{Version: ledgerVersion, Days: days}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode signer ledger: %w", err)
	}
	if err := writeFileAtomic(l.path, append(b, '\n')); err != nil {
		return fmt.Errorf("write signer ledger: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that a crash leaves either the old file or the
// new one: a temporary file in the same directory, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}
