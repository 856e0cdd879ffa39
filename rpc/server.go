package rpc

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/clustertls"
	"github.com/bankd/bankd/console"
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/node"
)

// Limits of the HTTP edge.
const (
	// DefaultMaxRequestBytes caps one decoded request message when Options do not say; New uses
	// cluster.hcl's raft.max_entry_bytes instead, since a larger request could never be proposed.
	DefaultMaxRequestBytes = 16 << 20
	// DefaultMaxEventStreams bounds the WatchEvents streams one node serves at once.
	DefaultMaxEventStreams = 1024
	// DefaultShutdownTimeout bounds how long Serve waits for in-flight calls when it stops.
	DefaultShutdownTimeout = 10 * time.Second

	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Options tune a Server. The zero value is usable.
type Options struct {
	// Logger receives access logs (debug) and errors (warn). Nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the node's and the API's Prometheus collectors and is served on
	// /metrics. Nil makes a fresh registry with the Go and process collectors.
	Registry *prometheus.Registry
	// MaxRequestBytes caps one decoded request message; 0 means raft.max_entry_bytes (New) or
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxEventStreams caps concurrent WatchEvents streams; 0 means DefaultMaxEventStreams.
	MaxEventStreams int
	// MaxCallsPerToken and MaxStreamsPerToken bound what one token holds at once on this node
	// (unary calls in flight, open event streams); 0 means the defaults.
	MaxCallsPerToken   int
	MaxStreamsPerToken int
	// BodyReadTimeout bounds how long a client may take to send a request body; 0 means
	// DefaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// ShutdownTimeout bounds the graceful stop of Serve; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// TLS is the node's certificate store. With it the API serves TLS 1.3 (client certificates
	// optional, verified when given) and forwarded calls use mutual TLS; nil serves plaintext
	// (insecure_plaintext). New takes the node's.
	TLS *clustertls.Store
	// ForwardClient carries calls forwarded to the leader. Nil builds one that speaks the API
	// port's protocol: HTTP/2 over mutual TLS, or without TLS when TLS is nil.
	ForwardClient *http.Client
	// Lightning is the node's lnd pool driver; nil means LightningService answers that the
	// cluster has no pool.
	Lightning LightningPool
	// Payouts is the node's payout driver; nil means PayoutService answers that the cluster
	// takes no withdrawals.
	Payouts Payouts
}

// backend is what the API needs from a node. *node.Node provides it through nodeBackend; unit
// tests provide fakes.
type backend interface {
	Apply(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error)
	IsLeader() bool
	Leader() (node.LeaderInfo, bool)
	ReadBarrier(ctx context.Context) error
	ReadMeta(stale bool) *bankdv1.ReadMeta
	Ready() error
	ID() string
	Status() *bankdv1.StatusResponse
	Members() []*bankdv1.Member
	TransferLeadership(ctx context.Context, targetNodeID string) (string, error)
	RemoveNode(ctx context.Context, id string) (string, error)
	Compact(ctx context.Context, rc node.RetentionConfig) (*bankdv1.Compaction, error)
	Backup(ctx context.Context, w io.Writer) (fsm.BackupInfo, error)
	RestoreBackup(ctx context.Context, r io.Reader, info fsm.BackupInfo, force bool) (uint64, error)
	State() stateReader
}

// stateReader is the read side of the local state machine (*fsm.FSM).
type stateReader interface {
	AppliedIndex() uint64
	Changed() <-chan struct{}
	Account(id string) (*bankdv1.Account, error)
	ListAccounts(pageToken string, pageSize int) ([]*bankdv1.Account, string, error)
	Transfer(id string) (*bankdv1.Transfer, error)
	AccountHistory(accountID, pageToken string, pageSize int) ([]*bankdv1.HistoryEntry, string, error)
	Lock(name string) (*bankdv1.Lock, error)
	Events(fromIndex uint64, max int) ([]*bankdv1.Event, error)
	StateHash() (index uint64, sum [32]byte, err error)
	Wallet(id string) (*bankdv1.Wallet, error)
	ListWallets(pageToken string, pageSize int) ([]*bankdv1.Wallet, string, error)
	ListDepositAddresses(accountID, pageToken string, pageSize int) ([]*bankdv1.DepositAddress, string, error)
	LookupAddress(address string) (*bankdv1.WatchedScript, error)
	ChainStatus() (*bankdv1.GetChainStatusResponse, error)
	ChainTx(txid string) (*bankdv1.ChainTx, []*bankdv1.Deposit, error)
	ListUtxos(walletID, pageToken string, pageSize int) ([]*bankdv1.Utxo, string, error)
	ListDeposits(accountID, pageToken string, pageSize int) ([]*bankdv1.Deposit, string, error)
	LndNodes() ([]*bankdv1.LndNode, error)
	LndNode(id string) (*bankdv1.LndNode, error)
	OpenInvoices(nodeID, after string, max int) ([]*bankdv1.LnInvoice, error)
	InFlightPayments(nodeID, after string, max int) ([]*bankdv1.LnPayment, error)
	Invoice(hash string) (*bankdv1.LnInvoice, error)
	Payment(id string) (*bankdv1.LnPayment, error)
	Payout(id string) (*bankdv1.Payout, error)
	ListPayouts(accountID string, state bankdv1.PayoutState, pageToken string, pageSize int) ([]*bankdv1.Payout, string, error)
	PayoutBatch(id string) (*bankdv1.PayoutBatch, error)
	ChannelOpen(id string) (*bankdv1.ChannelOpen, error)
	VaultProposal(id string) (*bankdv1.VaultProposal, error)
	ListVaultProposals(state bankdv1.VaultProposalState, pageToken string, pageSize int) ([]*bankdv1.VaultProposal, string, error)
	ListPayoutBatches(state bankdv1.BatchState, pageToken string, pageSize int) ([]*bankdv1.PayoutBatch, string, error)
	WalletReconciliation() ([]*bankdv1.WalletReconciliation, error)
	Solvency() (*bankdv1.Solvency, error)
	ListProblems(pageToken string, pageSize int) ([]*bankdv1.Problem, string, error)
	ProblemCount() (uint64, error)
	Adjustment(id string) (*bankdv1.Adjustment, error)
	ListAdjustments(accountID, pageToken string, pageSize int) ([]*bankdv1.Adjustment, string, error)
}

var _ stateReader = (*fsm.FSM)(nil)

// nodeBackend adapts *node.Node to backend.
type nodeBackend struct{ *node.Node }

func (b nodeBackend) State() stateReader { return b.FSM() }

// Server is the API of one node. Mount Handler on an HTTP server, or let Serve run one.
type Server struct {
	node      backend
	log       *slog.Logger
	auth      *authenticator
	fwd       *forwarder
	metrics   *metrics
	registry  *prometheus.Registry
	handler   http.Handler
	tls       *clustertls.Store
	maxBytes  int
	stopGrace time.Duration
	// network is the chain network of cluster.hcl, filled into CreateWallet requests.
	network string
	// cluster is cluster.hcl's name, recorded in backups.
	cluster string
	// hotWallet is cluster.hcl's payouts.wallet, stamped on vault proposals.
	hotWallet string
	// lightning is the lnd pool driver (Options.Lightning).
	lightning LightningPool
	// payouts is the payout driver (Options.Payouts).
	payouts Payouts

	// limits bounds what each token holds at once; bodyReadTimeout how long a body may take.
	limits          *tokenLimits
	bodyReadTimeout time.Duration
	// stateHashes caches the state hash per applied index.
	stateHashes stateHashCache

	// streamSlots holds one token per open event stream.
	streamSlots chan struct{}

	// streamsDone is closed when the server stops, so long-lived event streams end: an
	// http.Server shutdown waits for handlers but never cancels them.
	stopOnce    sync.Once
	streamsDone chan struct{}
}

// New builds the API of node n, with the tokens of cfg. It registers the node's collectors
// and its own on opts.Registry.
func New(n *node.Node, cfg *node.Config, opts Options) (*Server, error) {
	if n == nil || cfg == nil {
		return nil, errors.New("rpc: node and config are required")
	}
	if opts.MaxRequestBytes <= 0 {
		// A request larger than a log entry could never be proposed.
		opts.MaxRequestBytes = cfg.Raft.MaxEntryBytes
	}
	if opts.TLS == nil {
		opts.TLS = n.TLS()
	}
	s, err := newServer(nodeBackend{n}, cfg.Tokens.Tokens, opts)
	if err != nil {
		return nil, err
	}
	s.network = cfg.Chain.Network
	s.cluster = cfg.Name
	s.hotWallet = cfg.Payouts.Wallet
	if err := n.RegisterMetrics(s.registry); err != nil {
		return nil, fmt.Errorf("rpc: register node metrics: %w", err)
	}
	return s, nil
}

func newServer(b backend, tokens []node.TokenConfig, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "rpc", "node", b.ID())
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		if err := reg.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("rpc: register go collector: %w", err)
		}
		if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("rpc: register process collector: %w", err)
		}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(tokens)
	if err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	if err := registerProblemMetric(reg, b); err != nil {
		return nil, err
	}
	if err := registerWalletMetrics(reg, b); err != nil {
		return nil, err
	}
	maxBytes := opts.MaxRequestBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxRequestBytes
	}
	maxStreams := opts.MaxEventStreams
	if maxStreams <= 0 {
		maxStreams = DefaultMaxEventStreams
	}
	maxCalls, maxTokenStreams := opts.MaxCallsPerToken, opts.MaxStreamsPerToken
	if maxCalls <= 0 {
		maxCalls = DefaultMaxCallsPerToken
	}
	if maxTokenStreams <= 0 {
		maxTokenStreams = DefaultMaxStreamsPerToken
	}
	bodyTimeout := opts.BodyReadTimeout
	if bodyTimeout <= 0 {
		bodyTimeout = DefaultBodyReadTimeout
	}
	grace := opts.ShutdownTimeout
	if grace <= 0 {
		grace = DefaultShutdownTimeout
	}
	s := &Server{
		node:        b,
		log:         log,
		auth:        auth,
		fwd:         newForwarder(opts.ForwardClient, opts.TLS),
		tls:         opts.TLS,
		metrics:     m,
		registry:    reg,
		maxBytes:    maxBytes,
		stopGrace:   grace,
		network:     node.DefaultChainNetwork,
		lightning:   opts.Lightning,
		payouts:     opts.Payouts,
		streamSlots: make(chan struct{}, maxStreams),
		limits:      newTokenLimits(maxCalls, maxTokenStreams),

		bodyReadTimeout: bodyTimeout,
		streamsDone:     make(chan struct{}),
	}
	if s.auth.count() == 0 {
		log.Warn("no API tokens configured: every authenticated call will be refused")
	}
	s.handler = s.routes()
	return s, nil
}

