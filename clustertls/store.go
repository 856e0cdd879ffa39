package clustertls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Store holds a node's certificate and key and the cluster CA it trusts. Every tls.Config it
// makes reads the current pair on each handshake, so Reload takes effect for new connections
// at once and leaves established ones alone.
type Store struct {
	self                      Identity
	caFile, certFile, keyFile string
	cur                       atomic.Pointer[material]
}

type material struct {
	cert  *tls.Certificate
	leaf  *x509.Certificate
	id    Identity
	roots *x509.CertPool
}

// Load reads the CA certificate and node self's certificate and key. The certificate must name
// self, be issued by the CA and be valid now.
func Load(self Identity, caFile, certFile, keyFile string) (*Store, error) {
	s := &Store{self: self, caFile: caFile, certFile: certFile, keyFile: keyFile}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. On any error the store keeps what it had.
func (s *Store) Reload() error {
	m, err := s.read()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.cur.Store(m)
	return nil
}

func (s *Store) read() (*material, error) {
	roots, err := LoadPool(s.caFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", s.certFile, s.keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse certificate %s: %w", s.certFile, err)
		}
	}
	id, err := verify(roots, s.self.Cluster, []*x509.Certificate{leaf}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", s.certFile, err)
	}
	if id != s.self {
		return nil, fmt.Errorf("certificate %s names %s, not this node (%s)", s.certFile, id, s.self)
	}
	return &material{cert: &pair, leaf: leaf, id: id, roots: roots}, nil
}

// LoadPool reads a PEM file of CA certificates.
func LoadPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read ca certificate: %w", err)
	}
	certs, err := parseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("ca certificate %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// Identity is who this node's certificate names.
func (s *Store) Identity() Identity { return s.cur.Load().id }

// NotAfter is when this node's certificate expires.
func (s *Store) NotAfter() time.Time {
	return s.cur.Load().leaf.NotAfter
}

// Verify checks a peer's chain (leaf first) against the current CA for usage, and that it names
// an identity of this cluster, which it returns.
func (s *Store) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	return verify(s.cur.Load().roots, s.self.Cluster, chain, usage)
}

func verify(roots *x509.CertPool, cluster string, chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return Identity{}, fmt.Errorf("not issued by the cluster CA or not valid now: %w", err)
	}
	id, err := IdentityOf(chain[0])
	if err != nil {
		return Identity{}, err
	}
	if id.Cluster != cluster {
		return Identity{}, fmt.Errorf("certificate names %s, of cluster %q, not of %q", id, id.Cluster, cluster)
	}
	return id, nil
}

// PeerCheck decides whether a verified peer identity may talk; nil allows any of the cluster's.
type PeerCheck func(Identity) error

// RequireNode allows only node identities of the cluster.
func RequireNode(id Identity) error {
	if id.Kind != KindNode {
		return fmt.Errorf("%s is not a node certificate", id)
	}
	return nil
}

// ServerConfig returns the TLS 1.3 server side: the node's certificate, and the peer's
// certificate verified against the cluster CA and then by check. With requireClient a peer
// without a certificate is refused; without it, one may come without (API clients with tokens),
// but one that presents a certificate must present a valid one.
func (s *Store) ServerConfig(requireClient bool, check PeerCheck, nextProtos []string) *tls.Config {
	auth := tls.RequestClientCert
	if requireClient {
		auth = tls.RequireAnyClientCert
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: auth,
		NextProtos: nextProtos,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				if requireClient {
					return errors.New("a client certificate from the cluster CA is required")
				}
				return nil
			}
			id, err := s.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return fmt.Errorf("client certificate refused: %w", err)
			}
			if check != nil {
				if err := check(id); err != nil {
					return fmt.Errorf("client certificate refused: %w", err)
				}
			}
			return nil
		},
	}
}

// ClientConfig returns the TLS 1.3 client side of a node dialling another: it presents the
// node's certificate and accepts a server whose certificate the cluster CA issued to a node
// that check allows. Host names are not checked: the identity in the certificate is.
func (s *Store) ClientConfig(check PeerCheck, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: nextProtos,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		// The chain is verified in VerifyConnection against the CA of the moment, by identity
		// rather than host name; InsecureSkipVerify only turns Go's host-name check off.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := s.Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("server certificate refused: %w", err)
			}
			if err := RequireNode(id); err != nil {
				return fmt.Errorf("server certificate refused: %w", err)
			}
			if check != nil {
				if err := check(id); err != nil {
					return fmt.Errorf("server certificate refused: %w", err)
				}
			}
			return nil
		},
	}
}

// PeerIdentity returns the identity of a connection's verified peer certificate.
func PeerIdentity(cs tls.ConnectionState) (Identity, bool) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, false
	}
	id, err := IdentityOf(cs.PeerCertificates[0])
	return id, err == nil
}
