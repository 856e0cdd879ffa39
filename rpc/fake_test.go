package rpc

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/principal"
	"github.com/bankd/bankd/node"
	bearerauth "github.com/bankd/bankd/rpc/bearer"
)

// Test tokens, one per scope; clientToken is a customer-facing service's (write).
const (
	adminToken    = "test-admin-token"
	clientToken   = "test-client-token"
	readToken     = "test-read-token"
	operatorToken = "test-operator-token"
)

// testTokens are the tokens of every fake server, named after their scope.
func testTokens() []node.TokenConfig {
	tok := func(name, secret string, scopes ...string) node.TokenConfig {
		return node.TokenConfig{Name: name, Scopes: scopes, SHA256: sha256.Sum256([]byte(secret))}
	}
	return []node.TokenConfig{
		tok("admin", adminToken, node.ScopeAdmin),
		tok("client", clientToken, node.ScopeWrite),
		tok("reader", readToken, node.ScopeRead),
		tok("operator", operatorToken, node.ScopeOperator),
	}
}

// fakeNode is a backend without Raft: tests choose whether it leads, what Apply answers and
// what the state holds.
type fakeNode struct {
	id    string
	state *fakeState

	mu        sync.Mutex
	leader    bool
	leaderAt  node.LeaderInfo
	hasLeader bool
	ready     error
	applyFn   func(typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error)
	applied   []bankdv1.CommandType
	// principals are the callers' names the proposals carried, in order.
	principals []string
	barriers   int
}

func newFakeNode(id string) *fakeNode {
	return &fakeNode{id: id, state: newFakeState(), leader: true}
}

func (f *fakeNode) setLeader(isLeader bool, at node.LeaderInfo, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.leaderAt, f.hasLeader = isLeader, at, known
}

func (f *fakeNode) setApply(fn func(bankdv1.CommandType, proto.Message, *bankdv1.Fence) (proto.Message, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applyFn = fn
}

func (f *fakeNode) proposedBy() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.principals...)
}

func (f *fakeNode) appliedTypes() []bankdv1.CommandType {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bankdv1.CommandType(nil), f.applied...)
}

func (f *fakeNode) Apply(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error) {
	f.mu.Lock()
	f.applied = append(f.applied, typ)
	f.principals = append(f.principals, principal.From(ctx))
	fn := f.applyFn
	f.mu.Unlock()
	if fn == nil {
		return nil, node.ErrNotLeader
	}
	return fn(typ, body, fence)
}

func (f *fakeNode) IsLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeNode) Leader() (node.LeaderInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leader {
		return node.LeaderInfo{NodeID: f.id, APIAddr: "self"}, true
	}
	return f.leaderAt, f.hasLeader
}

func (f *fakeNode) ReadBarrier(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.barriers++
	if !f.leader {
		return node.ErrNotLeader
	}
	return nil
}

func (f *fakeNode) ReadMeta(stale bool) *bankdv1.ReadMeta {
	m := &bankdv1.ReadMeta{AppliedIndex: f.state.AppliedIndex(), ServedBy: f.id}
	if stale {
		m.LagEntries = 7
	}
	return m
}

func (f *fakeNode) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeNode) ID() string { return f.id }

func (f *fakeNode) Status() *bankdv1.StatusResponse {
	return &bankdv1.StatusResponse{NodeId: f.id, RaftState: "Leader"}
}

func (f *fakeNode) Members() []*bankdv1.Member {
	return []*bankdv1.Member{{NodeId: f.id, Suffrage: "voter"}}
}

func (f *fakeNode) TransferLeadership(context.Context, string) (string, error) { return "n2", nil }
func (f *fakeNode) RemoveNode(_ context.Context, id string) (string, error)    { return id + "-raft", nil }
func (f *fakeNode) Compact(context.Context, node.RetentionConfig) (*bankdv1.Compaction, error) {
	return &bankdv1.Compaction{}, nil
}
func (f *fakeNode) Backup(context.Context, io.Writer) (fsm.BackupInfo, error) {
	return fsm.BackupInfo{}, errors.New("the fake node keeps no backups")
}
func (f *fakeNode) RestoreBackup(context.Context, io.Reader, fsm.BackupInfo, bool) (uint64, error) {
	return 0, errors.New("the fake node restores nothing")
}
func (f *fakeNode) State() stateReader { return f.state }

