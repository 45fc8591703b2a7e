package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orderstream/orderstream/auth"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
)

// Config is what the HTTP API needs.
type Config struct {
	Orders    *orders.Service
	Inventory *inventory.Service
	// Auth verifies the customers' and administrators' JWTs; nil: every
	// route that needs one answers 401.
	Auth *auth.Verifier
	// AdminToken is the operators' break-glass bearer token for the admin
	// routes, beside administrators' JWTs; empty: none.
	AdminToken string
	// Limits bound what one client may ask.
	Limits Limits
	// TrustedProxies are the addresses of the proxies in front of the
	// API, whose X-Forwarded-For names the client and whose X-Request-ID
	// is taken; a request from elsewhere is its peer's own.
	TrustedProxies []*net.IPNet
	// Checks are the dependencies /readyz asks, by name.
	Checks  map[string]func(context.Context) error
	Metrics *metrics.Metrics
	Tracer  trace.TracerProvider // nil: no tracing
	Logger  *slog.Logger
	// RequestTimeout bounds the work of one request.
	RequestTimeout time.Duration
}

type api struct {
	Config
	limits *limiter
}

// New returns the public HTTP API: the customers' routes, the admin stock
// routes, /healthz, a /readyz that names nothing internal, and
// /openapi.json. Every route is here, and in openapi.json; the operators'
// routes are NewOps'.
func New(cfg Config) http.Handler {
	a, e := newEcho(cfg)
	e.Use(a.timeout, a.limits.rateLimit)
	a.customerRoutes(e)
	e.GET("/healthz", a.healthz)
	e.GET("/readyz", a.readyzPublic)
	e.GET("/openapi.json", serveOpenAPI)
	return e
}

// newEcho is an Echo with the middleware every listener shares: the
// request id, tracing, the request's log line and metrics, recovery, the
// security headers, the client's address and who the request speaks for.
func newEcho(cfg Config) (*api, *echo.Echo) {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	a := &api{Config: cfg, limits: newLimiter(cfg.Limits, cfg.Logger)}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.writeError
	e.IPExtractor = clientAddress(cfg.TrustedProxies)
	e.Use(a.requestID, a.trace, a.observe, middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}),
		// Every answer: no content-type sniffing, no Referer to elsewhere.
		middleware.SecureWithConfig(middleware.SecureConfig{ContentTypeNosniff: "nosniff", ReferrerPolicy: "no-referrer"}),
		a.authenticate)
	return a, e
}

// customerRoutes are the orders and the stock: a customer's own orders, an
// administrator's everything.
func (a *api) customerRoutes(e *echo.Echo) {
	e.POST("/orders", a.placeOrder, a.customer)
	e.GET("/orders", a.listOrders, a.customer, a.limits.listing)
	e.GET("/orders/:id", a.getOrder, a.customer)
	e.POST("/orders/:id/cancel", a.cancelOrder, a.customer)
	e.PUT("/inventory/:sku", a.setStock, a.admin)
	e.GET("/inventory/:sku", a.getStock, a.customer)
}

// orderJSON is an order as the API shows it.
type orderJSON struct {
	ID         string        `json:"id"`
	CustomerID string        `json:"customer_id"`
	Items      []orders.Item `json:"items"`
	Status     string        `json:"status"`
	Reason     string        `json:"reason,omitempty"`
	CreatedAt  string        `json:"created_at"`
	UpdatedAt  string        `json:"updated_at"`
	// CancelledAt is set once the order is cancelled.
	CancelledAt string `json:"cancelled_at,omitempty"`
}

// timeFormat is RFC 3339 with microseconds, the database clock's precision.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

func toOrderJSON(o orders.Order) orderJSON {
	j := orderJSON{
		ID: o.ID, CustomerID: o.CustomerID, Items: o.Items, Status: o.Status, Reason: o.Reason,
		CreatedAt: o.CreatedAt.UTC().Format(timeFormat),
		UpdatedAt: o.UpdatedAt.UTC().Format(timeFormat),
	}
	if !o.CancelledAt.IsZero() {
		j.CancelledAt = o.CancelledAt.UTC().Format(timeFormat)
	}
	return j
}

func (a *api) placeOrder(c echo.Context) error {
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	var req orders.PlaceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	// The customer is the token's; an administrator may place for anyone.
	who := caller(c)
	if req.CustomerID == "" {
		req.CustomerID = who.Customer
	}
	if err := notYours(who, req.CustomerID); err != nil {
		return err
	}
	o, created, err := a.Orders.Place(c.Request().Context(), req, key)
	if err != nil {
		return err
	}
	if !created {
		return c.JSON(http.StatusOK, toOrderJSON(o))
	}
	a.Metrics.OrdersPlaced.Inc()
	c.Response().Header().Set(echo.HeaderLocation, "/orders/"+o.ID)
	return c.JSON(http.StatusCreated, toOrderJSON(o))
}

