package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

// loggerKey is the attribute that names a logger: every component adds it
// once with logger.With(slog.String("logger", "iotnode.http")).
const loggerKey = "logger"

// levels decides the level of a logger from its name: the longest prefix in
// byPrefix that matches the name at a dot boundary, else base.
type levels struct {
	base     slog.Level
	byPrefix map[string]slog.Level
}

func (l levels) of(name string) slog.Level {
	best, bestLen := l.base, -1
	for p, lvl := range l.byPrefix {
		if len(p) > bestLen && (name == p || strings.HasPrefix(name, p+".")) {
			best, bestLen = lvl, len(p)
		}
	}
	return best
}

// min is the lowest level any logger may log at.
func (l levels) min() slog.Level {
	m := l.base
	for _, lvl := range l.byPrefix {
		m = min(m, lvl)
	}
	return m
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo // Validate rejected it already
	}
	return l
}

// newLogger returns the root logger for the logging config: text or JSON on
// w, with the level of each named logger set by prefix.
func newLogger(w io.Writer, c LoggingConfig) *slog.Logger {
	lv := levels{base: parseLevel(c.Level), byPrefix: map[string]slog.Level{}}
	for p, l := range c.Levels {
		lv.byPrefix[p] = parseLevel(l)
	}
	opts := &slog.HandlerOptions{Level: lv.min()}
	var h slog.Handler
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(&namedHandler{inner: h, levels: lv, level: lv.base})
}

// namedHandler filters records by the level of the logger that logs them,
// learnt from the "logger" attribute given to With (or on the record).
type namedHandler struct {
	inner  slog.Handler
	levels levels
	level  slog.Level // of this handler's logger name
	name   string
}

func (h *namedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// A record may still name its logger itself: let the lowest level through
	// here for unnamed handlers and decide in Handle.
	if h.name == "" && l < h.level {
		return l >= h.levels.min() && h.inner.Enabled(ctx, l)
	}
	return l >= h.level && h.inner.Enabled(ctx, l)
}

func (h *namedHandler) Handle(ctx context.Context, r slog.Record) error {
	level := h.level
	if h.name == "" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == loggerKey {
				level = h.levels.of(a.Value.String())
				return false
			}
			return true
		})
	}
	if r.Level < level {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h *namedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	for _, a := range attrs {
		if a.Key == loggerKey {
			n.name = a.Value.String()
			n.level = h.levels.of(n.name)
		}
	}
	n.inner = h.inner.WithAttrs(attrs)
	return &n
}

func (h *namedHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.inner = h.inner.WithGroup(name)
	return &n
}

// named returns logger named name (a dotted name such as iotnode.runtime).
func named(logger *slog.Logger, name string) *slog.Logger {
	return logger.With(slog.String(loggerKey, name))
}
