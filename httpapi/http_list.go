package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/validate"
)

// listParams are the query parameters GET /orders reads.
var listParams = []string{"customer_id", "status", "limit", "after"}

// pageJSON is a page of orders as the API shows it; Next is null on the
// last page.
type pageJSON struct {
	Orders []orderJSON `json:"orders"`
	Next   *string     `json:"next"`
}

func (a *api) listOrders(c echo.Context) error {
	req, err := listRequest(c.Request().URL.RawQuery)
	if err != nil {
		return err
	}
	// A customer lists their own orders; an administrator anyone's, all
	// without the filter.
	who := caller(c)
	if req.CustomerID == "" && !who.Admin {
		req.CustomerID = who.Customer
	}
	if err := notYours(who, req.CustomerID); err != nil {
		return err
	}
	page, err := a.Orders.List(c.Request().Context(), req)
	if err != nil {
		return err
	}
	out := pageJSON{Orders: make([]orderJSON, len(page.Orders))}
	for i, o := range page.Orders {
		out.Orders[i] = toOrderJSON(o)
	}
	if page.Next != "" {
		out.Next = &page.Next
	}
	return c.JSON(http.StatusOK, out)
}

// listRequest reads GET /orders' query. Like a JSON body, a query may hold
// only the parameters the route knows, each at most once (sent twice it
// would say two things), and a parameter that is sent must be valid: an
// empty value is not the parameter left out. Everything wrong with the
// parameters is answered at once, 422 with the per-field list, together
// with what orders.ListRequest's rules say; a query that does not parse is
// a 400.
func listRequest(rawQuery string) (orders.ListRequest, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return orders.ListRequest{}, newProblem(http.StatusBadRequest, "the query string is malformed: %v", err)
	}
	var errs validate.Errors
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names) // the same query, the same answer
	one := make(map[string]string, len(q))
	for _, name := range names {
		switch vs := q[name]; {
		case !slices.Contains(listParams, name):
			errs.Add(name, "is not a known parameter")
		case len(vs) > 1:
			errs.Add(name, "must be sent at most once")
		case vs[0] == "":
			errs.Add(name, "must not be empty; leave the parameter out instead")
		default:
			one[name] = vs[0]
		}
	}
	req := orders.ListRequest{
		CustomerID: one["customer_id"], Status: one["status"], After: one["after"],
		Limit: orders.DefaultListLimit,
	}
	if s, ok := one["limit"]; ok {
		if n, err := strconv.Atoi(s); err == nil {
			req.Limit = n // the range is the rules'
		} else {
			errs.Add("limit", "must be a whole number from 1 to %d", orders.MaxListLimit)
		}
	}
	var rules validate.Errors
	if errors.As(req.Validate(), &rules) {
		errs = append(errs, rules...)
	}
	return req, errs.Err()
}
