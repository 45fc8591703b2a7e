package httpapi

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/auth"
	"github.com/orderstream/orderstream/orders"
)

// The context keys of who a request speaks for.
const (
	principalKey  = "orderstream.principal"   // an auth.Principal: a verified JWT
	adminTokenKey = "orderstream.admin_token" // true: the operators' ADMIN_TOKEN
)

// authenticate reads the request's bearer token, when it has one: a JWT
// that verifies makes the request its principal's, the operators'
// ADMIN_TOKEN makes it an administrator's on the admin routes. A token
// that does neither is 401, counted against the client's failure budget;
// a client over that budget gets 429 before its token is even looked at,
// so that guessing runs at a few tries a minute, not thousands a second.
// Which routes need whom is the routes' middleware (customer, admin).
func (a *api) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		authorization, err := headerValue(c, echo.HeaderAuthorization)
		if err != nil || authorization == "" {
			if err != nil {
				return err
			}
			return next(c)
		}
		if err := a.limits.failures(c); err != nil {
			return err
		}
		// The scheme is case-insensitive (RFC 9110), the token is not.
		scheme, token, ok := strings.Cut(authorization, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return a.unauthenticated(c, errors.New("not a bearer token"))
		}
		if a.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(a.AdminToken)) == 1 {
			c.Set(adminTokenKey, true)
			return next(c)
		}
		if a.Auth == nil {
			return a.unauthenticated(c, errors.New("no token verifier configured"))
		}
		p, err := a.Auth.Verify(token)
		if err != nil {
			return a.unauthenticated(c, err)
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

// unauthenticated answers 401 for a token that does not verify, after
// counting it against the client's failure budget. Why it failed is the
// log's (at WARN: repeated, it is someone guessing), not the client's.
func (a *api) unauthenticated(c echo.Context, why error) error {
	a.limits.failed(c)
	a.Logger.WarnContext(c.Request().Context(), "authentication failed",
		"client", c.RealIP(), "route", routeOf(c), "err", why)
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="orderstream", error="invalid_token"`)
	return newProblem(http.StatusUnauthorized, "the bearer token is not valid: it is malformed, expired, or not signed by a key this service trusts")
}

// principal is who the request speaks for, by its JWT.
func principal(c echo.Context) (auth.Principal, bool) {
	p, ok := c.Get(principalKey).(auth.Principal)
	return p, ok
}

// caller is the request's principal as the orders service sees it.
func caller(c echo.Context) orders.Caller {
	p, _ := principal(c)
	return orders.Caller{Customer: p.Subject, Admin: p.Admin}
}

// customer lets a request through only with a JWT: the customer routes.
func (a *api) customer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, ok := principal(c); ok {
			return next(c)
		}
		if c.Get(adminTokenKey) != nil {
			return newProblem(http.StatusForbidden, "the admin token opens the admin endpoints only; send a JWT")
		}
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="orderstream"`)
		return newProblem(http.StatusUnauthorized, "send a token as 'Authorization: Bearer <JWT>'")
	}
}

// admin lets a request through only from an administrator: a JWT with the
// admin role, or the operators' ADMIN_TOKEN.
func (a *api) admin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Get(adminTokenKey) != nil {
			return next(c)
		}
		switch p, ok := principal(c); {
		case ok && p.Admin:
			return next(c)
		case ok:
			return newProblem(http.StatusForbidden, "this needs the %s role", auth.RoleAdmin)
		}
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="orderstream"`)
		return newProblem(http.StatusUnauthorized, "send an administrator's JWT or the admin token as 'Authorization: Bearer <token>'")
	}
}

// routeOf is the request's route pattern, "unmatched" when none matched.
func routeOf(c echo.Context) string {
	if c.Path() == "" {
		return "unmatched"
	}
	return c.Path()
}
