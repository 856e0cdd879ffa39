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
	// EnvLnd names an lnd binary to use instead of <module root>/bin/lnd.
	EnvLnd = "BANKD_LND"
	// EnvRequireLnd, when set to anything, makes tests fail instead of skip when lnd is
	// missing (as EnvRequireBtcd does for btcd).
	EnvRequireLnd = "BANKD_REQUIRE_LND"
)

// BtcdPath returns the btcd binary to run: $BANKD_BTCD if set, else bin/btcd under the module
// root (the nearest directory above the working directory that holds a go.mod). The error for
// a missing binary says how to build it.
func BtcdPath() (string, error) {
	return binaryPath("btcd", EnvBtcd, "deps-btcd")
}

// LndPath returns the lnd binary to run: $BANKD_LND if set, else bin/lnd under the module
// root, found as [BtcdPath] finds btcd.
func LndPath() (string, error) {
	return binaryPath("lnd", EnvLnd, "deps-lnd")
}

// binaryPath finds the named binary through env, else in bin/ of the module root.
func binaryPath(name, env, makeTarget string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("regtest: %s=%s: %w", env, p, err)
		}
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("regtest: locating %s: %w (set %s, or run inside the module)", name, err, env)
	}
	p := filepath.Join(root, "bin", name)
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("regtest: %s not found: %w; run `make %s` (or set %s)",
			name, err, makeTarget, env)
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
