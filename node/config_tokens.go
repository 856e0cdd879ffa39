package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Token scopes. A token holds one or more; rpc/ maps every procedure to the one it needs.
const (
	// ScopeRead reads the ledger, locks, events, wallets, chain and Lightning state.
	ScopeRead = "read"
	// ScopeWrite moves money between customer accounts: accounts, transfers, locks, deposit
	// addresses, invoices and payments. It implies read.
	ScopeWrite = "write"
	// ScopeOperator runs the bank's machinery: wallets, rescans, the lnd pool, problems, state
	// hashes. It implies read, not write.
	ScopeOperator = "operator"
	// ScopeSigner delivers signatures of payout transactions (signerd) and reads. It implies
	// read only: a signer cannot ask for, approve or cancel a withdrawal.
	ScopeSigner = "signer"
	// ScopeAdmin changes the cluster itself (membership, leadership) and may do everything.
	ScopeAdmin = "admin"
)

// AllScopes lists the scopes in order of privilege.
var AllScopes = []string{ScopeRead, ScopeSigner, ScopeWrite, ScopeOperator, ScopeAdmin}

// TokensConfig holds the API tokens.
type TokensConfig struct {
	// Tokens in file order: the `token "<name>"` blocks, then the development lists.
	Tokens []TokenConfig
}

// TokenConfig is one API token. Only the SHA-256 of its secret is kept.
type TokenConfig struct {
	// Name identifies the caller (the principal): the label of its token block, or
	// dev-<scope>-<n> for an entry of a development list.
	Name   string
	Scopes []string
	SHA256 [sha256.Size]byte
	// Source says where the secret came from, for logs; it never holds the secret.
	Source string
	// Development marks a token written in clear in cluster.hcl (the read, write, operator and
	// admin lists): fine on a laptop, refused on mainnet.
	Development bool
}

// Development reports whether any token was written in clear in cluster.hcl.
func (t TokensConfig) Development() bool {
	return slices.ContainsFunc(t.Tokens, func(tc TokenConfig) bool { return tc.Development })
}

// Limits of the tokens block.
const (
	maxTokens = 64
	// maxTokenLen bounds a secret; rpc/ refuses longer bearer tokens before hashing them.
	maxTokenLen = 256
	// minFileTokenLen keeps secrets in token files out of guessing range.
	minFileTokenLen = 16
	maxTokenFileLen = 4096
)

var (
	tokensSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: ScopeRead}, {Name: ScopeSigner}, {Name: ScopeWrite}, {Name: ScopeOperator}, {Name: ScopeAdmin},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "token", LabelNames: []string{"name"}}},
	}
	tokenSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "scopes", Required: true},
		{Name: "token_file"},
		{Name: "token_sha256"},
	}}
)

// tokenSet collects tokens and refuses a second token with the same name or secret.
type tokenSet struct {
	p       *configParser
	tc      *TokensConfig
	names   map[string]bool
	secrets map[[sha256.Size]byte]string
}

func (s *tokenSet) add(rng hcl.Range, t TokenConfig) {
	switch {
	case len(s.tc.Tokens) == maxTokens:
		s.p.errorf(rng, "too many tokens", "at most %d tokens are allowed", maxTokens)
	case s.names[t.Name]:
		s.p.errorf(rng, "duplicate token name", "a token named %q is already defined", t.Name)
	case s.secrets[t.SHA256] != "":
		s.p.errorf(rng, "duplicate token", "token %q has the same secret as token %q; one secret, one caller", t.Name, s.secrets[t.SHA256])
	default:
		s.names[t.Name] = true
		s.secrets[t.SHA256] = t.Name
		s.tc.Tokens = append(s.tc.Tokens, t)
	}
}

