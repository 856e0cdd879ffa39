// Package clustertls holds a bankd cluster's certificates: it issues a cluster CA, node
// certificates and client certificates, names who a certificate speaks for, and keeps a node's
// own certificate and the CA it trusts in a Store that reloads without a restart.
//
// A certificate names its holder by a URI SAN:
//
//	bankd://<cluster>/node/<id>     a node of cluster.hcl (Raft, forwarding, the API port)
//	bankd://<cluster>/client/<name> an API client (e.g. coldvault), never a node
//
// Node certificates carry both the server and the client extended key usages (a node dials
// and is dialled); client certificates carry only the client usage, so a client certificate
// cannot serve or speak Raft. Keys are ECDSA P-256.
//
// The package is a leaf: it imports nothing of bankd, so the test-cluster writer can use it.
package clustertls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Kinds of identity a certificate can name.
const (
	KindNode   = "node"
	KindClient = "client"
)

const uriScheme = "bankd"

// Default validities of what Issue* create.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 2 * 365 * 24 * time.Hour
)

// Identity is who a certificate speaks for.
type Identity struct {
	Cluster string
	Kind    string // KindNode or KindClient
	Name    string // the node id or the client name
}

func (id Identity) String() string { return id.URI().String() }

// URI is the identity as the URI SAN that carries it.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: id.Cluster, Path: "/" + id.Kind + "/" + id.Name}
}

// NodeIdentity and ClientIdentity name a node and a client of cluster.
func NodeIdentity(cluster, id string) Identity { return Identity{cluster, KindNode, id} }
func ClientIdentity(cluster, name string) Identity {
	return Identity{cluster, KindClient, name}
}

// ErrNoIdentity is returned by IdentityOf for a certificate with no bankd URI SAN.
var ErrNoIdentity = errors.New("certificate names no bankd identity (no bankd:// URI SAN)")

// IdentityOf reads the identity a certificate speaks for. A certificate must carry exactly one
// bankd URI; a node identity also needs both the server and client usages, and a client
// identity the client usage.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) != 2 || u.Host == "" || parts[1] == "" || (parts[0] != KindNode && parts[0] != KindClient) {
			return Identity{}, fmt.Errorf("certificate URI %q is not bankd://<cluster>/node|client/<name>", u)
		}
		found = append(found, Identity{Cluster: u.Host, Kind: parts[0], Name: parts[1]})
	}
	switch len(found) {
	case 0:
		return Identity{}, ErrNoIdentity
	case 1:
	default:
		return Identity{}, fmt.Errorf("certificate names %d bankd identities; one certificate, one identity", len(found))
	}
	id := found[0]
	if id.Kind == KindNode && !(hasUsage(cert, x509.ExtKeyUsageServerAuth) && hasUsage(cert, x509.ExtKeyUsageClientAuth)) {
		return Identity{}, fmt.Errorf("node certificate %s lacks the server or client key usage", id)
	}
	if id.Kind == KindClient && !hasUsage(cert, x509.ExtKeyUsageClientAuth) {
		return Identity{}, fmt.Errorf("client certificate %s lacks the client key usage", id)
	}
	return id, nil
}

func hasUsage(cert *x509.Certificate, u x509.ExtKeyUsage) bool {
	return slices.Contains(cert.ExtKeyUsage, u)
}

// CA is a cluster's certificate authority: its certificate and signing key.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
}

// NewCA creates a self-signed CA for cluster, valid from now for validity.
func NewCA(cluster string, validity time.Duration) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ca key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "bankd CA " + cluster, Organization: []string{"bankd"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key}, keyPEM, nil
}

// LoadCA reads a CA certificate and its key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read ca certificate: %w", err)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca certificate %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read ca key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca key %s: %w", keyFile, err)
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("ca certificate %s is not a CA", certFile)
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("ca key %s does not belong to %s", keyFile, certFile)
	}
	return &CA{Cert: certs[0], CertPEM: certPEM, Key: key}, nil
}

// Leaf is an issued certificate and its key, PEM encoded.
type Leaf struct {
	CertPEM []byte
	KeyPEM  []byte
}

// IssueNode issues node id's certificate. hosts are the host parts of the node's addresses:
// IPs become IP SANs and names DNS SANs, so API clients verify the node by the address they dial.
func (ca *CA) IssueNode(cluster, id string, hosts []string, validity time.Duration) (Leaf, error) {
	return ca.issue(nodeTemplate(cluster, id, hosts), validity)
}

// IssueNodeAt is IssueNode with an explicit validity window (tests issue expired certificates).
func (ca *CA) IssueNodeAt(cluster, id string, hosts []string, notBefore, notAfter time.Time) (Leaf, error) {
	tmpl := nodeTemplate(cluster, id, hosts)
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	return ca.sign(tmpl)
}

func nodeTemplate(cluster, id string, hosts []string) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: id, Organization: []string{"bankd " + cluster}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{NodeIdentity(cluster, id).URI()},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl
}

// IssueClient issues an API client's certificate: client usage only, so it can neither serve
// nor speak Raft.
func (ca *CA) IssueClient(cluster, name string, validity time.Duration) (Leaf, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"bankd " + cluster}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{ClientIdentity(cluster, name).URI()},
	}, validity)
}

func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (Leaf, error) {
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	return ca.sign(tmpl)
}

func (ca *CA) sign(tmpl *x509.Certificate) (Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return Leaf{}, err
	}
	tmpl.SerialNumber = serial
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Leaf{}, fmt.Errorf("issue certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Leaf{}, err
	}
	return Leaf{CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: keyPEM}, nil
}

// Write writes the certificate and key to certFile and keyFile (the key with mode 0600),
// creating their directories.
func (l Leaf) Write(certFile, keyFile string) error {
	if err := WriteFile(certFile, l.CertPEM, 0o644); err != nil {
		return err
	}
	return WriteFile(keyFile, l.KeyPEM, 0o600)
}

// WriteFile writes data to path through a temporary file and a rename, creating the directory.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create directory for %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return signer, nil
}

// parseCerts returns every certificate of a PEM bundle, refusing one with none or with
// anything but certificates.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q is not a certificate", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
