package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// BackupInfo describes one snapshot stream: what it holds and how to check it.
type BackupInfo struct {
	// AppliedIndex is the last Raft index the state includes.
	AppliedIndex uint64
	// StateHash is StateHash's answer for the state (at AppliedIndex): a cluster restored from
	// the stream must report it.
	StateHash [32]byte
	// Network is the cluster's chain network recorded in the state ("" before its first wallet).
	Network string
	// Bytes and SHA256 are the stream's length and digest.
	Bytes  int64
	SHA256 [32]byte
}

// Backup writes a consistent snapshot of the state machine to w (the stream Raft snapshots
// use) and describes it.
func (f *FSM) Backup(w io.Writer) (BackupInfo, error) {
	f.mu.RLock()
	if f.db == nil {
		f.mu.RUnlock()
		return BackupInfo{}, errors.New("state machine is closed")
	}
	snap := f.db.NewSnapshot()
	f.snapshots.beginBackup() // under mu: a Restore that holds the store waits for it
	f.mu.RUnlock()
	defer f.snapshots.endRead()
	defer snap.Close()

	var info BackupInfo
	state := sha256.New()
	counted := &countingHashWriter{w: w, h: sha256.New()}
	err := writeSnapshot(counted, snap, func(k, v []byte) {
		info.note(k, v)
		writeRecord(state, k, v)
	})
	if err != nil {
		return BackupInfo{}, fmt.Errorf("write snapshot: %w", err)
	}
	info.Bytes = counted.n
	copy(info.SHA256[:], counted.h.Sum(nil))
	copy(info.StateHash[:], state.Sum(nil))
	return info, nil
}

// Mismatch names the first way in which the stream b describes differs from what want says
// of it (a backup file's info line, or an upload's first message), or "" if none.
func (b BackupInfo) Mismatch(want *bankdv1.SnapshotInfo) string {
	switch stateHash, sum := hex.EncodeToString(b.StateHash[:]), hex.EncodeToString(b.SHA256[:]); {
	case b.Bytes != want.GetSizeBytes():
		return fmt.Sprintf("%d bytes, the info says %d", b.Bytes, want.GetSizeBytes())
	case sum != want.GetSha256():
		return fmt.Sprintf("sha256 %s, the info says %s", sum, want.GetSha256())
	case b.AppliedIndex != want.GetAppliedIndex():
		return fmt.Sprintf("applied index %d, the info says %d", b.AppliedIndex, want.GetAppliedIndex())
	case stateHash != want.GetStateHash():
		return fmt.Sprintf("state hash %s, the info says %s", stateHash, want.GetStateHash())
	case b.Network != want.GetNetwork():
		return fmt.Sprintf("network %q, the info says %q", b.Network, want.GetNetwork())
	}
	return ""
}

// note records what the metadata keys say.
func (info *BackupInfo) note(k, v []byte) {
	switch {
	case bytes.Equal(k, keyApplied):
		info.AppliedIndex, _ = decodeUint64(v)
	case bytes.Equal(k, keyNetwork):
		info.Network = string(v)
	}
}

// VerifySnapshot reads a whole snapshot stream and checks it as Restore would (magic, records,
// checksum) and that nothing follows it, without building a store. It returns what the stream
// holds, so a restore can be refused before anything is replaced.
func VerifySnapshot(r io.Reader) (BackupInfo, error) {
	var info BackupInfo
	whole := &countingHashReader{r: r, h: sha256.New()}
	br := bufio.NewReaderSize(whole, 1<<20)
	inner := &hashingReader{r: br, h: sha256.New()}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(inner, magic); err != nil || !bytes.Equal(magic, snapshotMagic) {
		return info, errors.New("not a bankd snapshot (bad magic)")
	}
	state := sha256.New()
	for {
		k, err := readChunk(inner)
		if err != nil {
			return info, fmt.Errorf("read key: %w", err)
		}
		if len(k) == 0 {
			break
		}
		v, err := readChunk(inner)
		if err != nil {
			return info, fmt.Errorf("read value of %q: %w", k, err)
		}
		info.note(k, v)
		writeRecord(state, k, v)
	}
	want := inner.h.Sum(nil)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		return info, fmt.Errorf("read checksum: %w", err)
	}
	if !bytes.Equal(got, want) {
		return info, errors.New("snapshot checksum mismatch")
	}
	if n, _ := io.Copy(io.Discard, br); n > 0 {
		return info, fmt.Errorf("%d bytes after the snapshot's checksum", n)
	}
	if info.AppliedIndex == 0 {
		return info, errors.New("the snapshot holds no applied index")
	}
	copy(info.StateHash[:], state.Sum(nil))
	info.Bytes = whole.n
	copy(info.SHA256[:], whole.h.Sum(nil))
	return info, nil
}

type countingHashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingHashWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

type countingHashReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *countingHashReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// Empty reports whether the state holds no account and no wallet: nothing a restore would
// overwrite that anyone created.
func (f *FSM) Empty() (bool, error) {
	empty := true
	for _, tag := range []byte{tagAccount, tagWallet} {
		err := f.scan([]byte{tag}, []byte{tag + 1}, func(_, _ []byte) (bool, error) {
			empty = false
			return false, nil
		})
		if err != nil || !empty {
			return empty, err
		}
	}
	return true, nil
}
