package node

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxKeyringKeys bounds a gossip keyring file; rotation needs two or three keys at a time.
const maxKeyringKeys = 16

// readKeyring reads a gossip keyring file: one base64 key (16, 24 or 32 bytes) per line, the
// first being the primary that encrypts; blank lines and lines starting with # are skipped. Like
// a token file, it must not be open to other users.
func readKeyring(path string) ([][]byte, error) {
	b, err := readPrivateFile(path, "gossip keyring", maxTokenFileLen)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("gossip keyring %s line %d: not base64: %w", path, i+1, err)
		}
		if len(key) != 16 && len(key) != 24 && len(key) != 32 {
			return nil, fmt.Errorf("gossip keyring %s line %d: a key must be 16, 24 or 32 bytes, got %d (make one with: head -c 32 /dev/urandom | base64)", path, i+1, len(key))
		}
		for _, k := range keys {
			if bytes.Equal(k, key) {
				return nil, fmt.Errorf("gossip keyring %s line %d: the key is listed twice", path, i+1)
			}
		}
		if len(keys) == maxKeyringKeys {
			return nil, fmt.Errorf("gossip keyring %s holds more than %d keys", path, maxKeyringKeys)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip keyring %s holds no key", path)
	}
	return keys, nil
}

// readPrivateFile reads a small secret file (a token, a keyring) that must be a regular file
// closed to other users: a secret others can read is a leaked one.
func readPrivateFile(path, what string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := info.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("%s %s is open to other users (mode %04o); make it private with chmod 600", what, path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s %s is larger than %d bytes", what, path, limit)
	}
	return b, nil
}