// fakeState is an in-memory stateReader.
type fakeState struct {
	// lightning, when set, answers the lost-node reads (lightning_lost_test.go).
	lightning *fsm.FSM
	mu        sync.Mutex
	applied   uint64
	accounts  map[string]*bankdv1.Account
	events    []*bankdv1.Event
	changed   chan struct{}
	// hashScans counts full state-hash computations.
	hashScans int
	// changedCalls counts Changed calls: a reader about to wait for the next apply.
	changedCalls int
}

func newFakeState() *fakeState {
	return &fakeState{accounts: map[string]*bankdv1.Account{}, changed: make(chan struct{})}
}

func (s *fakeState) AppliedIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

func (s *fakeState) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changedCalls++
	return s.changed
}

func (s *fakeState) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changedCalls
}

// appendEvent applies an event at index and wakes the watchers.
func (s *fakeState) appendEvent(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, &bankdv1.Event{Index: index})
	s.applied = index
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *fakeState) putAccount(a *bankdv1.Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[a.Id] = a
}

func (s *fakeState) Account(id string) (*bankdv1.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[id]
	if !ok {
		return nil, fsm.ErrNotFound
	}
	return a, nil
}

func (s *fakeState) ListAccounts(string, int) ([]*bankdv1.Account, string, error) {
	return nil, "", nil
}

func (s *fakeState) Transfer(string) (*bankdv1.Transfer, error) { return nil, fsm.ErrNotFound }

func (s *fakeState) AccountHistory(string, string, int) ([]*bankdv1.HistoryEntry, string, error) {
	return nil, "", nil
}

func (s *fakeState) Lock(string) (*bankdv1.Lock, error) { return nil, nil }

func (s *fakeState) Events(from uint64, max int) ([]*bankdv1.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*bankdv1.Event
	for _, e := range s.events {
		if e.Index >= from && len(out) < max {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *fakeState) StateHash() (uint64, [32]byte, error) {
	s.mu.Lock()
	s.hashScans++
	s.mu.Unlock()
	return s.AppliedIndex(), [32]byte{1, 2, 3}, nil
}

func (s *fakeState) scans() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hashScans
}

func (s *fakeState) setApplied(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = index
}

// fakeServer serves a fakeNode over HTTP/2 without TLS, like the real API port.
type fakeServer struct {
	node *fakeNode
	srv  *Server
	url  string
}

func startFakeServer(t *testing.T, n *fakeNode, opts Options) *fakeServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := newServer(n, testTokens(), opts)
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.EnableHTTP2 = true
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs.Config.Protocols = &p
	hs.Start()
	t.Cleanup(func() {
		s.Stop()
		hs.Close()
	})
	return &fakeServer{node: n, srv: s, url: hs.URL}
}

// bearer adds a token to every call of a client, unary and streaming.
func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(bearerauth.Token(token))
}

func ledgerClient(url, token string, opts ...connect.ClientOption) bankdv1connect.LedgerServiceClient {
	return bankdv1connect.NewLedgerServiceClient(http.DefaultClient, url, append(opts, bearer(token))...)
}

func eventClient(url, token string) bankdv1connect.EventServiceClient {
	return bankdv1connect.NewEventServiceClient(http.DefaultClient, url, bearer(token))
}

func clusterClient(url, token string) bankdv1connect.ClusterServiceClient {
	return bankdv1connect.NewClusterServiceClient(http.DefaultClient, url, bearer(token))
}

// okTransfers answers CREATE_TRANSFERS with OK for every transfer.
func okTransfers(typ bankdv1.CommandType, body proto.Message, _ *bankdv1.Fence) (proto.Message, error) {
	switch typ {
	case bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS:
		req := body.(*bankdv1.CreateTransfersRequest)
		res := &bankdv1.CreateTransfersResponse{}
		for _, t := range req.Transfers {
			rec := proto.Clone(t).(*bankdv1.Transfer)
			rec.State = bankdv1.TransferState_TRANSFER_STATE_POSTED
			res.Results = append(res.Results, &bankdv1.TransferResult{Id: t.Id, Code: bankdv1.ResultCode_RESULT_CODE_OK, Transfer: rec})
		}
		return res, nil
	case bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT:
		return &bankdv1.CreateAccountResponse{Account: body.(*bankdv1.CreateAccountRequest).Account}, nil
	}
	return nil, &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, Message: "unexpected command"}
}

func validTransfer(id string) *bankdv1.Transfer {
	return &bankdv1.Transfer{Id: id, DebitAccountId: "a", CreditAccountId: "b", Amount: 10, Currency: "BTC"}
}
