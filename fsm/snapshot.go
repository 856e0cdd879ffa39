package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Snapshot format: the magic line, then for every key in order a record of
// uvarint(len key) key uvarint(len value) value, then uvarint(0) and the SHA-256 of everything
// before it. Keys are never empty, so the zero length marks the end.
var snapshotMagic = []byte("bankd-fsm-snapshot v1\n")

// maxSnapshotRecord bounds one key or value read back from a snapshot stream.
const maxSnapshotRecord = 64 << 20

// Snapshot captures the store at the current applied index. It first syncs the store's WAL, so
// that after a crash the store is never behind the newest snapshot: Raft replays entries only
// from the snapshot's index on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.db.LogData([]byte("snapshot"), pebble.Sync); err != nil {
		return nil, fmt.Errorf("sync store before snapshot: %w", err)
	}
	return f.snapshots.add(f.db.NewSnapshot(), f.AppliedIndex()), nil
}

// fsmSnapshot is a Raft snapshot: a Pebble snapshot registered in the FSM's snapshotRegistry.
type fsmSnapshot struct {
	reg   *snapshotRegistry
	snap  *pebble.Snapshot
	index uint64
}

// Persist streams the snapshot to sink. Raft calls it concurrently with Apply. A snapshot that
// a Restore dropped before Persist began fails with errSnapshotDropped.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if !s.reg.beginRead(s) {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot at index %d: %w", s.index, errSnapshotDropped)
	}
	defer s.reg.endRead()
	if err := writeSnapshot(sink, s.snap, nil); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot at index %d: %w", s.index, err)
	}
	return sink.Close()
}

// Release closes the Pebble snapshot (once; a Restore may have closed it already).
func (s *fsmSnapshot) Release() { s.reg.release(s) }

// writeSnapshot streams every key and value of snap to w in the snapshot format; onRecord,
// when set, also sees each of them (a backup describes the state in the same pass).
func writeSnapshot(w io.Writer, snap *pebble.Snapshot, onRecord func(k, v []byte)) error {
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 1<<20)
	if _, err := bw.Write(snapshotMagic); err != nil {
		return err
	}
	err := forEachKey(snap, func(k, v []byte) error {
		writeRecord(bw, k, v)
		if onRecord != nil {
			onRecord(k, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	bw.Write(binary.AppendUvarint(nil, 0))
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err = w.Write(sum.Sum(nil))
	return err
}

func writeRecord(w io.Writer, k, v []byte) {
	var lenBuf [binary.MaxVarintLen64]byte
	w.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(k)))])
	w.Write(k)
	w.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(v)))])
	w.Write(v)
}

type pebbleReader interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

func forEachKey(r pebbleReader, fn func(k, v []byte) error) error {
	iter, err := r.NewIter(nil)
	if err != nil {
		return fmt.Errorf("iterate store: %w", err)
	}
	for ok := iter.First(); ok; ok = iter.Next() {
		if err := fn(iter.Key(), iter.Value()); err != nil {
			iter.Close()
			return err
		}
	}
	return iter.Close()
}

// Restore replaces the whole store with a snapshot. The new store is built beside the old one
// and verified before it is swapped in; a crash at any point leaves either the old store or the
// complete new one (see finishInterruptedRestore).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	restoreDir := filepath.Join(f.dir, restoreDirName)
	if err := os.RemoveAll(restoreDir); err != nil {
		return fmt.Errorf("clear %s: %w", restoreDir, err)
	}
	if err := buildStore(restoreDir, rc); err != nil {
		_ = os.RemoveAll(restoreDir)
		return fmt.Errorf("restore snapshot: %w", err)
	}

	// Hold the store with no snapshot being read, dropping Raft's unread ones (see
	// snapshotRegistry: waiting for Raft to release them could deadlock).
	for {
		f.snapshots.waitIdle()
		f.mu.Lock()
		if f.snapshots.dropIfIdle() {
			break
		}
		f.mu.Unlock()
	}
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("close store for restore: %w", err)
	}
	f.db = nil
	if err := finishInterruptedRestore(f.dir); err != nil {
		return err
	}
	db, err := openPebble(filepath.Join(f.dir, dbDirName))
	if err != nil {
		return err
	}
	f.db = db
	if err := f.loadMeta(); err != nil {
		return err
	}
	f.logger.Info("state machine restored from snapshot", "applied_index", f.AppliedIndex())
	f.notifyChanged()
	return nil
}

// buildStore writes a snapshot stream into a new Pebble store at dir, verifies its checksum,
// syncs it and marks it complete.
func buildStore(dir string, r io.Reader) error {
	sum := sha256.New()
	br := bufio.NewReaderSize(r, 1<<20)
	tee := &hashingReader{r: br, h: sum}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(tee, magic); err != nil || !bytes.Equal(magic, snapshotMagic) {
		return errors.New("not a bankd snapshot (bad magic)")
	}
	db, err := openPebble(dir)
	if err != nil {
		return err
	}
	defer db.Close()
	b := db.NewBatch()
	for {
		k, err := readChunk(tee)
		if err != nil {
			return fmt.Errorf("read key: %w", err)
		}
		if len(k) == 0 {
			break
		}
		v, err := readChunk(tee)
		if err != nil {
			return fmt.Errorf("read value of %q: %w", k, err)
		}
		// A snapshot from a newer release's store is refused before it replaces this one.
		if bytes.Equal(k, keyFormat) {
			if _, _, err := decodeFormat(v); err != nil {
				return err
			}
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b = db.NewBatch()
		}
	}
	want := sum.Sum(nil)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		return fmt.Errorf("read checksum: %w", err)
	}
	if !bytes.Equal(got, want) {
		return errors.New("snapshot checksum mismatch")
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if err := db.Flush(); err != nil {
		return fmt.Errorf("flush restored store: %w", err)
	}
	marker, err := os.Create(filepath.Join(dir, restoreMarker))
	if err != nil {
		return err
	}
	if err := marker.Sync(); err != nil {
		marker.Close()
		return err
	}
	return marker.Close()
}

type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

func (h *hashingReader) ReadByte() (byte, error) {
	c, err := h.r.ReadByte()
	if err == nil {
		h.h.Write([]byte{c})
	}
	return c, err
}

func readChunk(r *hashingReader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxSnapshotRecord {
		return nil, fmt.Errorf("record of %d bytes exceeds the %d limit", n, maxSnapshotRecord)
	}
	buf := make([]byte, n)
	_, err = io.ReadFull(r, buf)
	return buf, err
}

// StateHash returns the SHA-256 over every key and value of the store, and the applied index it
// was taken at. Replicas at the same applied index must return the same hash.
func (f *FSM) StateHash() (uint64, [32]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return 0, [32]byte{}, errors.New("state machine is closed")
	}
	snap := f.db.NewSnapshot()
	defer snap.Close()

	var index uint64
	sum := sha256.New()
	err := forEachKey(snap, func(k, v []byte) error {
		if bytes.Equal(k, keyApplied) {
			index, _ = decodeUint64(v)
		}
		writeRecord(sum, k, v)
		return nil
	})
	if err != nil {
		return 0, [32]byte{}, err
	}
	var out [32]byte
	copy(out[:], sum.Sum(nil))
	return index, out, nil
}
