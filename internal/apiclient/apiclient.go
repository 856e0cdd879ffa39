// Package apiclient builds Connect clients of every bankd service on one node's API, sending a
// bearer token (rpc/bearer) with every call. The test clusters (internal/testcluster), the
// jepsen harness and the benchmarks use it, so a change to how a client reaches a node (TLS
// with the cluster's CA) is made here and in the HTTP client its callers pass.
//
// It only builds clients: it never retries, never picks a node and never holds a token
// anywhere but in the interceptor it installs.
package apiclient

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/clustertls"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/rpc/bearer"
)

// Clients are Connect clients of one node's API, named after their services.
type Clients struct {
	Ledger    bankdv1connect.LedgerServiceClient
	Lock      bankdv1connect.LockServiceClient
	Event     bankdv1connect.EventServiceClient
	Cluster   bankdv1connect.ClusterServiceClient
	Wallet    bankdv1connect.WalletServiceClient
	Chain     bankdv1connect.ChainServiceClient
	Lightning bankdv1connect.LightningServiceClient
	Payout    bankdv1connect.PayoutServiceClient
	Vault     bankdv1connect.VaultServiceClient
}

// New returns clients of the API at baseURL (e.g. https://127.0.0.1:7201) that send token as a
// bearer token; opts add e.g. connect.WithGRPC().
func New(hc *http.Client, baseURL, token string, opts ...connect.ClientOption) *Clients {
	opts = append([]connect.ClientOption{connect.WithInterceptors(bearer.Token(token))}, opts...)
	return &Clients{
		Ledger:    bankdv1connect.NewLedgerServiceClient(hc, baseURL, opts...),
		Lock:      bankdv1connect.NewLockServiceClient(hc, baseURL, opts...),
		Event:     bankdv1connect.NewEventServiceClient(hc, baseURL, opts...),
		Cluster:   bankdv1connect.NewClusterServiceClient(hc, baseURL, opts...),
		Wallet:    bankdv1connect.NewWalletServiceClient(hc, baseURL, opts...),
		Chain:     bankdv1connect.NewChainServiceClient(hc, baseURL, opts...),
		Lightning: bankdv1connect.NewLightningServiceClient(hc, baseURL, opts...),
		Payout:    bankdv1connect.NewPayoutServiceClient(hc, baseURL, opts...),
		Vault:     bankdv1connect.NewVaultServiceClient(hc, baseURL, opts...),
	}
}

// maxIdleConnsPerHost keeps connections for the many concurrent callers of load tests and
// benchmarks (Go's default of 2 would make them dial over and over).
const maxIdleConnsPerHost = 256

// NewHTTPClient returns an HTTP client for test and benchmark load: Go's default transport,
// without a proxy (a harness talks to its own nodes only), keeping many idle connections, and
// trusting the cluster CA roots for https (nil: the system's roots).
func NewHTTPClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	return &http.Client{Transport: t}
}

// ForCluster returns the HTTP client and URL scheme for a cluster's API: https trusting caFile,
// or http when caFile is "" (insecure_plaintext).
func ForCluster(caFile string) (*http.Client, string, error) {
	if caFile == "" {
		return NewHTTPClient(nil), "http", nil
	}
	roots, err := clustertls.LoadPool(caFile)
	if err != nil {
		return nil, "", err
	}
	return NewHTTPClient(roots), "https", nil
}
