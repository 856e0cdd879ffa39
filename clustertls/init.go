package clustertls

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
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

// InitKeyring writes a gossip keyring of one new random 32-byte key to path (mode 0600) unless
// the file exists, and reports whether it wrote one. The node reads it as one base64 key per
// line, the first encrypting.
func InitKeyring(path string) (bool, error) {
	if exists(path) {
		return false, nil
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return false, fmt.Errorf("gossip key: %w", err)
	}
	if err := WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		return false, err
	}
	return true, nil
}

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
