package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

const (
	importAlice = `{"id":"alice","currency":"BTC","kind":"ACCOUNT_KIND_LIABILITY","nonNegative":true}`
	importBob   = `{"id":"bob","currency":"BTC","kind":"ACCOUNT_KIND_LIABILITY","metadata":{"tier":"gold"}}`
	importRes   = `{"id":"reserve","currency":"BTC","kind":"ACCOUNT_KIND_ASSET"}`
)

func TestCheckImportFile(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		n     int    // accounts, when the file is good
		error string // what the error must contain, when it is not
	}{
		{"JSON lines", importAlice + "\n" + importBob + "\n" + importRes + "\n", 3, ""},
		{"JSON lines with blank lines, CRLF and no final newline", "\n" + importAlice + "\r\n\r\n  " + importBob, 2, ""},
		{"a JSON array", "[\n  " + importAlice + ",\n  " + importBob + "\n]\n", 2, ""},
		{"a JSON array after a byte order mark", "\xef\xbb\xbf[" + importAlice + "]", 1, ""},
		{"kind as a number", `{"id":"n","currency":"BTC","kind":2}`, 1, ""},

		{"an empty file", "", 0, "no accounts in the file"},
		{"only white space", " \n\n\t", 0, "no accounts in the file"},
		{"an empty array", "[]", 0, "no accounts in the file"},
		{"a truncated line", importAlice + "\n" + `{"id":"bob","currency":"BT`, 0, "line 2: not an account"},
		{"not JSON at all", "id,currency,kind\nalice,BTC,liability\n", 0, "line 1: not an account"},
		{"an unknown field", `{"id":"a","curency":"BTC","kind":"ACCOUNT_KIND_ASSET"}`, 0, `line 1: not an account`},
		{"an unknown kind", `{"id":"a","currency":"BTC","kind":"liability"}`, 0, "line 1: not an account"},
		{"two accounts on one line", importAlice + " " + importBob, 0, "line 1: not an account"},
		{"a line that is an array", importAlice + "\n[" + importBob + "]", 0, "line 2: not an account"},
		{"a syntax error in an array", "[" + importAlice + ",}", 0, "accounts[1]"},
		{"an array element that is not an account", "[" + importAlice + `,{"id":7}]`, 0, "accounts[1]: not an account"},
		{"an array not closed", "[" + importAlice, 0, "JSON array"},
		{"something after the array", "[" + importAlice + "] " + importBob, 0, "something follows its end"},
		{"a line too long", `{"id":"a","currency":"BTC","kind":"ACCOUNT_KIND_ASSET","metadata":{"k":"` + strings.Repeat("v", importMaxLineBytes) + `"}}`, 0, "line 1: longer than"},

		{"an invalid account", importAlice + "\n" + `{"id":"eve","currency":"btc","kind":"ACCOUNT_KIND_ASSET"}`, 0,
			"1 of 2 accounts are invalid; nothing was sent:\n  line 2: account.currency: must be 3-8 upper-case letters"},
		{"an account without an id", `{"currency":"BTC","kind":"ACCOUNT_KIND_ASSET"}`, 0, "line 1: account.id"},
		{"a balance set by the client", `{"id":"a","currency":"BTC","kind":"ACCOUNT_KIND_ASSET","balance":{"posted":"5"}}`, 0, "line 1: account.balance"},
		{"an owner set by the client", `{"id":"a","currency":"BTC","kind":"ACCOUNT_KIND_ASSET","owner":"OWNER_CHAIN"}`, 0, "line 1: account.owner"},
		{"a driver's account id", `{"id":"onchain-deposits","currency":"BTC","kind":"ACCOUNT_KIND_ASSET"}`, 0, "line 1: account.id"},
		{"an id twice", importAlice + "\n" + importBob + "\n" + importAlice, 0, `line 3: account id "alice" is also at line 1`},
		{"an id twice in an array", "[" + importAlice + "," + importAlice + "]", 0, `accounts[1]: account id "alice" is also at accounts[0]`},
		{"many invalid accounts are counted", strings.Repeat(`{"id":"x y","currency":"BTC","kind":"ACCOUNT_KIND_ASSET"}`+"\n", importMaxErrors+5), 0,
			fmt.Sprintf("%d of %d accounts are invalid", importMaxErrors+5, importMaxErrors+5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := checkImportFile(strings.NewReader(tt.file))
			if tt.error == "" {
				if err != nil || n != tt.n {
					t.Fatalf("got %d accounts, %v; want %d", n, err, tt.n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Fatalf("got %d, %v; want an error containing %q", n, err, tt.error)
			}
		})
	}
}

// FuzzCheckImportFile: whatever the bytes, checking a file never panics, and a file it accepts
// reads back as that many valid accounts with distinct ids.
func FuzzCheckImportFile(f *testing.F) {
	f.Add([]byte(importAlice + "\n" + importBob))
	f.Add([]byte("[" + importAlice + "," + importRes + "]"))
	f.Add([]byte("[" + importAlice + ",}"))
	f.Add([]byte(`{"id":"a","currency":"BTC","kind":1,"metadata":{"":""}}`))
	f.Add([]byte("\xef\xbb\xbf\n\n"))
	f.Fuzz(func(t *testing.T, file []byte) {
		n, err := checkImportFile(bytes.NewReader(file))
		if err != nil {
			return
		}
		ids := map[string]bool{}
		if err := readImportFile(bytes.NewReader(file), func(ia importAccount) error {
			if fe := fsm.ValidateAccount(ia.acc); fe != nil {
				t.Fatalf("%s accepted but invalid: %v", ia.pos, fe)
			}
			if ids[ia.acc.Id] {
				t.Fatalf("%s: id %q accepted twice", ia.pos, ia.acc.Id)
			}
			ids[ia.acc.Id] = true
			return nil
		}); err != nil {
			t.Fatalf("accepted, then failed to read again: %v", err)
		}
		if len(ids) != n {
			t.Fatalf("checked %d accounts, read %d", n, len(ids))
		}
	})
}

// fakeLedger answers CreateAccounts: an id in existing is replayed, one in conflicting refused
// ALREADY_EXISTS, the others created. It records the size of every request.
type fakeLedger struct {
	bankdv1connect.UnimplementedLedgerServiceHandler
	existing, conflicting map[string]bool

	mu       sync.Mutex
	requests []int
}

func (f *fakeLedger) CreateAccounts(_ context.Context, req *connect.Request[bankdv1.CreateAccountsRequest]) (*connect.Response[bankdv1.CreateAccountsResponse], error) {
	f.mu.Lock()
	f.requests = append(f.requests, len(req.Msg.Accounts))
	f.mu.Unlock()
	res := &bankdv1.CreateAccountsResponse{}
	for _, acc := range req.Msg.Accounts {
		r := &bankdv1.AccountResult{Id: acc.Id, Code: bankdv1.ResultCode_RESULT_CODE_OK, Account: acc}
		switch {
		case f.conflicting[acc.Id]:
			r = &bankdv1.AccountResult{Id: acc.Id, Code: bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				Message: fmt.Sprintf("account.id: account %q already exists with a different definition", acc.Id)}
		case f.existing[acc.Id]:
			r.Replayed = true
		}
		res.Results = append(res.Results, r)
	}
	return connect.NewResponse(res), nil
}

func (f *fakeLedger) sent() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.requests...)
}