func (p *configParser) parseTokens(block *hcl.Block, tc *TokensConfig) {
	content, diags := block.Body.Content(tokensSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	set := &tokenSet{p: p, tc: tc, names: map[string]bool{}, secrets: map[[sha256.Size]byte]string{}}
	for _, b := range content.Blocks {
		if t, ok := p.parseTokenBlock(b); ok {
			set.add(b.DefRange, t)
		}
	}
	for _, scope := range AllScopes {
		attr, ok := content.Attributes[scope]
		if !ok {
			continue
		}
		var list []string
		if diags := gohcl.DecodeExpression(attr.Expr, nil, &list); diags.HasErrors() {
			p.errorf(attr.Expr.Range(), "invalid "+scope, "%s must be a list of strings: %s", scope, firstDetail(diags))
			continue
		}
		for i, secret := range list {
			if err := checkTokenSecret(secret, 1); err != nil {
				p.errorf(attr.Expr.Range(), "invalid "+scope, "%s[%d] %v", scope, i, err)
				continue
			}
			set.add(attr.Expr.Range(), TokenConfig{
				Name:        fmt.Sprintf("dev-%s-%d", scope, i+1),
				Scopes:      []string{scope},
				SHA256:      sha256.Sum256([]byte(secret)),
				Source:      "development list " + scope,
				Development: true,
			})
		}
	}
}

// parseTokenBlock reads `token "<name>" { scopes = [...], token_file = "..." }` (or
// token_sha256 instead of token_file).
func (p *configParser) parseTokenBlock(block *hcl.Block) (TokenConfig, bool) {
	name := block.Labels[0]
	if !idPattern.MatchString(name) || strings.HasPrefix(name, "dev-") {
		p.errorf(block.LabelRanges[0], "invalid token name", "token name %q must be 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit, and not start with dev- (kept for the development lists)", name)
		return TokenConfig{}, false
	}
	content, diags := block.Body.Content(tokenSchema)
	p.diags = append(p.diags, diags...)
	if content == nil || diags.HasErrors() {
		return TokenConfig{}, false
	}
	t := TokenConfig{Name: name}
	attr := content.Attributes["scopes"]
	if diags := gohcl.DecodeExpression(attr.Expr, nil, &t.Scopes); diags.HasErrors() {
		p.errorf(attr.Expr.Range(), "invalid scopes", "token %q: scopes must be a list of strings: %s", name, firstDetail(diags))
		return TokenConfig{}, false
	}
	if len(t.Scopes) == 0 {
		p.errorf(attr.Expr.Range(), "invalid scopes", "token %q: name at least one of %s", name, strings.Join(AllScopes, ", "))
		return TokenConfig{}, false
	}
	for _, sc := range t.Scopes {
		if !slices.Contains(AllScopes, sc) {
			p.errorf(attr.Expr.Range(), "invalid scopes", "token %q: unknown scope %q; scopes are %s", name, sc, strings.Join(AllScopes, ", "))
			return TokenConfig{}, false
		}
	}
	file, hasFile := content.Attributes["token_file"]
	digest, hasDigest := content.Attributes["token_sha256"]
	switch {
	case hasFile == hasDigest:
		p.errorf(block.DefRange, "invalid token", "token %q: set exactly one of token_file (a file holding the secret) and token_sha256 (its SHA-256 in hex)", name)
		return TokenConfig{}, false
	case hasFile:
		path, ok := p.str(file)
		if !ok {
			return TokenConfig{}, false
		}
		path = p.path(path)
		secret, err := readTokenFile(path)
		if err != nil {
			p.errorf(file.Expr.Range(), "invalid token_file", "token %q: %v", name, err)
			return TokenConfig{}, false
		}
		t.SHA256, t.Source = sha256.Sum256([]byte(secret)), "token_file "+path
	default:
		s, ok := p.str(digest)
		if !ok {
			return TokenConfig{}, false
		}
		raw, err := hex.DecodeString(s)
		if err != nil || len(raw) != sha256.Size {
			p.errorf(digest.Expr.Range(), "invalid token_sha256", "token %q: token_sha256 must be 64 hex digits (sha256sum of the secret)", name)
			return TokenConfig{}, false
		}
		copy(t.SHA256[:], raw)
		t.Source = "token_sha256"
	}
	return t, true
}

// readTokenFile reads the secret of a token file. The file must not be open to other users:
// a token is a key to the bank's money, and a world-readable copy is a leaked one.
func readTokenFile(path string) (string, error) {
	b, err := readPrivateFile(path, "token file", maxTokenFileLen)
	if err != nil {
		return "", err
	}
	secret := strings.TrimSpace(string(b))
	if err := checkTokenSecret(secret, minFileTokenLen); err != nil {
		return "", fmt.Errorf("token file %s: the token %w", path, err)
	}
	return secret, nil
}

// checkTokenSecret checks what a client will send after "Bearer ".
func checkTokenSecret(secret string, minLen int) error {
	switch {
	case secret == "":
		return fmt.Errorf("is empty")
	case len(secret) < minLen:
		return fmt.Errorf("must be at least %d characters (e.g. head -c 32 /dev/urandom | base64)", minLen)
	case len(secret) > maxTokenLen:
		return fmt.Errorf("is longer than %d bytes", maxTokenLen)
	case strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("contains whitespace or control characters")
	}
	return nil
}

// checkTokensForNetwork refuses the development lists on mainnet: their secrets sit in clear in
// a file every node shares, and the example cluster.hcl publishes them.
func (p *configParser) checkTokensForNetwork(block *hcl.Block, cfg *Config) {
	if block == nil || cfg.Chain.Network != "mainnet" || !cfg.Tokens.Development() {
		return
	}
	p.errorf(block.DefRange, "development tokens on mainnet",
		"a mainnet cluster takes its tokens from token blocks with token_file or token_sha256; the read, write, operator and admin lists hold secrets in clear and are refused")
}
