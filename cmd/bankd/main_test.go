package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRefusesBadUsageWithStatus2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte("name = \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join("..", "..", "cluster.hcl")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "Usage:"},
		{"unknown command", []string{"serve"}, exitUsage, `unknown command "serve"`},
		{"version", []string{"version"}, exitOK, "bankd " + version},
		{"help", []string{"help"}, exitOK, "bankd agent"},
		{"agent help", []string{"agent", "-h"}, exitOK, "-config"},
		{"missing node", []string{"agent", "-config", good}, exitUsage, "-node is required"},
		{"unknown flag", []string{"agent", "-nodes", "n1"}, exitUsage, "flag provided but not defined"},
		{"extra argument", []string{"agent", "-node", "n1", "now"}, exitUsage, "unexpected arguments"},
		{"bad log level", []string{"agent", "-node", "n1", "-log-level", "loud"}, exitUsage, "-log-level"},
		{"bad log format", []string{"agent", "-node", "n1", "-log-format", "xml"}, exitUsage, "-log-format"},
		{"missing config", []string{"agent", "-node", "n1", "-config", filepath.Join(dir, "nope.hcl")}, exitUsage, "config:"},
		{"broken config", []string{"agent", "-node", "n1", "-config", bad}, exitUsage, "config:"},
		{"node not in config", []string{"agent", "-node", "n9", "-config", good}, exitUsage, `node "n9" is not in`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, tt.code, out.String(), errOut.String(), tt.want)
			}
		})
	}
}
