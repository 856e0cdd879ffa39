package node

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// raftWire encodes requests as hashicorp/raft's network transport does: a type byte, then the
// msgpack request (and for InstallSnapshot, the snapshot bytes after it).
func raftWire(t testing.TB, msgs ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := codec.NewEncoder(&b, &codec.MsgpackHandle{})
	for _, m := range msgs {
		switch m := m.(type) {
		case *raft.AppendEntriesRequest:
			b.WriteByte(rpcAppendEntries)
			if err := enc.Encode(m); err != nil {
				t.Fatal(err)
			}
		case *raft.RequestVoteRequest:
			b.WriteByte(rpcRequestVote)
			if err := enc.Encode(m); err != nil {
				t.Fatal(err)
			}
		case *raft.InstallSnapshotRequest:
			b.WriteByte(rpcInstallSnapshot)
			if err := enc.Encode(m); err != nil {
				t.Fatal(err)
			}
		case []byte: // raw bytes: a snapshot's data, or garbage
			b.Write(m)
		default:
			t.Fatalf("raftWire: %T", m)
		}
	}
	return b.Bytes()
}

var streamPeer = NodeConfig{ID: "n2", RaftAddr: "127.0.0.1:7002"}

func header(id, addr string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(addr)}
}

// readAll drains a raftStream as Raft would, in small reads.
func readAll(s *raftStream) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 7)
	for i := 0; i < 1<<20; i++ {
		n, err := s.read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.Bytes(), err
		}
	}
	return out.Bytes(), errors.New("readAll: no end")
}

func TestRaftStreamLetsThroughOnlyTheCertificatesNode(t *testing.T) {
	n2 := header("n2-0a1b2c3d", streamPeer.RaftAddr)
	entries := []*raft.Log{{Index: 7, Term: 3, Type: raft.LogCommand, Data: bytes.Repeat([]byte("x"), 5000)}}
	for _, tt := range []struct {
		name    string
		msgs    []any
		passed  int    // leading messages that must come through byte for byte
		refusal string // "" means the stream ends cleanly
	}{
		{"n2's append entries and vote", []any{
			&raft.AppendEntriesRequest{RPCHeader: n2, Term: 3, Entries: entries},
			&raft.RequestVoteRequest{RPCHeader: n2, Term: 4},
		}, 2, ""},
		{"an install snapshot and its bytes", []any{
			&raft.InstallSnapshotRequest{RPCHeader: n2, Term: 3, Size: 11}, []byte("snapshot!!!"),
			&raft.RequestVoteRequest{RPCHeader: n2, Term: 4},
		}, 3, ""},
		{"n2 speaking as n3", []any{
			&raft.AppendEntriesRequest{RPCHeader: n2, Term: 3},
			&raft.RequestVoteRequest{RPCHeader: header("n3-0a1b2c3d", streamPeer.RaftAddr), Term: 99},
		}, 1, `as "n3-0a1b2c3d"`},
		{"n2's id from another address", []any{
			&raft.AppendEntriesRequest{RPCHeader: header("n2-0a1b2c3d", "127.0.0.1:7003"), Term: 99},
		}, 0, "its raft_addr is 127.0.0.1:7002"},
		{"the bare node id", []any{
			&raft.AppendEntriesRequest{RPCHeader: header("n2", streamPeer.RaftAddr), Term: 99},
		}, 0, `as "n2"`},
		{"no header (a legacy message)", []any{
			&raft.AppendEntriesRequest{Term: 99, Leader: []byte(streamPeer.RaftAddr)},
		}, 0, "without a sender id"},
		{"an unknown message type", []any{[]byte{9, 0x80}}, 0, "unknown raft message type 9"},
		{"a negative snapshot size", []any{&raft.InstallSnapshotRequest{RPCHeader: n2, Size: -1}}, 0, "negative size"},
		{"garbage", []any{[]byte{rpcAppendEntries, 0xc1, 0xc1, 0xc1}}, 0, "decode raft message"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wire := raftWire(t, tt.msgs...)
			want := raftWire(t, tt.msgs[:tt.passed]...)
			got, err := readAll(newRaftStream(bytes.NewReader(wire), streamPeer))
			if !bytes.Equal(got, want) {
				t.Fatalf("raft read %d bytes, want exactly the %d of the first %d messages", len(got), len(want), tt.passed)
			}
			switch {
			case tt.refusal == "" && !errors.Is(err, io.EOF):
				t.Fatalf("stream ended with %v, want io.EOF", err)
			case tt.refusal != "" && (!errors.Is(err, errRaftRefused) || !bytes.Contains([]byte(err.Error()), []byte(tt.refusal))):
				t.Fatalf("stream ended with %v, want a refusal mentioning %q", err, tt.refusal)
			}
		})
	}
}