// SetTokens replaces the API tokens (cluster.hcl reloaded on SIGHUP). Calls already
// authenticated finish under the tokens they started with; a token removed here is refused
// from the next call on.
func (s *Server) SetTokens(tokens []node.TokenConfig) error {
	if err := s.auth.set(tokens); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	s.log.Info("api tokens loaded", "tokens", len(tokens))
	return nil
}

// compressMinBytes is the smallest reply worth compressing.
const compressMinBytes = 16 << 10

// Replies are compressed at gzip's fastest level. The default level cost the leader 1.7 ms of
// CPU per reply of 1,000 transfers (102 kB to 16.5 kB); the fastest costs 0.5 ms for 17.4 kB,
// and the leader's CPU is what every write of the cluster waits on. Clients see plain gzip.
func newReplyCompressor() connect.Compressor {
	w, err := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	if err != nil {
		panic(fmt.Sprintf("gzip.BestSpeed refused: %v", err)) // a constant level; cannot happen
	}
	return w
}

func newRequestDecompressor() connect.Decompressor { return &gzip.Reader{} }

// Handler serves every API and operations route of the node.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry is where the server's and the node's collectors live.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	apiOpts := connect.WithHandlerOptions(
		connect.WithRequestGate(s.auth.gate(s.log, s.metrics)),
		connect.WithInterceptors(&edgeInterceptor{s: s}),
		connect.WithRecover(s.recoverPanic),
		connect.WithReadMaxBytes(s.maxBytes),
		// Compressing a 200-byte reply costs more CPU than it saves (it was a quarter of the
		// leader's CPU under single-transfer load): only large replies are compressed.
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithCompression("gzip", newRequestDecompressor, newReplyCompressor),
	)
	mux.Handle(bankdv1connect.NewLedgerServiceHandler(&ledgerService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewLockServiceHandler(&lockService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewEventServiceHandler(&eventService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewClusterServiceHandler(&clusterService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewWalletServiceHandler(&walletService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewPayoutServiceHandler(&payoutService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewVaultServiceHandler(&vaultService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewLightningServiceHandler(&lightningService{s: s}, apiOpts))
	mux.Handle(bankdv1connect.NewChainServiceHandler(&chainService{s: s}, apiOpts))

	// Health and reflection are open: load balancers and grpcurl call them without a token,
	// and they reveal nothing that the .proto files do not.
	openOpts := connect.WithHandlerOptions(connect.WithReadMaxBytes(64<<10), connect.WithCompressMinBytes(compressMinBytes),
		connect.WithCompression("gzip", newRequestDecompressor, newReplyCompressor))
	mux.Handle(grpchealth.NewHandler(&healthChecker{node: s.node}, openOpts))
	reflector := grpcreflect.NewStaticReflector(serviceNames...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, openOpts))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, openOpts))

	s.mountOperations(mux)
	// The operator console is a client of this same API, called in process with the operator's
	// token, so the scope gate above authorizes everything it shows and does.
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) })
	mux.Handle(console.Path, console.New(console.Options{API: api, NodeID: s.node.ID(), Logger: s.log, Stopped: s.streamsDone}))
	return s.trustForwardsFromNodesOnly(s.limitRequests(mux))
}

