// Package events is the contract between the services: the event types, the
// streams they travel on, the message metadata and the cqrs marshaler that
// reads and writes them. It imports no other package of orderstream, and
// nothing of OpenTelemetry (the trace context is package tracing's); the
// outbox write (postgres.Tx.Publish) and the forwarder (package outbox)
// carry what it defines.
package events

import (
	"errors"
	"time"
)

// Streams on Redis, as named in the event contract.
const (
	StreamOrdersPlaced  = "orders.placed"
	StreamReservations  = "inventory.reservations"
	StreamOrderOutcomes = "orders.outcomes"
	StreamDeadLetter    = "deadletter"
)

// Metadata keys every message carries.
const (
	MetadataEventType     = "event_type"
	MetadataCorrelationID = "correlation_id" // as watermill's middleware.CorrelationIDMetadataKey
)

// MetadataUndecodable is set on a message built from a stream entry that
// could not be read; its value says why. Such a message is dead-lettered.
const MetadataUndecodable = "undecodable"

// Reasons an order is rejected.
const (
	ReasonInsufficientStock = "insufficient_stock"
	ReasonUnknownSKU        = "unknown_sku"
)

// ErrMalformed marks a message that no retry can process: it cannot be
// decoded, or it names something that does not exist. Handlers wrap it; the
// router sends such messages to the dead-letter stream at once.
var ErrMalformed = errors.New("malformed message")

// Event is what travels through the outbox: a JSON payload on a stream,
// told apart from others on that stream by its type.
type Event interface {
	Stream() string
	EventType() string
}

// Contract is every event type of the contract, as its zero value.
func Contract() []Event {
	return []Event{OrderPlaced{}, OrderCancelled{}, StockReserved{}, StockRejected{}, StockReleased{},
		OrderConfirmed{}, OrderRejected{}, OrderCancellationCompleted{}}
}

// Keyed is an event that belongs to an aggregate, one order: all events of
// one key are written to one outbox shard, so that they reach their streams
// in the order they were written. An event without a key goes to a shard
// chosen by its message UUID.
type Keyed interface {
	Key() string
}

// Item is one line of an order, as the events carry it.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// OrderPlaced announces an order that was committed with status pending.
type OrderPlaced struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Items      []Item    `json:"items"`
	PlacedAt   time.Time `json:"placed_at"`
}

func (OrderPlaced) Stream() string    { return StreamOrdersPlaced }
func (OrderPlaced) EventType() string { return "OrderPlaced" }
func (e OrderPlaced) Key() string     { return e.OrderID }

// OrderCancelled announces that an order is to hold nothing: it was
// committed with status cancelling. It travels on the stream of
// OrderPlaced, but may be handled before it.
type OrderCancelled struct {
	OrderID     string    `json:"order_id"`
	Reason      string    `json:"reason,omitempty"`
	CancelledAt time.Time `json:"cancelled_at"`
}

func (OrderCancelled) Stream() string    { return StreamOrdersPlaced }
func (OrderCancelled) EventType() string { return "OrderCancelled" }
func (e OrderCancelled) Key() string     { return e.OrderID }

// StockReserved says that every item of the order is reserved.
type StockReserved struct {
	OrderID string `json:"order_id"`
	Items   []Item `json:"items"`
	Reason  string `json:"reason,omitempty"`
}

func (StockReserved) Stream() string    { return StreamReservations }
func (StockReserved) EventType() string { return "StockReserved" }
func (e StockReserved) Key() string     { return e.OrderID }

// StockRejected says that nothing of the order is reserved, and why.
type StockRejected struct {
	OrderID string `json:"order_id"`
	Items   []Item `json:"items"`
	Reason  string `json:"reason"`
}

func (StockRejected) Stream() string    { return StreamReservations }
func (StockRejected) EventType() string { return "StockRejected" }
func (e StockRejected) Key() string     { return e.OrderID }

// StockReleased says that a cancelled order holds nothing any more: Items
// are what its reservation gave back, none when it held nothing (it was
// rejected, or its cancellation was handled before its placement, which
// then reserves nothing).
type StockReleased struct {
	OrderID string `json:"order_id"`
	Items   []Item `json:"items"`
}

func (StockReleased) Stream() string    { return StreamReservations }
func (StockReleased) EventType() string { return "StockReleased" }
func (e StockReleased) Key() string     { return e.OrderID }

// OrderConfirmed announces that an order is confirmed: every item is
// reserved for it. It is written in the transaction that confirms it.
type OrderConfirmed struct {
	OrderID     string    `json:"order_id"`
	CustomerID  string    `json:"customer_id"`
	ConfirmedAt time.Time `json:"confirmed_at"`
}

func (OrderConfirmed) Stream() string    { return StreamOrderOutcomes }
func (OrderConfirmed) EventType() string { return "OrderConfirmed" }
func (e OrderConfirmed) Key() string     { return e.OrderID }

// OrderRejected announces that an order is rejected, and why (one of the
// Reason… constants). It is written in the transaction that rejects it.
type OrderRejected struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Reason     string    `json:"reason"`
	RejectedAt time.Time `json:"rejected_at"`
}

func (OrderRejected) Stream() string    { return StreamOrderOutcomes }
func (OrderRejected) EventType() string { return "OrderRejected" }
func (e OrderRejected) Key() string     { return e.OrderID }

// OrderCancellationCompleted announces that a cancelled order holds
// nothing any more: its stock is given back, and its status is cancelled.
// (OrderCancelled is the request; this is its outcome.) It is written in
// the transaction that makes the order cancelled.
type OrderCancellationCompleted struct {
	OrderID     string    `json:"order_id"`
	CustomerID  string    `json:"customer_id"`
	CancelledAt time.Time `json:"cancelled_at"`
}

func (OrderCancellationCompleted) Stream() string    { return StreamOrderOutcomes }
func (OrderCancellationCompleted) EventType() string { return "OrderCancellationCompleted" }
func (e OrderCancellationCompleted) Key() string     { return e.OrderID }
