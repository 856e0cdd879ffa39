// Package gobuild builds the harness's helper binaries (bankd with failpoints, fakelnd) from
// the bankd module the harness runs in, with the go tool.
package gobuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build runs `go build` of pkg (a path inside the module, e.g. "./cmd/bankd") into out, static
// (CGO_ENABLED=0), with tags when given, from the bankd module found from the working directory
// upwards.
func Build(ctx context.Context, out, pkg string, tags ...string) error {
	root, err := moduleRoot()
	if err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build %s: needs the go tool in PATH: %w", pkg, err)
	}
	args := []string{"build"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}

// moduleRoot is the directory of bankd's go.mod, from the working directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/bankd/bankd\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the bankd module")
		}
		dir = parent
	}
}
