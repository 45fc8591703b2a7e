package httpapi

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
)

// maxRequestIDLen bounds an X-Request-ID: it travels into the metadata of
// every message the request causes, and into every log line.
const maxRequestIDLen = 128

// requestID takes the X-Request-ID of a request that comes through a
// trusted proxy, or makes one when there is none or it is unusable (longer
// than maxRequestIDLen, not printable ASCII, sent more than once), echoes
// it, and makes it the correlation id of the events and log lines the
// request causes. A client's own id is not taken: it would let anyone
// write what they like into the logs and the events' metadata, and make
// their requests look like another's.
func (a *api) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var id string
		if ids := c.Request().Header.Values(echo.HeaderXRequestID); len(ids) == 1 && trusted(a.TrustedProxies, hostOf(c.Request().RemoteAddr)) {
			id = ids[0]
		}
		if id == "" || len(id) > maxRequestIDLen || !printableASCII(id) {
			id = uuid.NewString()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		ctx := events.WithCorrelationID(c.Request().Context(), id)
		ctx = logging.With(ctx, "correlation_id", id)
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

func (a *api) timeout(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// A live page's stream lasts as long as the page (within its own
		// bound), a profile as long as it was asked for (within the
		// server's write timeout).
		if c.Path() == "/events" || strings.HasPrefix(c.Path(), "/debug/pprof/") {
			return next(c)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), a.RequestTimeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// observe writes one log line per request, after its answer is written,
// with what the handlers noted (logging.Note), and counts and times it.
func (a *api) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		ctx, notes := logging.WithNotes(c.Request().Context())
		c.SetRequest(c.Request().WithContext(ctx))
		if err := next(c); err != nil {
			c.Error(err)
		}
		elapsed := time.Since(start)
		// The route pattern, never the raw path: ids would make a
		// label value per order.
		route, method, status := routeOf(c), methodLabel(c.Request().Method), c.Response().Status
		a.Metrics.HTTPRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		a.Metrics.HTTPDuration.WithLabelValues(method, route).Observe(elapsed.Seconds())

		level := slog.LevelInfo
		if route == "/healthz" || route == "/readyz" || route == "/metrics" {
			level = slog.LevelDebug
		}
		args := append([]any{"method", loggedMethod(c.Request().Method), "route", route, "status", status,
			"duration", elapsed, "client", c.RealIP()}, notes()...)
		a.Logger.Log(ctx, level, "http request", args...)
		return nil
	}
}

// trace runs the request in a server span, a child of the caller's span
// when the request carries a traceparent header.
func (a *api) trace(next echo.HandlerFunc) echo.HandlerFunc {
	tracer := a.Tracer.Tracer("github.com/orderstream/orderstream/httpapi")
	return func(c echo.Context) error {
		req := c.Request()
		ctx := propagation.TraceContext{}.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
		route := c.Path()
		ctx, span := tracer.Start(ctx, methodLabel(req.Method)+" "+route,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", methodLabel(req.Method)), attribute.String("http.route", route)))
		defer span.End()
		c.SetRequest(req.WithContext(ctx))
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status = problemStatus(err)
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		return err
	}
}

// methodLabel is method as a metric label or span name: one of the methods
// HTTP defines, or "other", so that a client inventing methods cannot make
// a label value, and a time series, per request.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// maxLoggedMethod is as much of an invented method as a log line takes.
const maxLoggedMethod = 32

// loggedMethod is method as a log line shows it: whole when HTTP defines
// it, else cut to maxLoggedMethod bytes and quoted.
func loggedMethod(method string) string {
	if methodLabel(method) != "other" {
		return method
	}
	if len(method) > maxLoggedMethod {
		return strconv.Quote(method[:maxLoggedMethod]) + "…"
	}
	return strconv.Quote(method)
}

// clientAddress is how the API finds a request's client: its peer's
// address, or, when the peer is one of the trusted proxies, the address
// the proxies' X-Forwarded-For names (the last one not theirs).
func clientAddress(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