// cancelOrder answers 202 when it cancelled the order (the inventory is
// yet to give back what it holds), 200 when the order was cancelling or
// cancelled already, or the request replays an earlier one.
func (a *api) cancelOrder(c echo.Context) error {
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptionalJSON(c, &req); err != nil {
		return err
	}
	o, cancelled, err := a.Orders.Cancel(c.Request().Context(), caller(c), c.Param("id"), req.Reason, key)
	if err != nil {
		return err
	}
	if cancelled {
		a.Metrics.OrdersCancelled.Inc()
		return c.JSON(http.StatusAccepted, toOrderJSON(o))
	}
	return c.JSON(http.StatusOK, toOrderJSON(o))
}

func (a *api) getOrder(c echo.Context) error {
	o, err := a.Orders.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	// Another customer's order is not found, as an unknown id is: ids
	// cannot be probed.
	if !caller(c).Sees(o) {
		return orders.ErrNotFound
	}
	return c.JSON(http.StatusOK, toOrderJSON(o))
}

func (a *api) setStock(c echo.Context) error {
	var req struct {
		Available *int `json:"available"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Available == nil {
		p := newProblem(http.StatusUnprocessableEntity, "the request has invalid fields")
		p.Errors.Add("available", "is required")
		return p
	}
	st, err := a.Inventory.Set(c.Request().Context(), c.Param("sku"), *req.Available)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toStockJSON(st))
}

// stockJSON is the stock of a SKU as the API shows it.
type stockJSON struct {
	SKU       string `json:"sku"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
}

func toStockJSON(st inventory.Stock) stockJSON {
	return stockJSON{SKU: st.SKU, Available: st.Available, Reserved: st.Reserved}
}

func (a *api) getStock(c echo.Context) error {
	st, err := a.Inventory.Get(c.Request().Context(), c.Param("sku"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toStockJSON(st))
}

func (a *api) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// notYours refuses a customer_id other than the caller's own, unless an
// administrator sends it.
func notYours(who orders.Caller, customer string) error {
	if customer != who.Customer && !who.Admin {
		return newProblem(http.StatusForbidden, "customer_id must be your own (your token's sub), or left out")
	}
	return nil
}

// readyzPublic says whether the API can serve, and nothing about what it
// depends on: the detail is the operations listener's (/readyz there).
func (a *api) readyzPublic(c echo.Context) error {
	if _, failing := a.check(c.Request().Context()); len(failing) > 0 {
		return newProblem(http.StatusServiceUnavailable, "not ready")
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// readyz says whether the API can serve, naming each dependency "ok" or
// "unavailable".
func (a *api) readyz(c echo.Context) error {
	checks, failing := a.check(c.Request().Context())
	if len(failing) > 0 {
		p := newProblem(http.StatusServiceUnavailable, "not ready: %s unavailable", strings.Join(failing, ", "))
		p.Checks = checks
		return p
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// check asks every dependency, within two seconds: each one's "ok" or
// "unavailable", and the names of those failing, sorted. The cause of a
// failure is the log's: it can name internal hosts and addresses, which no
// answer gives away.
func (a *api) check(ctx context.Context) (checks map[string]string, failing []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	checks = make(map[string]string, len(a.Checks))
	for name, check := range a.Checks {
		checks[name] = "ok"
		if err := check(ctx); err != nil {
			checks[name] = "unavailable"
			failing = append(failing, name)
			a.Logger.WarnContext(ctx, "not ready", "dependency", name, "err", err)
		}
	}
	slices.Sort(failing)
	return checks, failing
}

// writeError answers err as problem details; it logs the unexpected ones,
// the only place they are logged.
func (a *api) writeError(err error, c echo.Context) {
	p, expected := toProblem(err)
	switch {
	case p.Status == http.StatusServiceUnavailable:
		// The database or Redis is away; /readyz says so too. Not a bug.
		a.Logger.WarnContext(c.Request().Context(), "request failed: dependency unavailable",
			"method", c.Request().Method, "route", c.Path(), "err", err)
	case !expected:
		a.Logger.ErrorContext(c.Request().Context(), "request failed",
			"method", c.Request().Method, "route", c.Path(), "err", err)
	}
	if c.Response().Committed {
		return
	}
	body, _ := json.Marshal(p) // strings and ints always encode
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	_, _ = c.Response().Write(body)
}

// maxIdempotencyKeyLen bounds an Idempotency-Key.
const maxIdempotencyKeyLen = 255

// idempotencyKey returns the request's Idempotency-Key, "" when it has
// none: at most maxIdempotencyKeyLen printable ASCII characters (a key is
// an opaque token; a byte PostgreSQL's text refuses must not reach it),
// sent once.
func idempotencyKey(c echo.Context) (string, error) {
	key, err := headerValue(c, "Idempotency-Key")
	if err != nil {
		return "", err
	}
	if len(key) > maxIdempotencyKeyLen || !printableASCII(key) {
		return "", newProblem(http.StatusBadRequest,
			"Idempotency-Key must be at most %d printable ASCII characters", maxIdempotencyKeyLen)
	}
	return key, nil
}

// headerValue returns the value of the request header name, which may be
// sent at most once: sent twice it would say two things, and which one
// counts would be up to the code that happens to read it.
func headerValue(c echo.Context, name string) (string, error) {
	switch vs := c.Request().Header.Values(name); len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	default:
		return "", newProblem(http.StatusBadRequest, "send the %s header at most once", name)
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
