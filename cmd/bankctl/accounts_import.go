package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Bounds of accounts import.
const (
	// importMaxLineBytes bounds one line of a JSON-lines file: an account with full metadata is
	// a few KiB.
	importMaxLineBytes = 1 << 20
	// importMaxRequestBytes bounds the accounts of one request (encoded), below the default
	// raft.max_entry_bytes (4 MiB) with room for the command envelope. A cluster configured
	// with a smaller max_entry_bytes needs a smaller -batch.
	importMaxRequestBytes = 3 << 20
	// importMaxErrors is how many bad accounts of a file are listed before the rest are counted.
	importMaxErrors = 20
)

// importAccount is one account of an import file and where it is in the file.
type importAccount struct {
	pos string // "line 3" or "accounts[2]"
	acc *bankdv1.Account
}

// readImportFile calls fn for each account of an import file, in file order. The file is
// either a JSON array of accounts or JSON lines (one account per line; blank lines are
// skipped); each account is the API's JSON form of bankd.v1.Account (protojson: "id",
// "currency", "kind": "ACCOUNT_KIND_LIABILITY", "nonNegative", "dailyDebitLimit", "metadata").
// Unknown fields are errors. A syntax error names the line or element and stops the read.
func readImportFile(r io.Reader, fn func(importAccount) error) error {
	br := bufio.NewReader(r)
	first, err := firstNonSpace(br)
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	if first == '[' {
		return readImportArray(br, fn)
	}
	return readImportLines(br, fn)
}

// firstNonSpace skips a UTF-8 byte order mark and white space and returns the next byte
// without consuming it.
func firstNonSpace(br *bufio.Reader) (byte, error) {
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte{0xef, 0xbb, 0xbf}) {
		_, _ = br.Discard(3)
	}
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, br.UnreadByte()
	}
}

var importJSON = protojson.UnmarshalOptions{}

func decodeImportAccount(pos string, raw []byte) (importAccount, error) {
	acc := &bankdv1.Account{}
	if err := importJSON.Unmarshal(raw, acc); err != nil {
		return importAccount{}, fmt.Errorf("%s: not an account: %w", pos, err)
	}
	return importAccount{pos: pos, acc: acc}, nil
}

func readImportArray(br *bufio.Reader, fn func(importAccount) error) error {
	dec := json.NewDecoder(br)
	if _, err := dec.Token(); err != nil { // '['
		return fmt.Errorf("JSON array: %w", err)
	}
	for i := 0; dec.More(); i++ {
		pos := fmt.Sprintf("accounts[%d]", i)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("%s: %w (at byte %d)", pos, err, dec.InputOffset())
		}
		ia, err := decodeImportAccount(pos, raw)
		if err != nil {
			return err
		}
		if err := fn(ia); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return fmt.Errorf("JSON array: %w (at byte %d)", err, dec.InputOffset())
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("JSON array: something follows its end at byte %d", dec.InputOffset())
	}
	return nil
}

func readImportLines(br *bufio.Reader, fn func(importAccount) error) error {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 64<<10), importMaxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		ia, err := decodeImportAccount(fmt.Sprintf("line %d", line), text)
		if err != nil {
			return err
		}
		if err := fn(ia); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d: longer than %d bytes", line+1, importMaxLineBytes)
		}
		return fmt.Errorf("after line %d: %w", line, err)
	}
	return nil
}

