package jepsen

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bankd/bankd/internal/failpoint"
)

// checkFailpoint refuses a failpoint run that would prove nothing: an unknown name, or a bankd
// binary built without the failpoints tag (where every failpoint is compiled out).
func checkFailpoint(name, bin string) error {
	if !failpoint.Known(name) {
		return fmt.Errorf("failpoint %q: want one of %s", name, strings.Join(failpoint.Names, ", "))
	}
	if !HasFailpoints(bin) {
		return fmt.Errorf("failpoint %s: %s was not built with -tags failpoints (see BuildFailpoints)", name, bin)
	}
	return nil
}

// failpointEnv is the agents' environment for a run with failpoint name ("" for none).
func failpointEnv(name string) []string {
	if name == "" {
		return nil
	}
	return []string{failpoint.EnvVar + "=" + name}
}

// HasFailpoints reports whether the Go binary at bin was built with the failpoints tag.
func HasFailpoints(bin string) bool {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), "failpoints") {
			return true
		}
	}
	return false
}

// BuildFailpoints builds bankd with the failpoints tag into out, from the module that holds this
// package's source (found from the working directory upwards). It needs the go tool.
func BuildFailpoints(ctx context.Context, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building bankd with failpoints needs the go tool in PATH (or pass a failpoints build as -bin): %w", err)
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-tags", "failpoints", "-o", out, "./cmd/bankd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags failpoints: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

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
			return "", errors.New("not inside the bankd module: cannot build bankd with failpoints")
		}
		dir = parent
	}
}
