package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/validate"
)

// problem is an RFC 9457 problem details object; it is also the error a
// handler returns to answer with one.
type problem struct {
	Type     string            `json:"type"`
	Title    string            `json:"title"`
	Status   int               `json:"status"`
	Detail   string            `json:"detail,omitempty"`
	Instance string            `json:"instance,omitempty"`
	Errors   validate.Errors   `json:"errors,omitempty"`
	Checks   map[string]string `json:"checks,omitempty"`
}

func newProblem(status int, format string, args ...any) *problem {
	return &problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: fmt.Sprintf(format, args...)}
}

func (p *problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

// toProblem is the one mapping from errors to HTTP answers. ok is false for
// an error nobody expected (a bug, or a failure worth logging).
func toProblem(err error) (p *problem, expected bool) {
	var verrs validate.Errors
	var herr *echo.HTTPError
	switch {
	case errors.As(err, &p):
		return p, true
	case errors.As(err, &verrs):
		p = newProblem(http.StatusUnprocessableEntity, "the request has invalid fields")
		p.Errors = verrs
		return p, true
	case errors.Is(err, orders.ErrNotFound):
		return newProblem(http.StatusNotFound, "no order has this id"), true
	case errors.Is(err, inventory.ErrNotFound):
		return newProblem(http.StatusNotFound, "no stock is recorded for this SKU"), true
	case errors.Is(err, redisstreams.ErrNoDeadLetter):
		return newProblem(http.StatusNotFound, "no dead letter has this id"), true
	case errors.Is(err, redisstreams.ErrNotReplayable):
		return newProblem(http.StatusConflict, "%v", err), true
	case errors.Is(err, orders.ErrIdempotencyConflict):
		return newProblem(http.StatusConflict,
			"this Idempotency-Key was used with another request; use a new key for a new request"), true
	case errors.Is(err, orders.ErrNotCancellable):
		return newProblem(http.StatusConflict, "the order was rejected: it holds nothing and cannot be cancelled"), true
	case errors.As(err, &herr):
		return newProblem(herr.Code, "%v", herr.Message), true
	case errors.Is(err, redisstreams.ErrStreamsUnavailable):
		return newProblem(http.StatusServiceUnavailable, "Redis is unavailable; retry later"), false
	case postgres.IsUnavailable(err), errors.Is(err, context.DeadlineExceeded):
		return newProblem(http.StatusServiceUnavailable, "the database is unavailable; retry later"), false
	case refusedText(err):
		// A backstop: the validations should have said it first, so it
		// is logged as unexpected; but the request sent the value.
		return newProblem(http.StatusBadRequest, "the request holds text the database cannot store"), false
	default:
		return newProblem(http.StatusInternalServerError, "an unexpected error occurred; it has been logged"), false
	}
}

// problemStatus is the status err will be answered with.
func problemStatus(err error) int {
	p, _ := toProblem(err)
	return p.Status
}

// refusedText reports whether err is PostgreSQL refusing a text value as
// it came: a NUL or invalid UTF-8 (22021), a value its type cannot read
// (22P02), one too long for its column (22001) or one the encoding cannot
// hold (22P05). These data exceptions name what a request sent; the rest
// of class 22 (arithmetic, dates) is more likely a bug and stays a 500.
func refusedText(err error) bool {
	var sqlErr interface{ SQLState() string }
	if !errors.As(err, &sqlErr) {
		return false
	}
	switch sqlErr.SQLState() {
	case "22021", "22P02", "22001", "22P05":
		return true
	}
	return false
}
