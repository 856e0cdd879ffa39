package node

import (
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

var (
	tlsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "ca_file"},
		{Name: "ca_key_file"},
	}}
	gossipSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "keyring_file"},
		{Name: "probe_interval"},
		{Name: "probe_timeout"},
		{Name: "gossip_interval"},
		{Name: "suspicion_mult"},
	}}
)

func (p *configParser) parseTLS(block *hcl.Block, tc *TLSConfig) {
	content, diags := block.Body.Content(tlsSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	if attr, ok := content.Attributes["ca_file"]; ok {
		if v, ok := p.nonEmptyStr(attr); ok {
			// ca.key beside it unless ca_key_file says otherwise.
			tc.CAFile = p.path(v)
			tc.CAKeyFile = filepath.Join(filepath.Dir(tc.CAFile), "ca.key")
		}
	}
	if attr, ok := content.Attributes["ca_key_file"]; ok {
		if v, ok := p.nonEmptyStr(attr); ok {
			tc.CAKeyFile = p.path(v)
		}
	}
}

func (p *configParser) parseGossip(block *hcl.Block, gc *GossipConfig) {
	content, diags := block.Body.Content(gossipSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	if attr, ok := content.Attributes["keyring_file"]; ok {
		if v, ok := p.nonEmptyStr(attr); ok {
			gc.KeyringFile = p.path(v)
		}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"probe_interval", &gc.Timing.ProbeInterval}, {"probe_timeout", &gc.Timing.ProbeTimeout}, {"gossip_interval", &gc.Timing.GossipInterval}} {
		attr, ok := content.Attributes[d.name]
		if !ok {
			continue
		}
		if v, ok := p.duration(attr); ok {
			if v < 10*time.Millisecond || v > time.Minute {
				p.errorf(attr.Expr.Range(), "invalid "+d.name, "%s must be between 10ms and 1m, got %s", d.name, v)
				continue
			}
			*d.dst = v
		}
	}
	if attr, ok := content.Attributes["suspicion_mult"]; ok {
		var v int64
		if diags := gohcl.DecodeExpression(attr.Expr, nil, &v); diags.HasErrors() || v < 1 || v > 20 {
			p.errorf(attr.Expr.Range(), "invalid suspicion_mult", "suspicion_mult must be a whole number between 1 and 20")
		} else {
			gc.Timing.SuspicionMult = int(v)
		}
	}
	if gc.Timing.ProbeTimeout != 0 && gc.Timing.ProbeInterval != 0 && gc.Timing.ProbeTimeout >= gc.Timing.ProbeInterval {
		p.errorf(block.DefRange, "invalid probe_timeout", "probe_timeout (%s) must be shorter than probe_interval (%s)", gc.Timing.ProbeTimeout, gc.Timing.ProbeInterval)
	}
}

func (p *configParser) nonEmptyStr(attr *hcl.Attribute) (string, bool) {
	v, ok := p.str(attr)
	if ok && v == "" {
		p.errorf(attr.Expr.Range(), "empty "+attr.Name, "%s must not be empty", attr.Name)
		return "", false
	}
	return v, ok
}

// Where the files of the tls and gossip blocks are when the blocks leave them out, relative to
// cluster.hcl. `bankd tls init` writes them there.
const (
	DefaultCAFile      = "tls/ca.crt"
	DefaultCAKeyFile   = "tls/ca.key"
	DefaultKeyringFile = "tls/gossip.keyring"
)

// checkTransportSecurity fills in the default certificate and keyring paths (TLS and gossip
// encryption are on unless the development flag insecure_plaintext is set), and refuses that
// flag on mainnet and next to the blocks it turns off.
func (p *configParser) checkTransportSecurity(content *hcl.BodyContent, tlsBlock, gossipBlock *hcl.Block, cfg *Config) {
	if cfg.InsecurePlaintext {
		rng := content.Attributes["insecure_plaintext"].Expr.Range()
		switch {
		case cfg.Chain.Network == "mainnet":
			p.errorf(rng, "insecure_plaintext on mainnet", "a mainnet cluster speaks TLS and encrypted gossip; remove insecure_plaintext and run `bankd tls init`")
		case tlsBlock != nil || (gossipBlock != nil && cfg.Gossip.KeyringFile != ""):
			p.errorf(rng, "conflicting insecure_plaintext", "insecure_plaintext turns TLS and gossip encryption off, yet a tls block or a gossip keyring_file is given; keep one or the other")
		}
		for _, n := range cfg.Nodes {
			if n.TLSCert != "" || n.TLSKey != "" {
				p.errorf(rng, "conflicting insecure_plaintext", "node %q has tls_cert or tls_key, but insecure_plaintext turns TLS off", n.ID)
			}
		}
		return
	}
	if cfg.TLS.CAFile == "" {
		cfg.TLS.CAFile, cfg.TLS.CAKeyFile = p.path(DefaultCAFile), p.path(DefaultCAKeyFile)
	}
	if cfg.Gossip.KeyringFile == "" {
		cfg.Gossip.KeyringFile = p.path(DefaultKeyringFile)
	}
	dir := filepath.Dir(cfg.TLS.CAFile)
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		if n.TLSCert == "" {
			n.TLSCert = filepath.Join(dir, n.ID+".crt")
		}
		if n.TLSKey == "" {
			n.TLSKey = filepath.Join(dir, n.ID+".key")
		}
	}
}

// ValidID reports whether s is a valid cluster, node, token or client name.
func ValidID(s string) bool { return idPattern.MatchString(s) }
