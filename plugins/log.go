package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is hclog's trace level in slog terms.
const levelTrace = slog.LevelDebug - 4

// hclogger routes go-plugin's logging to slog. go-plugin logs two things
// through it: its own messages, about starting and stopping the process,
// which go at debug level (what matters comes back as an error from Open
// or a call, and is logged or not by the caller); and, through the logger
// it names after the executable, the plugin's standard error line by line:
// lines that hclog wrote as JSON keep their level, other lines (a vendor's
// log.Print, a panic) go at info level, or error for a panic, as go-plugin
// decides.
type hclogger struct {
	log     *slog.Logger
	stderr  bool // the plugin's standard error
	name    string
	implied []any
}

func (l *hclogger) Log(level hclog.Level, msg string, args ...any) {
	lv := slogLevel(level)
	if !l.stderr {
		lv = slog.LevelDebug
	} else if lv == slog.LevelDebug && len(args) == 0 {
		lv = slog.LevelInfo // a plain line of standard error
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, lv) {
		return
	}
	attrs := make([]slog.Attr, 0, (len(l.implied)+len(args))/2+1)
	if l.stderr {
		attrs = append(attrs, slog.String("stream", "stderr"))
	}
	for _, kv := range [][]any{l.implied, args} {
		for i := 0; i+1 < len(kv); i += 2 {
			key := fmt.Sprint(kv[i])
			if key == "timestamp" { // of a JSON line: slog stamps its own
				continue
			}
			attrs = append(attrs, slog.Any(key, kv[i+1]))
		}
	}
	l.log.LogAttrs(ctx, lv, msg, attrs...)
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (l *hclogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hclogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hclogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hclogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hclogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *hclogger) enabled(level hclog.Level) bool {
	return l.log.Enabled(context.Background(), slogLevel(level))
}

func (l *hclogger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *hclogger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *hclogger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *hclogger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *hclogger) IsError() bool { return l.enabled(hclog.Error) }

// GetLevel is the lowest level slog passes; go-plugin skips the plugin's
// JSON lines below it without parsing them further. Plain lines of the
// plugin's standard error are read whatever the level (they are promoted
// to info), so it is at most info.
func (l *hclogger) GetLevel() hclog.Level {
	for _, level := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info} {
		if l.enabled(level) {
			return level
		}
	}
	return hclog.Info
}

// SetLevel does nothing: slog's handler decides.
func (l *hclogger) SetLevel(hclog.Level) {}

func (l *hclogger) ImpliedArgs() []any { return l.implied }

func (l *hclogger) With(args ...any) hclog.Logger {
	c := *l
	c.implied = append(append([]any(nil), l.implied...), args...)
	return &c
}

func (l *hclogger) Name() string { return l.name }

// Named is how go-plugin makes the logger of the plugin's standard error.
func (l *hclogger) Named(name string) hclog.Logger {
	c := *l
	c.stderr = true
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (l *hclogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.stderr, c.name = true, name
	return &c
}

func (l *hclogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)
}

func (l *hclogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return l.StandardLogger(opts).Writer()
}

var _ hclog.Logger = (*hclogger)(nil)

// lineLogger logs what a plugin writes to its os.Stdout or os.Stderr after
// Serve started (go-plugin carries them over the connection), one info
// record per line. A line longer than maxLine is logged in pieces. Safe for
// concurrent use.
type lineLogger struct {
	log    *slog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
}

const maxLine = 64 << 10

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		var line []byte
		if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
			line, w.buf = w.buf[:i], w.buf[i+1:]
		} else if len(w.buf) >= maxLine {
			line, w.buf = w.buf[:maxLine], w.buf[maxLine:]
		} else {
			break
		}
		w.log.LogAttrs(context.Background(), slog.LevelInfo, string(bytes.TrimRight(line, "\r")), slog.String("stream", w.stream))
	}
	return len(p), nil
}
