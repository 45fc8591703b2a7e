package httpapi

import (
	"context"
	"crypto/subtle"
	"log/slog"
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

// requireAdmin lets a request through only with the admin bearer token.
func (a *api) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.AdminToken == "" {
			return newProblem(http.StatusForbidden,
				"changing stock is disabled: start orderstream with ADMIN_TOKEN set, and send it as 'Authorization: Bearer <token>'")
		}
		authorization, err := headerValue(c, echo.HeaderAuthorization)
		if err != nil {
			return err
		}
		// The scheme is case-insensitive (RFC 9110), the token is not.
		scheme, token, ok := strings.Cut(authorization, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(token), []byte(a.AdminToken)) != 1 {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="orderstream"`)
			return newProblem(http.StatusUnauthorized, "send the admin token as 'Authorization: Bearer <token>'")
		}
		return next(c)
	}
}

// maxRequestIDLen bounds an X-Request-ID: it travels into the metadata of
// every message the request causes, and into every log line.
const maxRequestIDLen = 128

// requestID takes the request's X-Request-ID, or makes one when it is
// missing or unusable (longer than maxRequestIDLen, not printable ASCII,
// sent more than once), echoes it, and makes it the correlation id of the
// events and log lines the request causes.
func (a *api) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var id string
		if ids := c.Request().Header.Values(echo.HeaderXRequestID); len(ids) == 1 {
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
		if c.Path() == "/events" { // a live page's stream lasts as long as the page
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
		route, method, status := c.Path(), methodLabel(c.Request().Method), c.Response().Status
		if route == "" {
			route = "unmatched"
		}
		a.Metrics.HTTPRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		a.Metrics.HTTPDuration.WithLabelValues(method, route).Observe(elapsed.Seconds())

		level := slog.LevelInfo
		if route == "/healthz" || route == "/readyz" || route == "/metrics" {
			level = slog.LevelDebug
		}
		args := append([]any{"method", loggedMethod(c.Request().Method), "route", route, "status", status, "duration", elapsed}, notes()...)
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