// checkImportFile reads the whole file once: every account must decode and be valid on its
// own (fsm.ValidateAccount, the API's own check) and no id may appear twice. It returns how
// many accounts the file holds, or an error listing the first problems found; nothing is sent
// unless the whole file passes.
func checkImportFile(r io.Reader) (int, error) {
	var problems []string
	bad := 0
	seen := map[string]string{}
	n := 0
	err := readImportFile(r, func(ia importAccount) error {
		n++
		var problem string
		if fe := fsm.ValidateAccount(ia.acc); fe != nil {
			problem = fmt.Sprintf("%s: %s", ia.pos, fe.Message)
		} else if prev, dup := seen[ia.acc.Id]; dup {
			problem = fmt.Sprintf("%s: account id %q is also at %s", ia.pos, ia.acc.Id, prev)
		} else {
			seen[ia.acc.Id] = ia.pos
		}
		if problem != "" {
			bad++
			if len(problems) < importMaxErrors {
				problems = append(problems, problem)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if bad > 0 {
		more := ""
		if bad > len(problems) {
			more = fmt.Sprintf("\n  ... and %d more", bad-len(problems))
		}
		return 0, fmt.Errorf("%d of %d accounts are invalid; nothing was sent:\n  %s%s", bad, n, strings.Join(problems, "\n  "), more)
	}
	if n == 0 {
		return 0, errors.New("no accounts in the file")
	}
	return n, nil
}

// importTally counts the results of an import.
type importTally struct {
	created, replayed int
	refused           [][]string // position, id, code, message
}

func accountsImport(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	batch := fs.Int("batch", fsm.MaxAccountsPerCommand, fmt.Sprintf("most accounts per request (1-%d; requests are also kept under %d MiB)", fsm.MaxAccountsPerCommand, importMaxRequestBytes>>20))
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "FILE"); err != nil {
			return err
		}
		if *batch < 1 || *batch > fsm.MaxAccountsPerCommand {
			return usageErrorf("-batch must be 1-%d", fsm.MaxAccountsPerCommand)
		}
		path := args[0]
		total, err := withFile(path, checkImportFile)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		var (
			tally importTally
			chunk []importAccount
			size  int
			sent  int
		)
		flush := func() error {
			if len(chunk) == 0 {
				return nil
			}
			if err := a.sendImportChunk(ctx, chunk, &tally); err != nil {
				fmt.Fprintf(a.stderr, "bankctl: %s to %s not imported; %d created and %d replayed before (run the import again: accounts already created are replayed)\n",
					chunk[0].pos, chunk[len(chunk)-1].pos, tally.created, tally.replayed)
				return err
			}
			sent += len(chunk)
			if !a.json() {
				fmt.Fprintf(a.stderr, "bankctl: %d of %d accounts sent\n", sent, total)
			}
			chunk, size = chunk[:0], 0
			return nil
		}
		_, err = withFile(path, func(r io.Reader) (struct{}, error) {
			return struct{}{}, readImportFile(r, func(ia importAccount) error {
				n := proto.Size(ia.acc) + 8 // + the field's tag and length
				if len(chunk) == *batch || (len(chunk) > 0 && size+n > importMaxRequestBytes) {
					if err := flush(); err != nil {
						return err
					}
				}
				chunk, size = append(chunk, ia), size+n
				return nil
			})
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return err
		}
		if a.json() {
			if len(tally.refused) > 0 {
				return fmt.Errorf("%d of %d accounts refused", len(tally.refused), total)
			}
			return nil
		}
		a.printFields([][2]string{
			{"created", fmt.Sprint(tally.created)},
			{"replayed", fmt.Sprint(tally.replayed)},
			{"refused", fmt.Sprint(len(tally.refused))},
		})
		if len(tally.refused) > 0 {
			fmt.Fprintln(a.stdout)
			a.printTable([]string{"AT", "ID", "CODE", "REASON"}, tally.refused)
			return fmt.Errorf("%d of %d accounts refused (listed above)", len(tally.refused), total)
		}
		return nil
	}
}

// withFile opens path and hands it to fn.
func withFile[T any](path string, fn func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return fn(f)
}

// sendImportChunk creates one chunk of accounts with one CreateAccounts request and tallies
// its results (printing them as JSON lines with -o json).
func (a *app) sendImportChunk(ctx context.Context, chunk []importAccount, tally *importTally) error {
	accs := make([]*bankdv1.Account, len(chunk))
	for i, ia := range chunk {
		accs[i] = ia.acc
	}
	res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CreateAccountsResponse, error) {
		r, err := c.ledger.CreateAccounts(ctx, connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accs}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	})
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		return connect.NewError(connect.CodeUnimplemented, fmt.Errorf(
			"this node, or the leader it asked, runs a bankd without CreateAccounts: upgrade every node (bankctl cluster upgrade-status), or create accounts one by one with accounts create"))
	}
	if err != nil {
		return err
	}
	if len(res.Results) != len(chunk) {
		return fmt.Errorf("%d results for %d accounts", len(res.Results), len(chunk))
	}
	for i, r := range res.Results {
		switch {
		case r.Code != bankdv1.ResultCode_RESULT_CODE_OK:
			tally.refused = append(tally.refused, []string{chunk[i].pos, r.Id, strings.TrimPrefix(r.Code.String(), "RESULT_CODE_"), r.Message})
		case r.Replayed:
			tally.replayed++
		default:
			tally.created++
		}
		if a.json() {
			if err := a.printJSONLine(r); err != nil {
				return err
			}
		}
	}
	return nil
}