func TestRaftStreamBoundsAMessage(t *testing.T) {
	n2 := header("n2-0a1b2c3d", streamPeer.RaftAddr)
	wire := raftWire(t, &raft.AppendEntriesRequest{RPCHeader: n2, Entries: []*raft.Log{{Data: make([]byte, 10_000)}}})
	s := newRaftStream(bytes.NewReader(wire), streamPeer)
	s.limit = 4096
	got, err := readAll(s)
	// The codec reports the recorder's error in its own words, so match the text.
	if len(got) != 0 || !errors.Is(err, errRaftRefused) || !bytes.Contains([]byte(err.Error()), []byte(errRaftMessageTooLarge.Error())) {
		t.Fatalf("a message over the limit: %d bytes through, err %v", len(got), err)
	}
}

// FuzzRaftStream: whatever a peer sends, the stream never panics, never hands Raft more than it
// read, and what it hands Raft starts with a message whose header is n2's.
func FuzzRaftStream(f *testing.F) {
	n2 := header("n2-0a1b2c3d", streamPeer.RaftAddr)
	f.Add(raftWire(f, &raft.AppendEntriesRequest{RPCHeader: n2, Term: 3, Entries: []*raft.Log{{Data: []byte("x")}}}))
	f.Add(raftWire(f, &raft.InstallSnapshotRequest{RPCHeader: n2, Size: 3}, []byte("abc")))
	f.Add(raftWire(f, &raft.RequestVoteRequest{RPCHeader: header("n3-0a1b2c3d", "127.0.0.1:7003")}))
	f.Add([]byte{rpcRequestPreVote})
	f.Fuzz(func(t *testing.T, wire []byte) {
		s := newRaftStream(bytes.NewReader(wire), streamPeer)
		s.limit = 1 << 16
		got, _ := readAll(s)
		if len(got) > len(wire) || !bytes.Equal(got, wire[:len(got)]) {
			t.Fatalf("handed Raft %d bytes that are not a prefix of the %d read", len(got), len(wire))
		}
		if len(got) == 0 {
			return
		}
		var m rpcPrefix
		if err := codec.NewDecoderBytes(got[1:], &codec.MsgpackHandle{}).Decode(&m); err != nil {
			t.Fatalf("handed Raft a message that does not decode: %v", err)
		}
		if err := (&raftStream{peer: streamPeer}).checkHeader(m.RPCHeader); err != nil {
			t.Fatalf("handed Raft a message it should have refused: %v", err)
		}
	})
}

// The keyring reload is consul keyring's rotation as file edits: add a key, make it primary,
// drop the old one; a file that does not load changes nothing.
func TestGossipKeyringRotation(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	line := func(k []byte) string { return base64.StdEncoding.EncodeToString(k) + "\n" }
	path := filepath.Join(t.TempDir(), "gossip.keyring")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kr, err := memberlist.NewKeyring([][]byte{k1}, k1)
	if err != nil {
		t.Fatal(err)
	}
	g := &gossip{n: &Node{cfg: &Config{Gossip: GossipConfig{KeyringFile: path}}}, keyring: kr, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	check := func(step string, primary []byte, keys ...[]byte) {
		t.Helper()
		if !bytes.Equal(kr.GetPrimaryKey(), primary) {
			t.Errorf("%s: primary key %x, want %x", step, kr.GetPrimaryKey()[:1], primary[:1])
		}
		if got := kr.GetKeys(); len(got) != len(keys) {
			t.Errorf("%s: %d keys installed, want %d", step, len(got), len(keys))
		}
	}
	for _, step := range []struct {
		name, body string
		primary    []byte
		keys       [][]byte
	}{
		{"add the new key", line(k1) + line(k2), k1, [][]byte{k1, k2}},
		{"make it primary", line(k2) + line(k1), k2, [][]byte{k2, k1}},
		{"drop the old key", line(k2), k2, [][]byte{k2}},
	} {
		write(step.body)
		if err := g.reloadKeyring(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		check(step.name, step.primary, step.keys...)
	}
	write("not base64\n")
	if err := g.reloadKeyring(); err == nil {
		t.Fatal("a broken keyring file reloaded")
	}
	check("after a broken file", k2, k2)
}
