package rpc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/node"
)

// snapshotChunkBytes is the size of one chunk of a snapshot sent to a client.
const snapshotChunkBytes = 1 << 20

// SaveSnapshot streams a consistent snapshot of the state from the leader, then its info.
func (c *clusterService) SaveSnapshot(ctx context.Context, _ *connect.Request[bankdv1.SaveSnapshotRequest], stream *connect.ServerStream[bankdv1.SaveSnapshotResponse]) error {
	if !c.s.node.IsLeader() {
		return notLeaderForStream(c.s)
	}
	w := &chunkSender{send: func(b []byte) error {
		return stream.Send(&bankdv1.SaveSnapshotResponse{Part: &bankdv1.SaveSnapshotResponse_Chunk{Chunk: b}})
	}}
	info, err := c.s.node.Backup(ctx, w)
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	c.s.log.Info("snapshot saved by a client", "applied_index", info.AppliedIndex, "bytes", info.Bytes)
	return stream.Send(&bankdv1.SaveSnapshotResponse{Part: &bankdv1.SaveSnapshotResponse_Info{Info: c.snapshotInfo(info)}})
}

func (c *clusterService) snapshotInfo(info fsm.BackupInfo) *bankdv1.SnapshotInfo {
	return &bankdv1.SnapshotInfo{
		Cluster: c.s.cluster, Network: info.Network, AppliedIndex: info.AppliedIndex,
		StateHash: hex.EncodeToString(info.StateHash[:]), SizeBytes: info.Bytes, Sha256: hex.EncodeToString(info.SHA256[:]),
		NodeId: c.s.node.ID(), TakenAtUnixMs: time.Now().UnixMilli(),
	}
}

// notLeaderForStream answers a stream that only the leader serves (it cannot be forwarded).
func notLeaderForStream(s *Server) error {
	if l, ok := s.node.Leader(); ok && l.APIAddr != "" {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("not the leader; ask the leader, %s at %s: not applied, safe to retry", l.NodeID, l.APIAddr))
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%v: %s", node.ErrNoLeader, msgNoLeader))
}

// RestoreSnapshot takes a snapshot upload (its info, then its chunks) into a file beside the
// node's data, checks the whole of it against the info, and only then restores it through Raft.
func (c *clusterService) RestoreSnapshot(ctx context.Context, stream *connect.ClientStream[bankdv1.RestoreSnapshotRequest]) (*connect.Response[bankdv1.RestoreSnapshotResponse], error) {
	if !c.s.node.IsLeader() {
		return nil, notLeaderForStream(c.s)
	}
	if !stream.Receive() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("restore: no snapshot info: %v", stream.Err()))
	}
	first := stream.Msg()
	want := first.GetInfo()
	if want == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("restore: the first message must carry the snapshot's info"))
	}
	force := first.GetForce()
	f, err := os.CreateTemp("", "bankd-restore-*.snap")
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var size int64
	for stream.Receive() {
		chunk := stream.Msg().GetChunk()
		if stream.Msg().GetInfo() != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("restore: the snapshot's info may come only first"))
		}
		if size += int64(len(chunk)); size > want.GetSizeBytes() {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("restore: more than the %d bytes the info announced", want.GetSizeBytes()))
		}
		if _, err := f.Write(chunk); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if err := stream.Err(); err != nil {
		return nil, fmt.Errorf("restore: receive: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	got, err := fsm.VerifySnapshot(f)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("restore: the upload is not a whole snapshot: %w", err))
	}
	if msg := got.Mismatch(want); msg != "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("restore: the upload does not match its info: %s", msg))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	index, err := c.s.node.RestoreBackup(ctx, f, got, force)
	if errors.Is(err, node.ErrNotEmpty) {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	if err != nil {
		return nil, err
	}
	c.s.log.Warn("state replaced by a restored snapshot", "backup_applied_index", got.AppliedIndex, "raft_index", index, "from_cluster", want.GetCluster())
	return connect.NewResponse(&bankdv1.RestoreSnapshotResponse{Info: c.snapshotInfo(got), RaftIndex: index}), nil
}

// chunkSender cuts what is written into chunks of snapshotChunkBytes.
type chunkSender struct {
	send func([]byte) error
	buf  []byte
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := snapshotChunkBytes - len(c.buf)
		take := min(room, len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == snapshotChunkBytes {
			if err := c.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = c.buf[:0]
	return err
}
