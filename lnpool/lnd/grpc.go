package lnd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/bankd/bankd/lnpool/bolt11"
)

// DefaultCallTimeout bounds each unary call, and the wait for the first update of a payment
// stream, when Config.CallTimeout is zero.
const DefaultCallTimeout = 10 * time.Second

const (
	// maxRecvMsgSize lets a page of payments with many HTLC attempts through.
	maxRecvMsgSize = 64 << 20
	// paymentsPageSize is how many payments ListPayments asks for per call.
	paymentsPageSize = 500
	// maxMemoLength is lnd's limit on an invoice memo (invoices.MaxMemoSize).
	maxMemoLength = 1024
)

// Config says how to reach one lnd over gRPC.
type Config struct {
	Address      string // host:port of lnd's gRPC listener (rpclisten)
	TLSCertPath  string // lnd's tls.cert
	MacaroonPath string // a macaroon lnd baked, e.g. admin.macaroon
	CallTimeout  time.Duration
	// Network, when set, is the network every invoice lnd hands out must be for. When nil,
	// an invoice is checked against the network its own prefix names.
	Network *chaincfg.Params
}

// Dial prepares a Client for the lnd at cfg.Address. It reads and checks the TLS
// certificate and the macaroon but does not wait for the connection: an lnd that is down
// shows up as ErrUnavailable from the calls.
func Dial(ctx context.Context, cfg Config) (Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("lnd: no address configured")
	}
	if cfg.CallTimeout < 0 {
		return nil, fmt.Errorf("lnd %s: negative call timeout %v", cfg.Address, cfg.CallTimeout)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	tlsConfig, err := loadTLSConfig(cfg.TLSCertPath, time.Now())
	if err != nil {
		return nil, fmt.Errorf("lnd %s: %w", cfg.Address, err)
	}
	mac, err := loadMacaroon(cfg.MacaroonPath)
	if err != nil {
		return nil, fmt.Errorf("lnd %s: %w", cfg.Address, err)
	}
	conn, err := grpc.DialContext(ctx, cfg.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithPerRPCCredentials(mac),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("lnd %s: dial: %w", cfg.Address, err)
	}
	return newGRPCClient(conn, cfg), nil
}

func newGRPCClient(conn *grpc.ClientConn, cfg Config) *grpcClient {
	return &grpcClient{
		addr:     cfg.Address,
		timeout:  cfg.CallTimeout,
		network:  cfg.Network,
		conn:     conn,
		ln:       lnrpc.NewLightningClient(conn),
		router:   routerrpc.NewRouterClient(conn),
		invoices: invoicesrpc.NewInvoicesClient(conn),
	}
}

