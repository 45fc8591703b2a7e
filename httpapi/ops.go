package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/story"
)

// Ops is what the operations listener serves beside Config's.
type Ops struct {
	// Live is the live page; nil: no page (a process without the API).
	Live *live.Live
	// ReplayDeadLetter puts a dead letter back on its stream; nil: the
	// route answers 404.
	ReplayDeadLetter func(ctx context.Context, id string) error
	// Story reads an order's story (story.Read) for the live page; nil:
	// the route answers 404.
	Story func(ctx context.Context, id string) (story.Story, error)
}

// NewOps returns the operations listener's handler (OPS_ADDR, loopback by
// default): /metrics, /healthz, a /readyz that names what is failing, Go's
// profiles under /debug/pprof/, and with the API, the live page, its event
// stream, dead-letter replay and the customer routes the page's buttons
// call (with the same tokens as on the public listener), and an order's
// story for administrators (as the replay). Nothing here is for the
// public: it shows customers' orders, the stock, the streams and the
// process's internals.
func NewOps(cfg Config, ops Ops) http.Handler {
	a, e := newEcho(cfg)
	e.Use(a.timeout)
	e.GET("/metrics", echo.WrapHandler(cfg.Metrics.Handler()))
	e.GET("/healthz", a.healthz)
	e.GET("/readyz", a.readyz)
	profiles := e.Group("/debug/pprof")
	profiles.GET("/", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
	profiles.GET("/cmdline", echo.WrapHandler(http.HandlerFunc(pprof.Cmdline)))
	profiles.GET("/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
	profiles.GET("/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
	profiles.GET("/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
	profiles.GET("/:profile", func(c echo.Context) error {
		pprof.Handler(c.Param("profile")).ServeHTTP(c.Response(), c.Request())
		return nil
	})
	if ops.Live == nil {
		return e
	}
	e.GET("/", ops.Live.ServePage)
	e.GET("/ui/*", ops.Live.ServeAsset)
	e.GET("/events", ops.Live.ServeEvents)
	e.GET("/history", ops.Live.ServeHistory)
	e.POST("/deadletters/:id/replay", func(c echo.Context) error {
		if ops.ReplayDeadLetter == nil {
			return newProblem(http.StatusNotFound, "dead letters cannot be replayed from this process")
		}
		if err := ops.ReplayDeadLetter(c.Request().Context(), c.Param("id")); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"replayed": c.Param("id")})
	}, a.admin)
	// Every order's, so an administrator's: a customer's JWT is 403.
	e.GET("/orders/:id/story", func(c echo.Context) error {
		if ops.Story == nil {
			return newProblem(http.StatusNotFound, "order stories cannot be read from this process")
		}
		st, err := ops.Story(c.Request().Context(), c.Param("id"))
		switch {
		case errors.Is(err, story.ErrBadID):
			return newProblem(http.StatusBadRequest, "the order id is not a UUID")
		case errors.Is(err, story.ErrNotFound):
			return newProblem(http.StatusNotFound, "no order has this id")
		case err != nil:
			return err
		}
		return c.JSON(http.StatusOK, st)
	}, a.admin)
	a.customerRoutes(e)
	return e
}
