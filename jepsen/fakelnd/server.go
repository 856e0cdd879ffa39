// Package fakelnd serves the simulated Lightning network of lnpool/lnd/lndtest over lnd's own
// gRPC API, so that a real bankd cluster drives it exactly as it drives lnd: TLS with a
// self-signed certificate, a macaroon in every call's metadata, and the lnrpc, routerrpc and
// invoicesrpc methods lnpool/lnd/grpc.go calls (no others). One process (cmd/fakelnd) runs the
// whole network, a gRPC listener per node, and an HTTP control endpoint for the jepsen harness:
// pay from outside, read the network's own record (what each node paid, settled and holds),
// and turn the faults on and off (killed, slow, erroring, holding payments in flight).
//
// It never decides anything for bankd and never reads bankd's state: its record is the ground
// truth the lightning checkers compare bankd's books with.
package fakelnd

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bankd/bankd/lnpool/lnd"
	"github.com/bankd/bankd/lnpool/lnd/lndtest"
)

// maxListPayments bounds one ListPayments page, as lnd's default.
const maxListPayments = 1000

// Knobs are the faults of one node that its gRPC interceptors apply.
type Knobs struct {
	// DelayMs delays every call (and the start of every stream) this long.
	DelayMs int64 `json:"delay_ms"`
	// Errors fails calls with codes.Unavailable: half before the call does anything, half
	// after it did (the answer is lost), streams after their first message.
	Errors bool `json:"errors"`
	// Hold keeps the payments sent from now on in flight until released.
	Hold bool `json:"hold"`
}

// knobs is a node's Knobs behind a lock, with the random source for Errors.
type knobs struct {
	mu  sync.Mutex
	k   Knobs
	rng *rand.Rand
}

func (k *knobs) get() Knobs {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.k
}

// failBefore draws whether an erroring call fails before it acts (true) or after.
func (k *knobs) failBefore() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rng.IntN(2) == 0
}

var errInjected = status.Error(codes.Unavailable, "fakelnd: injected error")

// service is one simulated node behind its gRPC surface: the three lnd services below share
// it (they are separate types because their unimplemented stubs share method names).
type service struct {
	node     *lndtest.Node
	macaroon string // hex, as clients send it
	knobs    *knobs
}

// newGRPCServer builds the gRPC server of one node: macaroon check, then the knobs.
func newGRPCServer(s *service, opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.ChainUnaryInterceptor(s.unaryAuth, s.unaryKnobs),
		grpc.ChainStreamInterceptor(s.streamAuth, s.streamKnobs))
	g := grpc.NewServer(opts...)
	lnrpc.RegisterLightningServer(g, &lightningService{service: s})
	routerrpc.RegisterRouterServer(g, &routerService{service: s})
	invoicesrpc.RegisterInvoicesServer(g, &invoicesService{service: s})
	return g
}

// checkMacaroon refuses a call without the node's macaroon, with lnd's own words.
func (s *service) checkMacaroon(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	macs := md.Get("macaroon")
	if len(macs) != 1 {
		return status.Errorf(codes.Unknown, "expected 1 macaroon, got %d", len(macs))
	}
	if macs[0] != s.macaroon {
		return status.Error(codes.Unknown, "verification failed: signature mismatch after caveat verification")
	}
	return nil
}