// trustForwardsFromNodesOnly drops the Bankd-Forwarded header from a call that did not come
// over a connection authenticated by a node certificate, when the API serves TLS. The header
// only keeps a call from being forwarded twice, but what marks a call as a node's is the node's
// certificate, not a header any client can write.
func (s *Server) trustForwardsFromNodesOnly(next http.Handler) http.Handler {
	if s.tls == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(ForwardedHeader) != "" {
			fromNode := false
			if r.TLS != nil {
				id, ok := clustertls.PeerIdentity(*r.TLS)
				fromNode = ok && id.Kind == clustertls.KindNode
			}
			if !fromNode {
				r.Header.Del(ForwardedHeader)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// serviceNames are the bankd services, as announced by reflection and health.
var serviceNames = []string{
	bankdv1connect.LedgerServiceName,
	bankdv1connect.LockServiceName,
	bankdv1connect.EventServiceName,
	bankdv1connect.ClusterServiceName,
	bankdv1connect.WalletServiceName,
	bankdv1connect.ChainServiceName,
}

func (s *Server) recoverPanic(_ context.Context, spec connect.Spec, _ http.Header, v any) error {
	s.log.Error("panic in handler", "procedure", spec.Procedure, "panic", fmt.Sprint(v))
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// ListenAndServe listens on addr and runs Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("rpc: listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve answers HTTP/1.1 and HTTP/2 on ln — over TLS 1.3 with the node's certificate, or
// without TLS (what gRPC clients speak with -plaintext) under insecure_plaintext — until ctx is done, then stops gracefully: event streams end, in-flight calls get
// ShutdownTimeout to finish, and the rest are cut. It returns nil after a clean stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if s.tls != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           s.handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	if s.tls != nil {
		srv.TLSConfig = s.tls.ServerConfig(false, nil, []string{"h2", "http/1.1"})
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	s.log.Info("api serving", "addr", ln.Addr().String(), "tls", s.tls != nil)

	select {
	case err := <-errc:
		s.Stop()
		return fmt.Errorf("rpc: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.stopGrace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		s.log.Warn("api graceful stop timed out; closing connections", "err", err)
		_ = srv.Close()
	}
	<-errc // http.ErrServerClosed
	s.fwd.closeIdle()
	s.log.Info("api stopped")
	if err != nil {
		return fmt.Errorf("rpc: shutdown: %w", err)
	}
	return nil
}

// Stop ends the event streams and refuses new ones. It is idempotent; Serve calls it when it
// stops. Callers that mount Handler on their own server call it before shutting that down.
func (s *Server) Stop() {
	s.stopOnce.Do(func() { close(s.streamsDone) })
}

// healthChecker answers gRPC health: SERVING exactly when the node is ready.
type healthChecker struct{ node backend }

func (h *healthChecker) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !isServiceName(req.Service) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", req.Service))
	}
	if h.node.Ready() != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

func isServiceName(name string) bool {
	for _, n := range serviceNames {
		if n == name {
			return true
		}
	}
	return false
}
