package regtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Environment variables the package reads.
const (
	// EnvBtcd names a btcd binary to use instead of <module root>/bin/btcd.
	EnvBtcd = "BANKD_BTCD"
	// EnvRequireBtcd, when set to anything, makes tests fail instead of skip when btcd is
	// missing. CI sets it so that a broken `make deps-btcd` cannot pass silently.
	EnvRequireBtcd = "BANKD_REQUIRE_BTCD"
)

// BtcdPath returns the btcd binary to run: $BANKD_BTCD if set, else bin/btcd under the module
// root (the nearest directory above the working directory that holds a go.mod). The error for
// a missing binary says how to build it.
func BtcdPath() (string, error) {
	if p := os.Getenv(EnvBtcd); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("regtest: %s=%s: %w", EnvBtcd, p, err)
		}
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("regtest: locating btcd: %w (set %s, or run inside the module)", err, EnvBtcd)
	}
	p := filepath.Join(root, "bin", "btcd")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("regtest: btcd not found: %w; run `make deps-btcd` (or set %s)",
			err, EnvBtcd)
	}
	return p, nil
}

// ModuleRoot returns the nearest directory at or above the working directory that contains a
// go.mod file.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("looking for go.mod: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or any directory above it")
		}
		dir = parent
	}
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