func (s *service) unaryAuth(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.checkMacaroon(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *service) streamAuth(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.checkMacaroon(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// delay waits the node's delay, or until ctx ends.
func delay(ctx context.Context, k Knobs) error {
	if k.DelayMs <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(k.DelayMs) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		return nil
	}
}

func (s *service) unaryKnobs(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	k := s.knobs.get()
	if err := delay(ctx, k); err != nil {
		return nil, err
	}
	if k.Errors && s.knobs.failBefore() {
		return nil, errInjected
	}
	res, err := h(ctx, req)
	if k.Errors {
		return nil, errInjected // acted, answer lost
	}
	return res, err
}

func (s *service) streamKnobs(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	k := s.knobs.get()
	if err := delay(ss.Context(), k); err != nil {
		return err
	}
	if k.Errors {
		if s.knobs.failBefore() {
			return errInjected
		}
		ss = &breakingStream{ServerStream: ss}
	}
	return h(srv, ss)
}

// breakingStream lets one message through, then breaks the stream.
type breakingStream struct {
	grpc.ServerStream
	sent int
}

func (b *breakingStream) SendMsg(m any) error {
	if b.sent >= 1 {
		return errInjected
	}
	b.sent++
	return b.ServerStream.SendMsg(m)
}

type lightningService struct {
	lnrpc.UnimplementedLightningServer
	*service
}

type routerService struct {
	routerrpc.UnimplementedRouterServer
	*service
}

type invoicesService struct {
	invoicesrpc.UnimplementedInvoicesServer
	*service
}

// statusOf turns an lndtest error into the status real lnd answers with, so that the client
// classifies it the same way.
func statusOf(call string, err error) error {
	switch {
	case errors.Is(err, lnd.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, lnd.ErrAlreadyPaid):
		return status.Error(codes.AlreadyExists, "invoice is already paid")
	case errors.Is(err, lnd.ErrInFlight):
		return status.Error(codes.AlreadyExists, "payment is in transition")
	case errors.Is(err, lnd.ErrNotFound) && (call == "TrackPaymentV2"):
		return status.Error(codes.NotFound, "payment isn't initiated")
	case errors.Is(err, lnd.ErrNotFound):
		return status.Error(codes.NotFound, "unable to locate invoice")
	case errors.Is(err, lnd.ErrRefused) && call == "CancelInvoice":
		return status.Error(codes.Unknown, "invoice already settled")
	}
	return status.Error(codes.Unknown, err.Error())
}

func (s *lightningService) GetInfo(ctx context.Context, _ *lnrpc.GetInfoRequest) (*lnrpc.GetInfoResponse, error) {
	info, err := s.node.GetInfo(ctx)
	if err != nil {
		return nil, statusOf("GetInfo", err)
	}
	return &lnrpc.GetInfoResponse{
		IdentityPubkey: info.Pubkey, Alias: info.Alias, Version: info.Version,
		SyncedToChain: info.SyncedToChain, SyncedToGraph: true, BlockHeight: info.BlockHeight,
		Chains: []*lnrpc.Chain{{Chain: "bitcoin", Network: info.Network}},
	}, nil
}

func (s *lightningService) AddInvoice(ctx context.Context, req *lnrpc.Invoice) (*lnrpc.AddInvoiceResponse, error) {
	inv, err := s.node.AddInvoice(ctx, lnd.AddInvoiceRequest{ValueSat: req.Value, Memo: req.Memo, ExpirySeconds: req.Expiry})
	if err != nil {
		return nil, statusOf("AddInvoice", err)
	}
	h, _ := hex.DecodeString(inv.Hash)
	return &lnrpc.AddInvoiceResponse{RHash: h, PaymentRequest: inv.PaymentRequest, AddIndex: inv.AddIndex}, nil
}

func (s *lightningService) LookupInvoice(ctx context.Context, req *lnrpc.PaymentHash) (*lnrpc.Invoice, error) {
	hash := hex.EncodeToString(req.RHash)
	//lint:ignore SA1019 lnd still takes the hash as a hex string here, and so does its stand-in.
	if s := req.GetRHashStr(); s != "" {
		hash = s
	}
	inv, err := s.node.LookupInvoice(ctx, hash)
	if err != nil {
		return nil, statusOf("LookupInvoice", err)
	}
	return invoiceProto(inv), nil
}

// invoiceProto is an invoice as lnd reports it (without the preimage, which lndtest keeps to
// itself; lnd leaves it out of hold invoices too).
func invoiceProto(inv lnd.Invoice) *lnrpc.Invoice {
	h, _ := hex.DecodeString(inv.Hash)
	states := map[lnd.InvoiceState]lnrpc.Invoice_InvoiceState{
		lnd.InvoiceOpen: lnrpc.Invoice_OPEN, lnd.InvoiceSettled: lnrpc.Invoice_SETTLED,
		lnd.InvoiceCanceled: lnrpc.Invoice_CANCELED, lnd.InvoiceAccepted: lnrpc.Invoice_ACCEPTED,
	}
	return &lnrpc.Invoice{
		Memo: inv.Memo, RHash: h, Value: inv.ValueMsat / 1000, ValueMsat: inv.ValueMsat,
		Settled: inv.State == lnd.InvoiceSettled, CreationDate: inv.CreationUnix, SettleDate: inv.SettleUnix,
		PaymentRequest: inv.PaymentRequest, Expiry: inv.ExpirySeconds, AddIndex: inv.AddIndex,
		SettleIndex: inv.SettleIndex, AmtPaid: inv.AmtPaidMsat / 1000, AmtPaidSat: inv.AmtPaidMsat / 1000,
		AmtPaidMsat: inv.AmtPaidMsat, State: states[inv.State],
	}
}

func (s *lightningService) SubscribeInvoices(req *lnrpc.InvoiceSubscription, stream lnrpc.Lightning_SubscribeInvoicesServer) error {
	sub, err := s.node.SubscribeInvoices(stream.Context(), req.AddIndex, req.SettleIndex)
	if err != nil {
		return statusOf("SubscribeInvoices", err)
	}
	for {
		inv, err := sub.Recv()
		if err != nil {
			return statusOf("SubscribeInvoices", err)
		}
		if err := stream.Send(invoiceProto(inv)); err != nil {
			return err
		}
	}
}

// paymentProto is a payment as lnd reports it; index is its payment_index.
func paymentProto(p lnd.Payment, index uint64) *lnrpc.Payment {
	statuses := map[lnd.PaymentStatus]lnrpc.Payment_PaymentStatus{
		lnd.PaymentInitiated: lnrpc.Payment_INITIATED, lnd.PaymentInFlight: lnrpc.Payment_IN_FLIGHT,
		lnd.PaymentSucceeded: lnrpc.Payment_SUCCEEDED, lnd.PaymentFailed: lnrpc.Payment_FAILED,
	}
	preimage := p.Preimage
	if preimage == "" {
		preimage = hex.EncodeToString(make([]byte, 32))
	}
	return &lnrpc.Payment{
		PaymentHash: p.Hash, Value: p.ValueMsat / 1000, ValueSat: p.ValueMsat / 1000, ValueMsat: p.ValueMsat,
		Fee: p.FeeMsat / 1000, FeeSat: p.FeeMsat / 1000, FeeMsat: p.FeeMsat, PaymentPreimage: preimage,
		Status: statuses[p.Status], CreationTimeNs: p.CreationUnixNano, CreationDate: p.CreationUnixNano / 1e9,
		FailureReason: lnrpc.PaymentFailureReason(lnrpc.PaymentFailureReason_value[p.FailureReason]),
		PaymentIndex:  index,
	}
}

// relay sends every update of a payment stream until it ends.
func relay(call string, ps lnd.PaymentStream, send func(*lnrpc.Payment) error) error {
	for {
		p, err := ps.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return statusOf(call, err)
		}
		if err := send(paymentProto(p, 0)); err != nil {
			return err
		}
	}
}

func (s *routerService) SendPaymentV2(req *routerrpc.SendPaymentRequest, stream routerrpc.Router_SendPaymentV2Server) error {
	ps, err := s.node.SendPayment(stream.Context(), lnd.SendPaymentRequest{
		PaymentRequest: req.PaymentRequest, AmountSat: req.Amt, FeeLimitSat: req.FeeLimitSat, TimeoutSeconds: req.TimeoutSeconds,
	})
	if err != nil {
		return statusOf("SendPaymentV2", err)
	}
	return relay("SendPaymentV2", ps, stream.Send)
}

func (s *routerService) TrackPaymentV2(req *routerrpc.TrackPaymentRequest, stream routerrpc.Router_TrackPaymentV2Server) error {
	ps, err := s.node.TrackPayment(stream.Context(), hex.EncodeToString(req.PaymentHash))
	if err != nil {
		return statusOf("TrackPaymentV2", err)
	}
	return relay("TrackPaymentV2", ps, stream.Send)
}

func (s *lightningService) ListPayments(ctx context.Context, req *lnrpc.ListPaymentsRequest) (*lnrpc.ListPaymentsResponse, error) {
	all, err := s.node.ListPayments(ctx, false)
	if err != nil {
		return nil, statusOf("ListPayments", err)
	}
	limit := req.MaxPayments
	if limit == 0 || limit > maxListPayments {
		limit = maxListPayments
	}
	res := &lnrpc.ListPaymentsResponse{}
	// Indexes are positions in the node's payment order (1-based).
	for i, p := range all {
		index := uint64(i + 1)
		if index <= req.IndexOffset || (!req.IncludeIncomplete && !p.Status.Final()) {
			continue
		}
		if uint64(len(res.Payments)) == limit {
			break
		}
		res.Payments = append(res.Payments, paymentProto(p, index))
		res.LastIndexOffset = index
	}
	if len(res.Payments) == 0 {
		res.LastIndexOffset = req.IndexOffset
	}
	res.FirstIndexOffset = req.IndexOffset + 1
	return res, nil
}

func (s *routerService) EstimateRouteFee(ctx context.Context, req *routerrpc.RouteFeeRequest) (*routerrpc.RouteFeeResponse, error) {
	fee, err := s.node.EstimateRouteFee(ctx, hex.EncodeToString(req.Dest), req.AmtSat)
	if err != nil {
		return nil, statusOf("EstimateRouteFee", err)
	}
	return &routerrpc.RouteFeeResponse{RoutingFeeMsat: fee * 1000, TimeLockDelay: 80}, nil
}

func (s *lightningService) ChannelBalance(ctx context.Context, _ *lnrpc.ChannelBalanceRequest) (*lnrpc.ChannelBalanceResponse, error) {
	b, err := s.node.ChannelBalance(ctx)
	if err != nil {
		return nil, statusOf("ChannelBalance", err)
	}
	amount := func(msat int64) *lnrpc.Amount { return &lnrpc.Amount{Sat: uint64(msat / 1000), Msat: uint64(msat)} }
	return &lnrpc.ChannelBalanceResponse{
		Balance: b.LocalMsat / 1000, LocalBalance: amount(b.LocalMsat), RemoteBalance: amount(0),
		UnsettledLocalBalance: amount(b.UnsettledLocalMsat), UnsettledRemoteBalance: amount(0),
		PendingOpenLocalBalance: amount(b.PendingOpenLocalMsat), PendingOpenRemoteBalance: amount(0),
	}, nil
}

func (s *lightningService) ListChannels(ctx context.Context, _ *lnrpc.ListChannelsRequest) (*lnrpc.ListChannelsResponse, error) {
	n, err := s.node.PendingHTLCs(ctx)
	if err != nil {
		return nil, statusOf("ListChannels", err)
	}
	ch := &lnrpc.Channel{Active: true, ChanId: 1}
	for range n {
		ch.PendingHtlcs = append(ch.PendingHtlcs, &lnrpc.HTLC{})
	}
	return &lnrpc.ListChannelsResponse{Channels: []*lnrpc.Channel{ch}}, nil
}

func (s *invoicesService) CancelInvoice(ctx context.Context, req *invoicesrpc.CancelInvoiceMsg) (*invoicesrpc.CancelInvoiceResp, error) {
	if err := s.node.CancelInvoice(ctx, hex.EncodeToString(req.PaymentHash)); err != nil {
		return nil, statusOf("CancelInvoice", err)
	}
	return &invoicesrpc.CancelInvoiceResp{}, nil
}
