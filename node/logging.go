package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter lets hashicorp/raft log through slog. Raft is chatty at Info, so its minimum
// level is applied here before slog sees a record.
type hclogAdapter struct {
	logger *slog.Logger
	name   string
	level  hclog.Level
	args   []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(logger *slog.Logger, name string, level hclog.Level) *hclogAdapter {
	return &hclogAdapter{logger: logger, name: name, level: level}
}

func toSlogLevel(l hclog.Level) slog.Level {
	switch {
	case l <= hclog.Debug:
		return slog.LevelDebug
	case l == hclog.Info:
		return slog.LevelInfo
	case l == hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < a.level {
		return
	}
	ctx := context.Background()
	sl := toSlogLevel(level)
	if !a.logger.Enabled(ctx, sl) {
		return
	}
	all := make([]any, 0, len(a.args)+len(args)+2)
	if a.name != "" {
		all = append(all, "component", a.name)
	}
	all = append(all, a.args...)
	all = append(all, args...)
	a.logger.Log(ctx, sl, msg, all...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return a.level <= hclog.Trace }
func (a *hclogAdapter) IsDebug() bool                 { return a.level <= hclog.Debug }
func (a *hclogAdapter) IsInfo() bool                  { return a.level <= hclog.Info }
func (a *hclogAdapter) IsWarn() bool                  { return a.level <= hclog.Warn }
func (a *hclogAdapter) IsError() bool                 { return a.level <= hclog.Error }
func (a *hclogAdapter) ImpliedArgs() []any            { return a.args }
func (a *hclogAdapter) Name() string                  { return a.name }
func (a *hclogAdapter) SetLevel(level hclog.Level)    { a.level = level }
func (a *hclogAdapter) GetLevel() hclog.Level         { return a.level }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any(nil), a.args...), args...)
	return &c
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &prefixedLogWriter{logger: a.logger.With("component", a.name)}
}

// prefixedLogWriter turns standard-library log lines of the form "[WARN] memberlist: ..." (the
// style of memberlist and of raft's net transport) into slog records at the matching level.
type prefixedLogWriter struct {
	logger *slog.Logger
	min    slog.Level
}

func newStdLogger(logger *slog.Logger, component string, min slog.Level) *log.Logger {
	return log.New(&prefixedLogWriter{logger: logger.With("component", component), min: min}, "", 0)
}

func (w *prefixedLogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for _, l := range []struct {
		tag   string
		level slog.Level
	}{
		{"[TRACE]", slog.LevelDebug - 4},
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	} {
		if i := strings.Index(line, l.tag); i >= 0 {
			level = l.level
			line = strings.TrimSpace(line[i+len(l.tag):])
			break
		}
	}
	if level < w.min {
		return len(p), nil
	}
	w.logger.Log(context.Background(), level, line)
	return len(p), nil
}

// String makes the adapter print usefully in test failures.
func (a *hclogAdapter) String() string { return fmt.Sprintf("hclog(%s)", a.name) }
