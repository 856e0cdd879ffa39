package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
)

// Options configure an FSM.
type Options struct {
	Logger *slog.Logger
	// Fatal is called when the state machine must stop: an entry it cannot decode or apply, or
	// a broken store. The default logs and exits the process with status 2, because going on
	// would let this replica diverge from the others.
	Fatal func(error)
	// OnScriptsWatched, when set, is called after each committed batch that added scripts to
	// the script table (wallet creation, address allocation, look-ahead extension), with those
	// scripts in apply order. It runs on the apply goroutine before readers are woken, so it
	// must be quick and must not call back into Apply; it lets the chain follower keep an
	// in-memory index in step with the store (built at start with ForEachWatchedScript). It is
	// not called for a Restore, which replaces the whole store: rebuild the index from
	// ForEachWatchedScript after one. The slices must not be modified.
	OnScriptsWatched func(scripts [][]byte)
	// OnApplied, when set, is called after each ApplyBatch that committed entries to the
	// store, with what Pebble's commit cost. It runs on the apply goroutine and must be quick;
	// the node feeds its metrics and its slow-apply warning from it.
	OnApplied func(ApplyStats)
}

// ApplyStats describes one ApplyBatch that committed entries to the store. Its durations are
// Pebble's own commit statistics: the state machine never reads a clock.
type ApplyStats struct {
	// Entries is the number of Raft entries applied (replays of applied entries not counted).
	Entries int
	// Commit is Pebble's commit of the batch: inserting it into the memtable and writing it to
	// Pebble's WAL (not synced), with any wait for room, such as a new memtable.
	Commit time.Duration
	// Stalled is the part of Commit spent in Pebble's write stalls: waiting for a memtable
	// flush, or for compactions to bring the number of level-0 files down.
	Stalled time.Duration
}

// FSM is the replicated state machine. Apply, ApplyBatch, Snapshot and Restore are called by
// Raft from one goroutine; the read methods may be called concurrently from anywhere.
type FSM struct {
	dir              string
	logger           *slog.Logger
	fatal            func(error)
	onScriptsWatched func([][]byte)
	onApplied        func(ApplyStats)

	// mu guards db: reads and applies hold it shared, Restore holds it exclusively while it
	// swaps the store.
	mu sync.RWMutex
	db *pebble.DB
	// accounts is every account in the store, decoded (accounts_resident.go). Only the apply
	// path reads it, under mu like db; Open and Restore build it.
	accounts *accountTable
	// transfers filters the ids of stored transfers (transfer_filter.go), like accounts.
	transfers *transferFilter
	// writes buffers each command's writes (txn.go); only ApplyBatch uses it, one command at a
	// time, and it keeps its memory from one command to the next.
	writes *writeLog

	// snapshots tracks the Pebble snapshots open on the store (Raft's and backups'), which
	// Restore must not close the store under.
	snapshots *snapshotRegistry

	applied atomic.Uint64
	nowMs   atomic.Int64
	halted  atomic.Bool
	// format is the stored format the next command writes (format.go).
	format atomic.Uint32

	changedMu sync.Mutex
	changed   chan struct{}
}

var marshal = proto.MarshalOptions{Deterministic: true}

const (
	dbDirName      = "db"
	restoreDirName = "db.restore"
	oldDirName     = "db.old"
	restoreMarker  = "RESTORE-COMPLETE"
)

