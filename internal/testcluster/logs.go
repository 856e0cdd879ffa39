package testcluster

import (
	"bytes"
	"strings"
	"sync"
)

// maxLogBytes bounds the logs kept of an in-process cluster; the older half is dropped when
// it is reached.
const maxLogBytes = 4 << 20

// logBuffer keeps a cluster's logs for assertions and for the report of a failed test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len()+len(p) > maxLogBytes {
		rest := append([]byte(nil), l.buf.Bytes()[l.buf.Len()/2:]...)
		l.buf.Reset()
		l.buf.Write(rest)
	}
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tail returns the last count lines of text.
func tail(text string, count int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > count {
		lines = lines[len(lines)-count:]
	}
	return strings.Join(lines, "\n")
}
