package regtest

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

// DialLnd opens a gRPC connection to an lnd's RPC server at addr (host:port) over TLS, trusting
// exactly the certificate in certPath, and authenticates every call with the macaroon in
// macaroonPath. The connection is lazy: it does not wait for lnd to answer. It reconnects
// within about a second after lnd restarts, so one connection serves an lnd for its lifetime.
func DialLnd(addr, certPath, macaroonPath string) (*grpc.ClientConn, error) {
	pem, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("regtest: lnd TLS certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("regtest: no PEM certificate in %s", certPath)
	}
	conn, err := grpc.Dial(addr,
		grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "")),
		grpc.WithPerRPCCredentials(macaroonFile(macaroonPath)),
		// The default backoff grows to two minutes; a restarted lnd should be reached at once.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("regtest: dialing lnd at %s: %w", addr, err)
	}
	return conn, nil
}

// macaroonFile sends the macaroon stored in a file with every call, as lnd expects it: hex in
// the "macaroon" metadata key. It reads the file at every call, so a macaroon that lnd writes
// after the connection was made (or writes again) is always the one sent.
type macaroonFile string

func (path macaroonFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	mac, err := os.ReadFile(string(path))
	if err != nil {
		return nil, fmt.Errorf("regtest: lnd macaroon: %w", err)
	}
	return map[string]string{"macaroon": hex.EncodeToString(mac)}, nil
}

func (macaroonFile) RequireTransportSecurity() bool { return true }
