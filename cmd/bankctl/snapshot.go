package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// A backup file is a header line, the snapshot's info as one line of JSON, then the snapshot
// stream itself (fsm's format, with its own checksum).
const backupHeader = "bankd-backup v1\n"

// maxInfoLine bounds the info line a backup file may hold.
const maxInfoLine = 64 << 10

// snapshotStreamTimeout is the least deadline a snapshot save or restore gets: -timeout is
// meant for unary calls, and a state of a few GiB takes minutes to stream.
const snapshotStreamTimeout = time.Hour

// restoreChunkBytes is the size of one uploaded message: below the smallest request limit a
// cluster may set (raft.max_entry_bytes is at least 64 KiB).
const restoreChunkBytes = 32 << 10

func clusterSnapshotSave(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		a.opts.timeout = max(a.opts.timeout, snapshotStreamTimeout)
		if err := wantArgs(args, 1, "FILE"); err != nil {
			return err
		}
		path := args[0]
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s exists; bankctl does not overwrite a backup", path)
		}
		partial, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".partial-*")
		if err != nil {
			return err
		}
		defer os.Remove(partial.Name())
		defer partial.Close()
		info, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.SnapshotInfo, error) {
			if err := partial.Truncate(0); err != nil {
				return nil, err
			}
			if _, err := partial.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
			stream, err := c.cluster.SaveSnapshot(ctx, connect.NewRequest(&bankdv1.SaveSnapshotRequest{}))
			if err != nil {
				return nil, err
			}
			defer stream.Close()
			sum := sha256.New()
			var size int64
			var info *bankdv1.SnapshotInfo
			for stream.Receive() {
				if i := stream.Msg().GetInfo(); i != nil {
					info = i
					continue
				}
				chunk := stream.Msg().GetChunk()
				sum.Write(chunk)
				size += int64(len(chunk))
				if _, err := partial.Write(chunk); err != nil {
					return nil, err
				}
			}
			if err := stream.Err(); err != nil {
				return nil, err
			}
			if info == nil {
				return nil, errors.New("the stream ended without the snapshot's info")
			}
			if got := hex.EncodeToString(sum.Sum(nil)); size != info.SizeBytes || got != info.Sha256 {
				return nil, fmt.Errorf("received %d bytes with sha256 %s; the node announced %d bytes, %s", size, got, info.SizeBytes, info.Sha256)
			}
			return info, nil
		})
		if err != nil {
			return err
		}
		if err := writeBackupFile(path, info, partial); err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(info)
		}
		fmt.Fprintf(a.stdout, "saved %s: cluster %s, applied index %d, state hash %s, %d bytes, sha256 %s (taken by %s)\n",
			path, info.Cluster, info.AppliedIndex, info.StateHash, info.SizeBytes, info.Sha256, info.NodeId)
		return nil
	}
}

// writeBackupFile writes header, info and the snapshot in src to path (0600) through a
// temporary file, synced before it is renamed into place.
func writeBackupFile(path string, info *bankdv1.SnapshotInfo, src *os.File) error {
	line, err := protojson.Marshal(info)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	w := bufio.NewWriterSize(tmp, 1<<20)
	w.WriteString(backupHeader)
	w.Write(line)
	w.WriteString("\n")
	if _, err := io.Copy(w, src); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// openBackup opens a backup file and reads its info; the returned reader is at the snapshot.
func openBackup(path string) (*os.File, *bankdv1.SnapshotInfo, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, err
	}
	br := bufio.NewReaderSize(io.LimitReader(f, int64(len(backupHeader))+maxInfoLine), 4096)
	header, err := br.ReadString('\n')
	if err != nil || header != backupHeader {
		f.Close()
		return nil, nil, 0, fmt.Errorf("%s is not a bankd backup (no %q header)", path, strings.TrimSpace(backupHeader))
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		f.Close()
		return nil, nil, 0, fmt.Errorf("%s: the info line is missing or longer than %d bytes", path, maxInfoLine)
	}
	info := &bankdv1.SnapshotInfo{}
	if err := protojson.Unmarshal(line, info); err != nil {
		f.Close()
		return nil, nil, 0, fmt.Errorf("%s: the info line: %w", path, err)
	}
	offset := int64(len(header) + len(line))
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, 0, err
	}
	return f, info, offset, nil
}

// checkBackup reads a whole backup file and checks its snapshot against its info.
func checkBackup(path string) (*bankdv1.SnapshotInfo, error) {
	f, info, _, err := openBackup(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	got, err := fsm.VerifySnapshot(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if msg := got.Mismatch(info); msg != "" {
		return nil, fmt.Errorf("%s: the snapshot does not match its info: %s", path, msg)
	}
	return info, nil
}

func clusterSnapshotInspect(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		if err := wantArgs(args, 1, "FILE"); err != nil {
			return err
		}
		info, err := checkBackup(args[0])
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(info)
		}
		fmt.Fprintf(a.stdout, "%s is whole: cluster %s (%s), applied index %d, state hash %s, %d bytes\n",
			args[0], info.Cluster, orDash(info.Network), info.AppliedIndex, info.StateHash, info.SizeBytes)
		return nil
	}
}

func clusterSnapshotRestore(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	force := fs.Bool("force", false, "replace a cluster that already holds accounts or wallets")
	return func(ctx context.Context, args []string) error {
		a.opts.timeout = max(a.opts.timeout, snapshotStreamTimeout)
		if err := wantArgs(args, 1, "FILE"); err != nil {
			return err
		}
		// Checked whole here first, so a damaged file is refused before any upload.
		if _, err := checkBackup(args[0]); err != nil {
			return err
		}
		f, info, offset, err := openBackup(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.RestoreSnapshotResponse, error) {
			if _, err := f.Seek(offset, io.SeekStart); err != nil {
				return nil, err
			}
			stream := c.cluster.RestoreSnapshot(ctx)
			if err := stream.Send(&bankdv1.RestoreSnapshotRequest{Part: &bankdv1.RestoreSnapshotRequest_Info{Info: info}, Force: *force}); err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			buf := make([]byte, restoreChunkBytes)
			for {
				n, rerr := io.ReadFull(f, buf)
				if n > 0 {
					if err := stream.Send(&bankdv1.RestoreSnapshotRequest{Part: &bankdv1.RestoreSnapshotRequest_Chunk{Chunk: buf[:n]}}); err != nil {
						break // the server answered early; CloseAndReceive has its answer
					}
				}
				if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
					break
				}
				if rerr != nil {
					return nil, rerr
				}
			}
			r, err := stream.CloseAndReceive()
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		fmt.Fprintf(a.stdout, "restored %s: applied index %d of cluster %s, state hash %s, now at Raft index %d\n",
			args[0], res.Info.AppliedIndex, info.Cluster, res.Info.StateHash, res.RaftIndex)
		return nil
	}
}
