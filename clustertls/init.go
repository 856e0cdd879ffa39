package clustertls

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"time"
)

// NodeFiles says where a node's certificate and key go and which hosts it answers on.
type NodeFiles struct {
	ID       string
	Hosts    []string
	CertFile string
	KeyFile  string
}

// Init makes what a cluster's nodes need: the CA (created at caCertFile and caKeyFile unless
// the certificate exists, in which case its key must be there too) and a certificate for every
// node whose certificate file is missing. Existing files are never overwritten. It returns the
// files it wrote.
func Init(cluster, caCertFile, caKeyFile string, nodes []NodeFiles) ([]string, error) {
	var wrote []string
	ca, err := LoadCA(caCertFile, caKeyFile)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && !exists(caCertFile):
		var keyPEM []byte
		ca, keyPEM, err = NewCA(cluster, DefaultCAValidity)
		if err != nil {
			return nil, err
		}
		if exists(caKeyFile) {
			return nil, fmt.Errorf("%s exists but %s does not; move the stray key away or restore the CA certificate", caKeyFile, caCertFile)
		}
		if err := WriteFile(caKeyFile, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := WriteFile(caCertFile, ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
		wrote = append(wrote, caCertFile, caKeyFile)
	default:
		return nil, err
	}
	for _, n := range nodes {
		if exists(n.CertFile) {
			continue
		}
		leaf, err := ca.IssueNode(cluster, n.ID, n.Hosts, DefaultLeafValidity)
		if err != nil {
			return wrote, err
		}
		if err := leaf.Write(n.CertFile, n.KeyFile); err != nil {
			return wrote, err
		}
		wrote = append(wrote, n.CertFile, n.KeyFile)
	}
	return wrote, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// ExpiresWithin reports whether a certificate expires within d from now (for warnings).
func (s *Store) ExpiresWithin(d time.Duration) bool { return time.Until(s.NotAfter()) < d }

// HostsOf returns the distinct hosts of host:port addresses, in order: the SANs of a node that
// listens on them.
func HostsOf(addrs ...string) []string {
	var hosts []string
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil || h == "" || slices.Contains(hosts, h) {
			continue
		}
		hosts = append(hosts, h)
	}
	return hosts
}
