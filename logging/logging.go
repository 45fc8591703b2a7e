// Package logging builds the slog logger every process uses and lets a
// request or message carry log attributes (correlation_id, message_uuid,
// handler) in its context, so code deeper down logs them without passing
// them along.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// New returns a logger writing to w in format ("text" or "json") at level
// ("debug", "info", "warn" or "error").
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("LOG_FORMAT %q: want text or json", format)
	}
	return slog.New(contextHandler{h}), nil
}

type attrsKey struct{}

// With returns a context whose log lines (through a logger from New and the
// ...Context logging methods) carry the attributes args, given as for
// slog.Logger.With.
func With(ctx context.Context, args ...any) context.Context {
	attrs, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	r := slog.Record{}
	r.Add(args...)
	all := make([]slog.Attr, 0, len(attrs)+r.NumAttrs())
	all = append(all, attrs...)
	r.Attrs(func(a slog.Attr) bool { all = append(all, a); return true })
	return context.WithValue(ctx, attrsKey{}, all)
}

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs, ok := ctx.Value(attrsKey{}).([]slog.Attr); ok {
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

type notesKey struct{}

type notes struct {
	mu    sync.Mutex
	attrs []any
}

// WithNotes returns a context that collects attributes for the one log line
// that ends a unit of work (an HTTP request, a handled message), and a
// function that returns what was collected. Code deeper down adds with Note.
func WithNotes(ctx context.Context) (context.Context, func() []any) {
	n := &notes{}
	return context.WithValue(ctx, notesKey{}, n), func() []any {
		n.mu.Lock()
		defer n.mu.Unlock()
		return append([]any(nil), n.attrs...)
	}
}

// Note adds attributes, given as for slog.Logger.Info, to the log line of
// the unit of work ctx belongs to. Without one it does nothing.
func Note(ctx context.Context, args ...any) {
	if n, ok := ctx.Value(notesKey{}).(*notes); ok {
		n.mu.Lock()
		n.attrs = append(n.attrs, args...)
		n.mu.Unlock()
	}
}
