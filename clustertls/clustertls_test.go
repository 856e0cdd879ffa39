package clustertls

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, l Leaf) *x509.Certificate {
	t.Helper()
	p, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(p.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A peer certificate is accepted only when the cluster's CA issued it, it is valid now, it has
// the usage asked for and it names an identity of this cluster.
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	ca, keyPEM, err := NewCA("bank", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "ca.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	n1, err := ca.IssueNode("bank", "n1", []string{"127.0.0.1", "bank-1.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.Write(filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key")); err != nil {
		t.Fatal(err)
	}
	store, err := Load(NodeIdentity("bank", "n1"), caFile, filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"))
	if err != nil {
		t.Fatal(err)
	}
	if got := store.Identity(); got != NodeIdentity("bank", "n1") {
		t.Fatalf("store identity %s", got)
	}

	other, _, err := NewCA("bank", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(l Leaf, err error) *x509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return parse(t, l)
	}
	n2 := issue(ca.IssueNode("bank", "n2", nil, time.Hour))
	client := issue(ca.IssueClient("bank", "coldvault", time.Hour))
	for _, tt := range []struct {
		name  string
		cert  *x509.Certificate
		usage x509.ExtKeyUsage
		want  Identity
		err   string
	}{
		{"a node as a client", n2, x509.ExtKeyUsageClientAuth, NodeIdentity("bank", "n2"), ""},
		{"a node as a server", n2, x509.ExtKeyUsageServerAuth, NodeIdentity("bank", "n2"), ""},
		{"a client as a client", client, x509.ExtKeyUsageClientAuth, ClientIdentity("bank", "coldvault"), ""},
		{"a client as a server", client, x509.ExtKeyUsageServerAuth, Identity{}, "not issued by the cluster CA or not valid now"},
		{"another CA's node", issue(other.IssueNode("bank", "n2", nil, time.Hour)), x509.ExtKeyUsageClientAuth, Identity{}, "unknown authority"},
		{"an expired node", issue(ca.IssueNodeAt("bank", "n2", nil, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))), x509.ExtKeyUsageClientAuth, Identity{}, "expired"},
		{"a node of another cluster", issue(ca.IssueNode("other", "n2", nil, time.Hour)), x509.ExtKeyUsageClientAuth, Identity{}, `of cluster "other", not of "bank"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := store.Verify([]*x509.Certificate{tt.cert}, tt.usage)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Verify = %v, %v; want an error mentioning %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Verify = %v, %v; want %v", got, err, tt.want)
			}
		})
	}

	// A store does not load a certificate it would refuse from a peer.
	if _, err := Load(NodeIdentity("other-cluster", "n1"), caFile, filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key")); err == nil {
		t.Error("Load accepted a certificate of another cluster")
	}
	if _, err := Load(NodeIdentity("bank", "n2"), caFile, filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key")); err == nil {
		t.Error("Load accepted another node's certificate")
	}
	leaf := parse(t, n1)
	if len(leaf.IPAddresses) != 1 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "bank-1.example" {
		t.Errorf("SANs %v %v, want the IP and the name given", leaf.IPAddresses, leaf.DNSNames)
	}
}

// Init makes a CA and node certificates once and never overwrites them.
func TestInitIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	nodes := []NodeFiles{{ID: "n1", Hosts: []string{"127.0.0.1"}, CertFile: filepath.Join(dir, "n1.crt"), KeyFile: filepath.Join(dir, "n1.key")}}
	wrote, err := Init("bank", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), nodes)
	if err != nil || len(wrote) != 4 {
		t.Fatalf("Init = %v, %v; want 4 files", wrote, err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "n1.crt"))
	wrote, err = Init("bank", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), nodes)
	if err != nil || len(wrote) != 0 {
		t.Fatalf("second Init = %v, %v; want nothing written", wrote, err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "n1.crt"))
	if string(before) != string(after) {
		t.Fatal("a second Init replaced a certificate")
	}
	if info, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v", err)
	}
	// A CA certificate without its key cannot issue.
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	nodes[0].CertFile = filepath.Join(dir, "n9.crt")
	if _, err := Init("bank", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), nodes); err == nil {
		t.Fatal("Init issued without the CA key")
	}
}

func TestIdentityOfRefusesAmbiguousCertificates(t *testing.T) {
	for _, tt := range []struct {
		name, uri, want string
	}{
		{"no bankd URI", "https://example.com/", "no bankd identity"},
		{"a bad kind", "bankd://bank/admin/x", "is not bankd://"},
		{"no name", "bankd://bank/node/", "is not bankd://"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
			u, _ := NodeIdentity("bank", "n1").URI().Parse(tt.uri)
			c.URIs = append(c.URIs, u)
			if _, err := IdentityOf(c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("IdentityOf = %v, want %q", err, tt.want)
			}
		})
	}
	two := &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs: append(append([]*url.URL{}, NodeIdentity("bank", "n1").URI()), NodeIdentity("bank", "n2").URI())}
	if _, err := IdentityOf(two); err == nil || !strings.Contains(err.Error(), "one certificate, one identity") {
		t.Fatalf("IdentityOf with two identities = %v", err)
	}
}
