package orders

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/orderstream/orderstream/validate"
)

// Limits of a listing's page.
const (
	DefaultListLimit = 20
	MaxListLimit     = 100
)

// ListRequest asks for a page of orders, newest first.
type ListRequest struct {
	CustomerID string // "": every customer's orders
	Status     string // "": orders of every status
	Limit      int    // orders on the page, 1 to MaxListLimit
	// After is the Next of the previous page, "" for the first page. It
	// holds only with the filters it was returned for.
	After string
}

// listFilter is what a listing is filtered by, which its cursors are tied to.
type listFilter struct{ customerID, status string }

func (r ListRequest) filter() listFilter { return listFilter{r.CustomerID, r.Status} }

// Validate returns validate.Errors listing every field that breaks the rules.
func (r ListRequest) Validate() error {
	_, err := r.parse()
	return err
}

// parse validates r and returns the position its page starts after, nil
// for the first page.
func (r ListRequest) parse() (*cursor, error) {
	var errs validate.Errors
	if r.CustomerID != "" {
		checkCustomerID(&errs, r.CustomerID)
	}
	if r.Status != "" && !slices.Contains(statuses, r.Status) {
		errs.Add("status", "must be one of %s", strings.Join(statuses, ", "))
	}
	if r.Limit < 1 || r.Limit > MaxListLimit {
		errs.Add("limit", "must be 1 to %d", MaxListLimit)
	}
	var after *cursor
	if r.After != "" {
		c, ok := decodeCursor(r.After, r.filter())
		if !ok {
			errs.Add("after", "must be the next cursor of a page listed with the same customer_id and status")
		}
		after = &c
	}
	return after, errs.Err()
}

// Page is a page of a listing. Next is the cursor of the page after it,
// "" when this page is the last.
type Page struct {
	Orders []Order
	Next   string
}

// List returns a page of orders, newest first: by created_at, then by id
// among orders created at the same microsecond, both descending.
//
// Each filter combination is a range of one index (migration 00005), read
// in order from the cursor and stopped after the page.
func (s *Service) List(ctx context.Context, req ListRequest) (Page, error) {
	after, err := req.parse()
	if err != nil {
		return Page{}, err
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if req.CustomerID != "" {
		where = append(where, "customer_id = "+arg(req.CustomerID))
	}
	if req.Status != "" {
		where = append(where, "status = "+arg(req.Status))
	}
	if after != nil {
		// A row comparison, which the index range starts from; the
		// tie-break on id keeps orders of one microsecond on one page
		// or the next, never on both or neither.
		where = append(where, "(created_at, id) < ("+arg(after.createdAt)+", "+arg(after.id.String())+")")
	}
	query := `SELECT id, customer_id, status, reason, created_at, updated_at, cancelled_at FROM orders`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	// One more than the page: whether it exists says whether there is a
	// next page, so the last page says so instead of leading to an empty one.
	query += " ORDER BY created_at DESC, id DESC LIMIT " + arg(req.Limit+1)

	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return Page{}, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	var page Page
	for rows.Next() {
		var o Order
		var reason sql.NullString
		var cancelledAt sql.NullTime
		if err := rows.Scan(&o.ID, &o.CustomerID, &o.Status, &reason, &o.CreatedAt, &o.UpdatedAt, &cancelledAt); err != nil {
			return Page{}, fmt.Errorf("list orders: %w", err)
		}
		o.Reason, o.CancelledAt = reason.String, cancelledAt.Time
		page.Orders = append(page.Orders, o)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("list orders: %w", err)
	}
	if len(page.Orders) > req.Limit {
		page.Orders = page.Orders[:req.Limit]
		last := page.Orders[req.Limit-1]
		id, err := uuid.Parse(last.ID)
		if err != nil {
			return Page{}, fmt.Errorf("list orders: %w", err)
		}
		page.Next = cursor{createdAt: last.CreatedAt, id: id}.encode(req.filter())
	}
	if err := s.addItems(ctx, page.Orders); err != nil {
		return Page{}, err
	}
	return page, nil
}

// addItems fills in the items of orders, all in one query.
func (s *Service) addItems(ctx context.Context, orders []Order) error {
	if len(orders) == 0 {
		return nil
	}
	ids := make([]string, len(orders))
	byID := make(map[string]*Order, len(orders))
	for i := range orders {
		ids[i] = orders[i].ID
		byID[orders[i].ID] = &orders[i]
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT order_id, sku, quantity FROM order_items
		WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, position`, pq.Array(ids))
	if err != nil {
		return fmt.Errorf("list order items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var it Item
		if err := rows.Scan(&id, &it.SKU, &it.Quantity); err != nil {
			return fmt.Errorf("list order items: %w", err)
		}
		if o := byID[id]; o != nil {
			o.Items = append(o.Items, it)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list order items: %w", err)
	}
	return nil
}
