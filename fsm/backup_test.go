package fsm

import (
	"bytes"
	"strings"
	"testing"
)

func TestBackupRestoresToTheSameStateAndRefusesDamage(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("b1", "reserve", "alice", 700)), codeOK, "")
	var buf bytes.Buffer
	info, err := tf.Backup(&buf)
	if err != nil {
		t.Fatal(err)
	}
	idx, hash := tf.hash()
	if info.AppliedIndex != idx || info.StateHash != hash || info.Bytes != int64(buf.Len()) {
		t.Fatalf("backup says index %d hash %x bytes %d; the state is at %d %x, the stream %d bytes", info.AppliedIndex, info.StateHash, info.Bytes, idx, hash, buf.Len())
	}
	checked, err := VerifySnapshot(bytes.NewReader(buf.Bytes()))
	if err != nil || checked != info {
		t.Fatalf("verify: %+v %v, want %+v", checked, err, info)
	}

	other := openTestFSM(t)
	if err := other.Restore(readCloser(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if i, h := other.hash(); i != idx || h != hash {
		t.Fatalf("restored at %d %x, want %d %x", i, h, idx, hash)
	}

	for name, tc := range map[string]struct {
		damage func([]byte) []byte
		want   string
	}{
		"a flipped byte":       {func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, ""},
		"a byte after the end": {func(b []byte) []byte { return append(b, 0) }, "after the snapshot's checksum"},
		"cut short":            {func(b []byte) []byte { return b[:len(b)-5] }, "checksum"},
		"another file":         {func([]byte) []byte { return []byte("hello") }, "bad magic"},
	} {
		damaged := tc.damage(bytes.Clone(buf.Bytes()))
		if _, err := VerifySnapshot(bytes.NewReader(damaged)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, tc.want)
		}
	}
}