// loadTLSConfig trusts exactly the certificate in path, as lnd's clients do with its
// self-signed tls.cert.
func loadTLSConfig(path string, now time.Time) (*tls.Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read TLS certificate: %w", err)
	}
	pool := x509.NewCertPool()
	rest := raw
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate %s: %w", path, err)
		}
		if now.After(cert.NotAfter) {
			return nil, fmt.Errorf("TLS certificate %s expired at %s", path, cert.NotAfter.UTC().Format(time.RFC3339))
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("TLS certificate %s holds no PEM certificate", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// grpcClient is a Client talking to a real lnd.
type grpcClient struct {
	addr     string
	timeout  time.Duration
	network  *chaincfg.Params
	conn     *grpc.ClientConn
	ln       lnrpc.LightningClient
	router   routerrpc.RouterClient
	invoices invoicesrpc.InvoicesClient
}

var _ Client = (*grpcClient)(nil)

func (c *grpcClient) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

func (c *grpcClient) fail(call string, err error) error { return callError(c.addr, call, err) }

// notSent reports a request refused before anything went to lnd.
func (c *grpcClient) notSent(call, format string, args ...any) error {
	return fmt.Errorf("lnd %s %s: %w: %s (not sent)", c.addr, call, ErrRefused, fmt.Sprintf(format, args...))
}

func (c *grpcClient) GetInfo(ctx context.Context) (Info, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	r, err := c.ln.GetInfo(ctx, &lnrpc.GetInfoRequest{})
	if err != nil {
		return Info{}, c.fail("GetInfo", err)
	}
	info, err := convertInfo(r)
	if err != nil {
		return Info{}, replyError(c.addr, "GetInfo", err)
	}
	return info, nil
}

func (c *grpcClient) AddInvoice(ctx context.Context, req AddInvoiceRequest) (Invoice, error) {
	const call = "AddInvoice"
	if _, ok := satToMsat(req.ValueSat); !ok || req.ValueSat == 0 {
		return Invoice{}, c.notSent(call, "value %d sat", req.ValueSat)
	}
	if req.ExpirySeconds <= 0 {
		return Invoice{}, c.notSent(call, "expiry %d s", req.ExpirySeconds)
	}
	if len(req.Memo) > maxMemoLength {
		return Invoice{}, c.notSent(call, "memo of %d bytes, lnd allows %d", len(req.Memo), maxMemoLength)
	}
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	r, err := c.ln.AddInvoice(ctx, &lnrpc.Invoice{
		Memo:   req.Memo,
		Value:  req.ValueSat,
		Expiry: req.ExpirySeconds,
	})
	if err != nil {
		return Invoice{}, c.fail(call, err)
	}
	inv, err := convertAddInvoice(req, r, c.network)
	if err != nil {
		return Invoice{}, replyError(c.addr, call, err)
	}
	return inv, nil
}

func (c *grpcClient) LookupInvoice(ctx context.Context, hash string) (Invoice, error) {
	const call = "LookupInvoice"
	h, err := hex32(hash)
	if err != nil {
		return Invoice{}, c.notSent(call, "%v", err)
	}
	hash = hex.EncodeToString(h)
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	r, err := c.ln.LookupInvoice(ctx, &lnrpc.PaymentHash{RHash: h})
	if err != nil {
		return Invoice{}, c.fail(call, err)
	}
	inv, err := convertInvoice(r, c.network)
	if err != nil {
		return Invoice{}, replyError(c.addr, call, err)
	}
	if inv.Hash != hash {
		return Invoice{}, replyError(c.addr, call, invalid("r_hash", "%s, asked for %s", inv.Hash, hash))
	}
	return inv, nil
}

func (c *grpcClient) CancelInvoice(ctx context.Context, hash string) error {
	const call = "CancelInvoice"
	h, err := hex32(hash)
	if err != nil {
		return c.notSent(call, "%v", err)
	}
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	if _, err := c.invoices.CancelInvoice(ctx, &invoicesrpc.CancelInvoiceMsg{PaymentHash: h}); err != nil {
		return c.fail(call, err)
	}
	return nil
}

func (c *grpcClient) SubscribeInvoices(ctx context.Context, addIndex, settleIndex uint64) (InvoiceStream, error) {
	const call = "SubscribeInvoices"
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.ln.SubscribeInvoices(ctx, &lnrpc.InvoiceSubscription{
		AddIndex:    addIndex,
		SettleIndex: settleIndex,
	})
	if err != nil {
		cancel()
		return nil, c.fail(call, err)
	}
	return &invoiceStream{c: c, stream: stream, cancel: cancel}, nil
}

// invoiceStream checks every invoice lnd streams. Not safe for concurrent Recv.
type invoiceStream struct {
	c      *grpcClient
	stream lnrpc.Lightning_SubscribeInvoicesClient
	cancel context.CancelFunc
	err    error // sticky once the stream is over
}

func (s *invoiceStream) Recv() (Invoice, error) {
	const call = "SubscribeInvoices"
	if s.err != nil {
		return Invoice{}, s.err
	}
	r, err := s.stream.Recv()
	if err != nil {
		return Invoice{}, s.stop(streamError(s.c.addr, call, err))
	}
	inv, err := convertInvoice(r, s.c.network)
	if err != nil {
		return Invoice{}, s.stop(replyError(s.c.addr, call, err))
	}
	return inv, nil
}

func (s *invoiceStream) stop(err error) error {
	s.err = err
	s.cancel()
	return err
}

// streamError reports a stream that ended without its last word. lnd may have sent
// something we did not see, so whatever the status says this is ErrUnavailable (the
// permission check happens when the stream opens, so a later refusal cannot be that).
func streamError(addr, call string, err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("lnd %s %s: %w: stream closed by lnd", addr, call, ErrUnavailable)
	}
	return fmt.Errorf("lnd %s %s: %w: stream broke: %w", addr, call, ErrUnavailable, err)
}

func (c *grpcClient) SendPayment(ctx context.Context, req SendPaymentRequest) (PaymentStream, error) {
	const call = "SendPayment"
	inv, err := bolt11.Decode(req.PaymentRequest, c.invoiceNetwork(req.PaymentRequest))
	if err != nil {
		return nil, c.notSent(call, "%v", err)
	}
	amountMsat := inv.AmountMsat
	switch {
	case req.AmountSat < 0:
		return nil, c.notSent(call, "amount %d sat", req.AmountSat)
	case inv.AmountMsat == 0 && req.AmountSat == 0:
		return nil, c.notSent(call, "the invoice names no amount and none was given")
	case inv.AmountMsat != 0 && req.AmountSat != 0:
		return nil, c.notSent(call, "the invoice names its amount, none may be given")
	case inv.AmountMsat == 0:
		var ok bool
		if amountMsat, ok = satToMsat(req.AmountSat); !ok {
			return nil, c.notSent(call, "amount %d sat", req.AmountSat)
		}
	}
	if req.FeeLimitSat < 0 {
		return nil, c.notSent(call, "fee limit %d sat", req.FeeLimitSat)
	}
	if req.TimeoutSeconds <= 0 {
		return nil, c.notSent(call, "timeout %d s", req.TimeoutSeconds)
	}

	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.router.SendPaymentV2(ctx, &routerrpc.SendPaymentRequest{
		PaymentRequest:    req.PaymentRequest,
		Amt:               req.AmountSat,
		FeeLimitSat:       req.FeeLimitSat,
		TimeoutSeconds:    req.TimeoutSeconds,
		NoInflightUpdates: false,
	})
	if err != nil {
		cancel()
		return nil, c.fail(call, err)
	}
	s := &paymentStream{c: c, call: call, stream: stream, cancel: cancel, hash: inv.Hash, valueMsat: amountMsat}
	if err := s.first(); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *grpcClient) TrackPayment(ctx context.Context, hash string) (PaymentStream, error) {
	const call = "TrackPayment"
	h, err := hex32(hash)
	if err != nil {
		return nil, c.notSent(call, "%v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.router.TrackPaymentV2(ctx, &routerrpc.TrackPaymentRequest{
		PaymentHash:       h,
		NoInflightUpdates: false,
	})
	if err != nil {
		cancel()
		return nil, c.fail(call, err)
	}
	s := &paymentStream{c: c, call: call, stream: stream, cancel: cancel, hash: hex.EncodeToString(h), valueMsat: -1}
	if err := s.first(); err != nil {
		return nil, err
	}
	return s, nil
}

// paymentRecv is the receiving side of SendPaymentV2 and TrackPaymentV2.
type paymentRecv interface {
	Recv() (*lnrpc.Payment, error)
}

// paymentStream checks every update of one payment and ends with io.EOF after a final one.
// Not safe for concurrent Recv.
type paymentStream struct {
	c         *grpcClient
	call      string
	stream    paymentRecv
	cancel    context.CancelFunc
	hash      string // every update must be for this hash
	valueMsat int64  // and this amount; -1 when not known
	pending   *Payment
	err       error // sticky once the stream is over; io.EOF after a final update
}

// first waits, at most the call timeout, for the first update. lnd reports a refused
// payment (already paid, in flight, bad invoice) or an unknown hash as the stream's error
// before any update, so this is where the call's own error shows.
func (s *paymentStream) first() error {
	timer := time.AfterFunc(s.c.timeout, s.cancel)
	r, err := s.stream.Recv()
	timedOut := !timer.Stop()
	if err != nil {
		s.cancel()
		if timedOut {
			return fmt.Errorf("lnd %s %s: %w: no update within %v: %w", s.c.addr, s.call, ErrUnavailable, s.c.timeout, err)
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("lnd %s %s: %w: stream closed before the first update", s.c.addr, s.call, ErrUnavailable)
		}
		return s.c.fail(s.call, err)
	}
	p, err := s.check(r)
	if err != nil {
		s.cancel()
		return replyError(s.c.addr, s.call, err)
	}
	s.pending = &p
	return nil
}

func (s *paymentStream) Recv() (Payment, error) {
	if s.pending != nil {
		p := *s.pending
		s.pending = nil
		s.finishIfFinal(p)
		return p, nil
	}
	if s.err != nil {
		return Payment{}, s.err
	}
	r, err := s.stream.Recv()
	if err != nil {
		return Payment{}, s.stop(streamError(s.c.addr, s.call, err))
	}
	p, err := s.check(r)
	if err != nil {
		return Payment{}, s.stop(replyError(s.c.addr, s.call, err))
	}
	s.finishIfFinal(p)
	return p, nil
}

func (s *paymentStream) check(r *lnrpc.Payment) (Payment, error) {
	p, err := convertPayment(r)
	if err != nil {
		return Payment{}, err
	}
	if p.Hash != s.hash {
		return Payment{}, invalid("payment_hash", "%s on the stream of %s", p.Hash, s.hash)
	}
	if s.valueMsat >= 0 && p.ValueMsat != s.valueMsat {
		return Payment{}, invalid("value_msat", "%d, paying %d", p.ValueMsat, s.valueMsat)
	}
	return p, nil
}

func (s *paymentStream) finishIfFinal(p Payment) {
	if p.Status.Final() {
		s.stop(io.EOF)
	}
}

func (s *paymentStream) stop(err error) error {
	s.err = err
	s.cancel()
	return err
}

func (c *grpcClient) ListPayments(ctx context.Context, inFlightOnly bool) ([]Payment, error) {
	const call = "ListPayments"
	var (
		payments []Payment
		offset   uint64
	)
	for {
		page, err := c.listPaymentsPage(ctx, offset)
		if err != nil {
			return nil, err
		}
		if len(page.Payments) == 0 {
			break
		}
		// The index must move forward, or a broken lnd could keep us here forever.
		if page.LastIndexOffset <= offset {
			return nil, replyError(c.addr, call, invalid("last_index_offset", "%d after offset %d",
				page.LastIndexOffset, offset))
		}
		for _, r := range page.Payments {
			if r == nil {
				return nil, replyError(c.addr, call, invalid("payments", "nil entry"))
			}
			if r.PaymentIndex <= offset || r.PaymentIndex > page.LastIndexOffset {
				return nil, replyError(c.addr, call, invalid("payment_index", "%d outside (%d, %d]",
					r.PaymentIndex, offset, page.LastIndexOffset))
			}
			p, err := convertPayment(r)
			if err != nil {
				return nil, replyError(c.addr, call, err)
			}
			if inFlightOnly && p.Status.Final() {
				continue
			}
			payments = append(payments, p)
		}
		offset = page.LastIndexOffset
	}
	return payments, nil
}

func (c *grpcClient) listPaymentsPage(ctx context.Context, offset uint64) (*lnrpc.ListPaymentsResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	r, err := c.ln.ListPayments(ctx, &lnrpc.ListPaymentsRequest{
		IncludeIncomplete: true,
		IndexOffset:       offset,
		MaxPayments:       paymentsPageSize,
	})
	if err != nil {
		return nil, c.fail("ListPayments", err)
	}
	if r == nil {
		return nil, replyError(c.addr, "ListPayments", invalid("ListPaymentsResponse", "missing"))
	}
	if len(r.Payments) > paymentsPageSize {
		return nil, replyError(c.addr, "ListPayments", invalid("payments", "%d in a page of %d",
			len(r.Payments), paymentsPageSize))
	}
	return r, nil
}

func (c *grpcClient) EstimateRouteFee(ctx context.Context, destPubkey string, amountSat int64) (int64, error) {
	const call = "EstimateRouteFee"
	if err := checkPubkey("destination", destPubkey); err != nil {
		return 0, c.notSent(call, "%v", err)
	}
	if _, ok := satToMsat(amountSat); !ok || amountSat == 0 {
		return 0, c.notSent(call, "amount %d sat", amountSat)
	}
	dest, _ := hex.DecodeString(destPubkey)
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	r, err := c.router.EstimateRouteFee(ctx, &routerrpc.RouteFeeRequest{Dest: dest, AmtSat: amountSat})
	if err != nil {
		return 0, c.fail(call, err)
	}
	fee, err := routeFeeSat(r)
	if err != nil {
		return 0, replyError(c.addr, call, err)
	}
	if r.FailureReason != lnrpc.PaymentFailureReason_FAILURE_REASON_NONE {
		return 0, fmt.Errorf("lnd %s %s: %w: %s", c.addr, call, ErrRefused, r.FailureReason)
	}
	return fee, nil
}

func (c *grpcClient) ChannelBalance(ctx context.Context) (ChannelBalance, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	r, err := c.ln.ChannelBalance(ctx, &lnrpc.ChannelBalanceRequest{})
	if err != nil {
		return ChannelBalance{}, c.fail("ChannelBalance", err)
	}
	b, err := convertChannelBalance(r)
	if err != nil {
		return ChannelBalance{}, replyError(c.addr, "ChannelBalance", err)
	}
	return b, nil
}

func (c *grpcClient) PendingHTLCs(ctx context.Context) (int, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	r, err := c.ln.ListChannels(ctx, &lnrpc.ListChannelsRequest{})
	if err != nil {
		return 0, c.fail("PendingHTLCs", err)
	}
	if r == nil {
		return 0, replyError(c.addr, "PendingHTLCs", invalid("ListChannelsResponse", "missing"))
	}
	n := 0
	for _, ch := range r.Channels {
		if ch == nil {
			return 0, replyError(c.addr, "PendingHTLCs", invalid("channels", "nil entry"))
		}
		n += len(ch.PendingHtlcs)
	}
	return n, nil
}

func (c *grpcClient) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("lnd %s: close: %w", c.addr, err)
	}
	return nil
}

// invoiceNetwork is the network a payment request must be for: the configured one, or
// failing that the one it names (Decode then still checks everything else).
func (c *grpcClient) invoiceNetwork(pr string) *chaincfg.Params {
	if c.network != nil {
		return c.network
	}
	if net, err := bolt11.Network(pr); err == nil {
		return net
	}
	return &chaincfg.MainNetParams // Decode will say what is wrong with pr
}

// hex32 checks a caller's payment hash: 64 hex characters.
func hex32(hash string) ([]byte, error) {
	if len(hash) != 64 {
		return nil, fmt.Errorf("payment hash %q is not 64 hex characters", hash)
	}
	b, err := hex.DecodeString(hash)
	if err != nil {
		return nil, fmt.Errorf("payment hash %q is not hex", hash)
	}
	return b, nil
}