// Open opens (or creates) the state machine stored under dir.
func Open(dir string, opts Options) (*FSM, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &FSM{dir: dir, logger: opts.Logger, fatal: opts.Fatal, onScriptsWatched: opts.OnScriptsWatched, onApplied: opts.OnApplied, changed: make(chan struct{}),
		snapshots: newSnapshotRegistry(), writes: newWriteLog()}
	if f.fatal == nil {
		f.fatal = func(err error) {
			f.logger.Error("state machine stopped: refusing to go on", "err", err)
			os.Exit(2)
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create fsm dir %s: %w", dir, err)
	}
	if err := finishInterruptedRestore(dir); err != nil {
		return nil, err
	}
	db, err := openPebble(filepath.Join(dir, dbDirName))
	if err != nil {
		return nil, err
	}
	f.db = db
	if err := f.loadMeta(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return f, nil
}

// Pebble's sizes. Pebble takes the memory of its memtables out of the block cache (a memtable
// reserves its size there while it lives), so the cache is made that much larger than the part
// meant for blocks: with a 128 MiB cache and two 64 MiB memtables, nothing was left for blocks,
// and every lookup of a transfer id read index and filter blocks from disk.
const (
	memTableSize     = 64 << 20
	memTablesAtOnce  = 3 // the mutable one, one being flushed, one spare
	blockCacheTarget = 256 << 20
)

func openPebble(path string) (*pebble.DB, error) {
	opts := &pebble.Options{
		Logger:       quietPebbleLogger{},
		MemTableSize: memTableSize,
		Cache:        pebble.NewCache(blockCacheTarget + memTablesAtOnce*memTableSize),
	}
	defer opts.Cache.Unref()
	// Every new transfer id is first looked up to catch retries, and nearly all of those
	// lookups miss: Bloom filters answer a miss without reading table blocks.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("open pebble at %s: %w", path, err)
	}
	return db, nil
}

// finishInterruptedRestore completes a Restore that crashed between building the new store
// and swapping it in. A restore dir without its completion marker is incomplete and dropped.
func finishInterruptedRestore(dir string) error {
	cur := filepath.Join(dir, dbDirName)
	restore := filepath.Join(dir, restoreDirName)
	old := filepath.Join(dir, oldDirName)
	if _, err := os.Stat(filepath.Join(restore, restoreMarker)); err == nil {
		if _, err := os.Stat(cur); err == nil {
			if err := os.RemoveAll(old); err != nil {
				return fmt.Errorf("remove %s: %w", old, err)
			}
			if err := os.Rename(cur, old); err != nil {
				return fmt.Errorf("move aside %s: %w", cur, err)
			}
		}
		if err := os.Remove(filepath.Join(restore, restoreMarker)); err != nil {
			return fmt.Errorf("remove restore marker: %w", err)
		}
		if err := os.Rename(restore, cur); err != nil {
			return fmt.Errorf("promote restored store: %w", err)
		}
	}
	for _, stale := range []string{restore, old} {
		if err := os.RemoveAll(stale); err != nil {
			return fmt.Errorf("remove %s: %w", stale, err)
		}
	}
	return nil
}

func (f *FSM) loadMeta() error {
	start := time.Now()
	applied, err := f.readUint64(keyApplied)
	if err != nil {
		return fmt.Errorf("read applied index: %w", err)
	}
	now, err := f.readUint64(keyNow)
	if err != nil {
		return fmt.Errorf("read cluster time: %w", err)
	}
	accounts, err := loadResidentAccounts(f.db)
	if err != nil {
		return err
	}
	transfers, err := loadTransferFilter(f.db)
	if err != nil {
		return err
	}
	format := FormatBaseline
	if v, closer, err := f.db.Get(keyFormat); err == nil {
		format, _, err = decodeFormat(v)
		closer.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("read the stored format: %w", err)
	}
	f.format.Store(format)
	f.applied.Store(applied)
	f.nowMs.Store(int64(now))
	f.accounts, f.transfers = accounts, transfers
	// What a start (or a restore) costs grows with the state; operators planning a rolling
	// upgrade read it here.
	f.logger.Info("state machine loaded", "applied_index", applied, "stored_format", format,
		"accounts", accounts.len(), "transfer_ids", transfers.ids(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (f *FSM) readUint64(key []byte) (uint64, error) {
	v, closer, err := f.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return decodeUint64(v)
}

// Close closes the store. The FSM must not be used afterwards.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.db.Close()
	f.db = nil
	if err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

// AppliedIndex is the last Raft index whose effects are in the store.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// NowUnixMs is cluster time: the largest leader stamp applied so far.
func (f *FSM) NowUnixMs() int64 { return f.nowMs.Load() }

// Changed returns a channel that is closed after the next apply or restore.
func (f *FSM) Changed() <-chan struct{} {
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	return f.changed
}

func (f *FSM) notifyChanged() {
	f.changedMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.changedMu.Unlock()
}

// WaitApplied blocks until the applied index reaches index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := f.Changed()
		if f.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for applied index %d (at %d): %w", index, f.AppliedIndex(), ctx.Err())
		}
	}
}

// Apply applies one Raft entry. See ApplyBatch.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed Raft entries in one Pebble batch. Each command's effects are
// buffered and only reach the batch if the command succeeds, so a refused command changes
// nothing but the applied index. Entries at or below the stored applied index are replays
// after a restart and are skipped. The result for a command is its response message or an
// *Error; other entries get nil.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	if f.halted.Load() {
		f.fatal(errors.New("state machine halted earlier; refusing further entries"))
		return results
	}
	f.mu.RLock()
	defer f.mu.RUnlock()

	b := f.db.NewIndexedBatch()
	defer b.Close()
	applied := f.applied.Load()
	now := f.nowMs.Load()
	format := f.format.Load()
	resident := &residentState{committed: f.accounts, batch: make(map[string]*residentAccount), transfers: f.transfers}
	var watched [][]byte
	entries := 0
	for i, l := range logs {
		// failpoint skip-applied-index-check: apply replayed entries a second time.
		if l.Index <= applied && !failpoint.Enabled(failpoint.SkipAppliedIndexCheck) {
			continue
		}
		if l.Type == raft.LogCommand {
			a := &applier{root: newRootTxn(b, resident, f.writes), index: l.Index, term: l.Term, now: now, format: format}
			res, err := a.apply(l.Data)
			if err != nil {
				f.halt(fmt.Errorf("apply raft index %d: %w", l.Index, err))
				return results
			}
			results[i] = res
			now, format = a.now, a.format
			watched = append(watched, a.watched...)
		}
		applied = l.Index
		entries++
	}
	if applied == f.applied.Load() {
		return results
	}
	if err := b.Set(keyApplied, encodeUint64(applied), nil); err != nil {
		f.halt(fmt.Errorf("record applied index: %w", err))
		return results
	}
	if err := b.Set(keyNow, encodeUint64(uint64(now)), nil); err != nil {
		f.halt(fmt.Errorf("record cluster time: %w", err))
		return results
	}
	// No fsync: the Raft log is the durable record. After a crash the store may come back
	// behind, and Raft replays what it lost; Snapshot syncs so the store is never behind the
	// newest snapshot.
	if err := b.Commit(pebble.NoSync); err != nil {
		f.halt(fmt.Errorf("commit batch up to index %d: %w", applied, err))
		return results
	}
	for _, acc := range resident.batch {
		f.accounts.put(acc)
	}
	f.applied.Store(applied)
	f.nowMs.Store(now)
	f.format.Store(format)
	if f.onScriptsWatched != nil && len(watched) > 0 {
		f.onScriptsWatched(watched)
	}
	if f.onApplied != nil {
		st := b.CommitStats()
		f.onApplied(ApplyStats{Entries: entries, Commit: st.TotalDuration,
			Stalled: st.MemTableWriteStallDuration + st.L0ReadAmpWriteStallDuration})
	}
	f.notifyChanged()
	return results
}

func (f *FSM) halt(err error) {
	f.halted.Store(true)
	f.fatal(err)
}

// decodeCommand parses a Raft entry into its envelope. Anything this binary does not know is
// an error: the caller stops the state machine.
func decodeCommand(data []byte) (*bankdv1.Command, error) {
	cmd := &bankdv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("decode command envelope: %w", err)
	}
	if cmd.Version == 0 || cmd.Version > CommandVersion {
		return nil, fmt.Errorf("command version %d not supported by this binary (max %d): upgrade this node", cmd.Version, CommandVersion)
	}
	if _, known := commandBodies[cmd.Type]; !known {
		return nil, fmt.Errorf("unknown command type %d: upgrade this node", cmd.Type)
	}
	return cmd, nil
}

type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...any) {}
func (quietPebbleLogger) Errorf(format string, args ...any) {
	slog.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (quietPebbleLogger) Fatalf(format string, args ...any) {
	slog.Error("pebble fatal: " + fmt.Sprintf(format, args...))
	os.Exit(2)
}