func serveLedger(t *testing.T, f bankdv1connect.LedgerServiceHandler) map[string]string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(bankdv1connect.NewLedgerServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return map[string]string{envAddr: srv.URL, envToken: "admin-token"}
}

func writeImportFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accounts.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAccountsImportSendsNothingFromABadFile(t *testing.T) {
	f := &fakeLedger{}
	env := serveLedger(t, f)
	good := writeImportFile(t, importAlice)
	tests := []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{"malformed JSON", []string{"accounts", "import", writeImportFile(t, importAlice, `{"id":"bob",`)}, exitFail, "line 2: not an account"},
		{"an invalid account", []string{"accounts", "import", writeImportFile(t, importAlice, `{"id":"b","currency":"BTC"}`)}, exitFail,
			"1 of 2 accounts are invalid; nothing was sent:\n  line 2: account.kind"},
		{"an id twice", []string{"accounts", "import", writeImportFile(t, importAlice, importBob, importAlice)}, exitFail, `line 3: account id "alice" is also at line 1`},
		{"a missing file", []string{"accounts", "import", filepath.Join(t.TempDir(), "none.jsonl")}, exitFail, "no such file"},
		{"no file", []string{"accounts", "import"}, exitUsage, "want FILE"},
		{"-batch 0", []string{"accounts", "import", good, "-batch", "0"}, exitUsage, "-batch must be 1-8000"},
		{"-batch 8001", []string{"accounts", "import", good, "-batch", "8001"}, exitUsage, "-batch must be 1-8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := ctl(t, env, tt.args...)
			if code != tt.status || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q (stdout %q)", code, errOut, tt.status, tt.stderr, out)
			}
			if sent := f.sent(); len(sent) != 0 {
				t.Fatalf("requests were sent: %v", sent)
			}
		})
	}
}

func TestAccountsImportSendsChunksAndSummarises(t *testing.T) {
	f := &fakeLedger{existing: map[string]bool{"c1": true}, conflicting: map[string]bool{"c3": true}}
	env := serveLedger(t, f)
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf(`{"id":"c%d","currency":"BTC","kind":"ACCOUNT_KIND_LIABILITY"}`, i))
	}
	file := writeImportFile(t, lines...)

	code, out, errOut := ctl(t, env, "accounts", "import", file, "-batch", "2")
	if code != exitFail || !strings.Contains(errOut, "bankctl: error: 1 of 5 accounts refused (listed above)") {
		t.Fatalf("exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	if got := f.sent(); fmt.Sprint(got) != "[2 2 1]" {
		t.Fatalf("requests of %v accounts, want [2 2 1]", got)
	}
	for _, want := range []string{"created:   3", "replayed:  1", "refused:   1", "line 4  c3  ALREADY_EXISTS  account.id: account \"c3\" already exists"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the summary lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "5 of 5 accounts sent") {
		t.Fatalf("no progress on stderr: %q", errOut)
	}

	// -o json: one result per line; all created or replayed is exit 0.
	f.conflicting = nil
	code, out, errOut = ctl(t, env, "-o", "json", "accounts", "import", file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 5 {
		t.Fatalf("%d JSON lines, want 5:\n%s", len(rows), out)
	}
	var r bankdv1.AccountResult
	if err := protojson.Unmarshal([]byte(rows[1]), &r); err != nil || r.Id != "c1" || !r.Replayed {
		t.Fatalf("second line %q: %v", rows[1], err)
	}
}

// TestAccountsImportExplainsAnOldCluster: a node without CreateAccounts answers unimplemented;
// bankctl says what to do.
func TestAccountsImportExplainsAnOldCluster(t *testing.T) {
	env := serveLedger(t, bankdv1connect.UnimplementedLedgerServiceHandler{})
	code, _, errOut := ctl(t, env, "accounts", "import", writeImportFile(t, importAlice, importBob))
	if code != exitFail || !strings.Contains(errOut, "unimplemented: ") || !strings.Contains(errOut, "upgrade every node") ||
		!strings.Contains(errOut, "line 1 to line 2 not imported; 0 created") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
