// Package orders owns orders: placing them (the order and its OrderPlaced
// event in one transaction), reading and listing them, settling them when
// the inventory answers, and cancelling them. Its Item is its own; the
// contract's is events.Item.
package orders

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/validate"
)

// Order statuses.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
	StatusRejected  = "rejected"
	// StatusCancelling: cancelled by its customer, its OrderCancelled on its
	// way to the inventory, which may still hold stock for it.
	StatusCancelling = "cancelling"
	// StatusCancelled: cancelled, and holding nothing.
	StatusCancelled = "cancelled"
)

// statuses are all the statuses an order can have, the ones a listing may
// be filtered by. A new status goes here (and in the orders table's CHECK).
var statuses = []string{StatusPending, StatusConfirmed, StatusRejected, StatusCancelling, StatusCancelled}

// Limits of a valid order.
const (
	MaxCustomerIDLen = 64
	MaxItems         = 100
	MaxQuantity      = 10000
)

var (
	// ErrNotFound means no order has the id asked for.
	ErrNotFound = errors.New("order not found")
	// ErrIdempotencyConflict means an Idempotency-Key was used before with
	// another request body.
	ErrIdempotencyConflict = errors.New("idempotency key reused with another request")
)

// Order is an order: its items in the order given, its status, and the
// reason when rejected. Times are the database clock's.
type Order struct {
	ID         string
	CustomerID string
	Items      []Item
	Status     string
	Reason     string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// CancelledAt is when it became cancelled; zero until then.
	CancelledAt time.Time
}

// Item is one line of an order: a SKU and how many units of it.
//
// Its JSON is a place request's (PlaceRequest), which the idempotency
// key's request hash is taken of: changing it would make a repeated
// request look like another. The contract's line of an order is
// events.Item; Place converts one to the other for OrderPlaced.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// eventItems is items as the contract carries them.
func eventItems(items []Item) []events.Item {
	out := make([]events.Item, len(items))
	for i, it := range items {
		out[i] = events.Item{SKU: it.SKU, Quantity: it.Quantity}
	}
	return out
}

// PlaceRequest is what a client sends to place an order.
type PlaceRequest struct {
	CustomerID string `json:"customer_id"`
	Items      []Item `json:"items"`
}

// Validate returns validate.Errors listing every field that breaks the rules.
func (r PlaceRequest) Validate() error {
	var errs validate.Errors
	checkCustomerID(&errs, r.CustomerID)
	if n := len(r.Items); n < 1 || n > MaxItems {
		errs.Add("items", "must hold 1 to %d items", MaxItems)
	}
	seen := make(map[string]bool, len(r.Items))
	for i, it := range r.Items {
		switch {
		case !validate.SKU(it.SKU):
			errs.Add(itemField(i, "sku"), "must be 1 to %d characters of A-Z a-z 0-9 . _ -", validate.MaxSKULen)
		case seen[it.SKU]:
			errs.Add(itemField(i, "sku"), "%q appears more than once", it.SKU)
		}
		seen[it.SKU] = true
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			errs.Add(itemField(i, "quantity"), "must be 1 to %d", MaxQuantity)
		}
	}
	return errs.Err()
}

// checkCustomerID adds to errs what is wrong with a customer id, whether an
// order is placed for it or listed by it.
func checkCustomerID(errs *validate.Errors, id string) {
	switch n := utf8.RuneCountInString(id); {
	case n < 1 || n > MaxCustomerIDLen:
		errs.Add("customer_id", "must be 1 to %d characters", MaxCustomerIDLen)
	case !validate.Text(id):
		errs.Add("customer_id", validate.TextRule)
	}
}

func itemField(i int, name string) string {
	return "items[" + strconv.Itoa(i) + "]." + name
}
