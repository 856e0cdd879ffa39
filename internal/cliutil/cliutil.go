// Package cliutil holds what bankd's programs share on their command lines: logging (bankd,
// signerd, coldvault), and for the helper programs (signerd, coldvault) reading their HCL
// configuration and API token files.
package cliutil

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// maxTokenFileBytes bounds a token file.
const maxTokenFileBytes = 4096

// ReadTokenFile reads an API bearer token: a private file (no access for group or others) of
// one line.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token_file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("token_file: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("token_file %s is open to other users (mode %04o); make it private with chmod 600", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("token_file %s: %w", path, err)
	}
	token := strings.TrimSpace(string(b))
	switch {
	case len(b) > maxTokenFileBytes:
		return "", fmt.Errorf("token_file %s is larger than %d bytes", path, maxTokenFileBytes)
	case token == "" || strings.ContainsAny(token, " \t\r\n"):
		return "", fmt.Errorf("token_file %s must hold one token on one line", path)
	}
	return token, nil
}

// NewLogger returns a slog logger writing to w at level ("debug", "info", "warn", "error") in
// format ("text" or "json"); the errors name the -log-level and -log-format flags.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", format)
	}
}

// ReadConfigFile reads a configuration file of at most maxBytes and returns its source and its
// absolute path (the base of the relative paths in it).
func ReadConfigFile(path string, maxBytes int64) ([]byte, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", fmt.Errorf("resolve config path %s: %w", path, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	if info.Size() > maxBytes {
		return nil, "", fmt.Errorf("config %s is %d bytes, more than the %d allowed", abs, info.Size(), maxBytes)
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	return src, abs, nil
}

// DecodeHCL parses HCL source into v (gohcl tags); filename names it in errors.
func DecodeHCL(src []byte, filename string, v any) error {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return diagsError(diags)
	}
	if diags := gohcl.DecodeBody(file.Body, nil, v); diags.HasErrors() {
		return diagsError(diags)
	}
	return nil
}

// ResolvePath makes a configured path absolute against the config file's directory.
func ResolvePath(baseDir, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(baseDir, p)
	}
	return filepath.Clean(p)
}

// diagsError writes HCL's diagnostics, each with its position, as one error.
func diagsError(diags hcl.Diagnostics) error {
	var b strings.Builder
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d,%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString(": " + d.Detail)
		}
	}
	return errors.New(b.String())
}

// CheckAPIURL checks a bankd API URL from a helper's config (https://host:port, nothing more)
// and returns it in that form; program names the helper in the error.
func CheckAPIURL(raw, program string) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", fmt.Errorf("api_url %q: %v", raw, err)
	case u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
		return "", fmt.Errorf("api_url %q: want https://host:port (%s talks to bankd over TLS only)", raw, program)
	}
	return "https://" + u.Host, nil
}
