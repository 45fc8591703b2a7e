// Package handlertest is the test kit of message handlers: a plain Go test
// hands it a subscription (the cqrs handlers of one stream, as listed in
// handlers.go) and an event, and the kit delivers the event the way the
// worker does, through the same middleware and inbox transaction, against
// the real PostgreSQL of the test:
//
//	kit := handlertest.New(t, db, worker.Subscription{…})
//	published := kit.Deliver(events.OrderConfirmed{…})
//
// Deliver hands the event over several times at once (the first
// deliveries, which race for the inbox row), then again with the same
// message UUID, then several times at once again, and fails the test when
//
//   - a delivery fails (Attempt returns the error instead, for a test of
//     a refusal);
//   - the racing first deliveries committed the effect more than once, or
//     a later delivery changed any row of the database, published anything
//     or ran the handler's effect again: the effect must happen once per
//     message however often, and however concurrently, it arrives;
//   - the handler wrote outbox rows outside the transaction it was handed
//     (they would commit apart from its inbox row);
//   - an attempt took longer than the handler timeout.
//
// The kit compares the whole database before and after each delivery, so
// the test gives it a database of its own (testenv.OwnDB), which no other
// test writes meanwhile.
package handlertest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

// DefaultTimeout is the handler timeout a kit holds handlers to unless
// told otherwise: HANDLER_TIMEOUT's default.
const DefaultTimeout = 5 * time.Second

// Kit delivers events to one subscription's handlers.
type Kit struct {
	t           testing.TB
	db          *sql.DB
	sub         worker.Subscription
	run         *worker.Runner
	timeout     time.Duration
	concurrency int

	mu        sync.Mutex
	runs      map[string]int // committed runs of the handler, by message UUID
	published []events.Event // by the committed runs, since the last take
}

// Option changes a Kit.
type Option func(*Kit)

// WithTimeout holds the handlers to d per attempt (HANDLER_TIMEOUT).
func WithTimeout(d time.Duration) Option { return func(k *Kit) { k.timeout = d } }

// WithConcurrency delivers n copies at once in Deliver's first and last
// steps (default 4).
func WithConcurrency(n int) Option { return func(k *Kit) { k.concurrency = max(n, 2) } }

// New returns a kit that delivers to sub's handlers, which write in db; it
// stops with the test.
func New(t testing.TB, db *sql.DB, sub worker.Subscription, opts ...Option) *Kit {
	t.Helper()
	k := &Kit{t: t, db: db, sub: sub, timeout: DefaultTimeout, concurrency: 4, runs: map[string]int{}}
	for _, opt := range opts {
		opt(k)
	}
	run, err := worker.NewRunner(sub, worker.RunnerConfig{
		DB: db, Logger: testenv.Logger(t), Timeout: k.timeout, Inner: k.probe,
	})
	if err != nil {
		t.Fatalf("handlertest: %v", err)
	}
	t.Cleanup(func() {
		if err := run.Close(); err != nil {
			t.Errorf("handlertest: stop: %v", err)
		}
	})
	k.run = run
	return k
}

// probe runs inside the inbox's transaction, around the handler: it
// records each run whose transaction commits, with what it published.
func (k *Kit) probe(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		produced, err := next(msg)
		if tx, ok := postgres.InboxTx(msg.Context()); ok && err == nil {
			tx.AfterCommit(func() {
				k.mu.Lock()
				defer k.mu.Unlock()
				k.runs[msg.UUID]++
				k.published = append(k.published, tx.Published()...)
			})
		}
		return produced, err
	}
}

// Deliver delivers e concurrently, then again with the same UUID, then
// concurrently again, and returns the events its one committed run
// published. It fails the test as the package doc says.
func (k *Kit) Deliver(e events.Event) []events.Event {
	k.t.Helper()
	msg, err := events.NewMessage(events.WithCorrelationID(context.Background(), "handlertest"), e)
	if err != nil {
		k.t.Fatalf("handlertest: %v", err)
	}
	return k.DeliverMessage(msg)
}

// DeliverMessage is Deliver of a message made by the test.
func (k *Kit) DeliverMessage(msg *message.Message) []events.Event {
	k.t.Helper()
	before := k.snapshot()
	for _, err := range k.handOverAtOnce(msg, k.concurrency) {
		if err != nil {
			k.t.Fatalf("handlertest: first deliveries of %s: %v", describe(msg), err)
		}
	}
	k.mu.Lock()
	runs, published := k.runs[msg.UUID], k.take()
	k.mu.Unlock()
	if runs != 1 {
		k.t.Errorf("handlertest: %d deliveries of %s at once committed the handler's effect %d times, want once",
			k.concurrency, describe(msg), runs)
	}
	after := k.snapshot()
	if added := after.outboxRows() - before.outboxRows(); added != len(published) {
		k.t.Errorf("handlertest: %s: the handler published %d event(s) in its transaction, but %d outbox row(s) were written: "+
			"it publishes outside the transaction it is handed", describe(msg), len(published), added)
	}

	k.again(msg, after, "the second delivery", 1)
	k.again(msg, after, "the concurrent deliveries", k.concurrency)
	return published
}

// handOverAtOnce delivers msg n times at once and returns each error.
func (k *Kit) handOverAtOnce(msg *message.Message, n int) []error {
	k.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = k.handOver(msg) })
	}
	wg.Wait()
	return errs
}

// again delivers msg n times at once, each after the first handled it,
// and fails the test if any did anything.
func (k *Kit) again(msg *message.Message, handled snapshot, what string, n int) {
	k.t.Helper()
	for _, err := range k.handOverAtOnce(msg, n) {
		if err != nil {
			k.t.Errorf("handlertest: %s of %s: %v", what, describe(msg), err)
		}
	}
	k.mu.Lock()
	runs, published := k.runs[msg.UUID], k.take()
	k.mu.Unlock()
	if runs != 1 {
		k.t.Errorf("handlertest: %s of %s ran the handler's effect again: %d committed runs for one message", what, describe(msg), runs)
	}
	if len(published) > 0 {
		k.t.Errorf("handlertest: %s of %s published %v", what, describe(msg), eventTypes(published))
	}
	if changed := handled.changed(k.snapshot()); len(changed) > 0 {
		k.t.Errorf("handlertest: %s of %s changed the tables %v", what, describe(msg), changed)
	}
}

// Attempt delivers e once and returns what it published and its error,
// without the checks of Deliver: for a test of a handler's refusal.
func (k *Kit) Attempt(e events.Event) ([]events.Event, error) {
	k.t.Helper()
	msg, err := events.NewMessage(context.Background(), e)
	if err != nil {
		k.t.Fatalf("handlertest: %v", err)
	}
	return k.deliver(msg)
}

// deliver delivers msg once, and returns what its committed run
// published.
func (k *Kit) deliver(msg *message.Message) ([]events.Event, error) {
	k.t.Helper()
	err := k.handOver(msg)
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.take(), err
}

// handOver delivers msg once, and fails the test if that took longer
// than the handler timeout.
func (k *Kit) handOver(msg *message.Message) error {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*k.timeout+5*time.Second)
	defer cancel()
	start := time.Now()
	err := k.run.Deliver(ctx, msg)
	if took := time.Since(start); took > k.timeout {
		k.t.Errorf("handlertest: %s took %v, longer than the handler timeout (%v)", describe(msg), took.Round(time.Millisecond), k.timeout)
	}
	return err
}

// take returns and forgets what was published since the last take; k.mu
// is held.
func (k *Kit) take() []events.Event {
	p := k.published
	k.published = nil
	return p
}

func describe(msg *message.Message) string {
	return events.Marshaler{}.NameFromMessage(msg) + " " + msg.UUID
}

func eventTypes(es []events.Event) []string {
	types := make([]string, len(es))
	for i, e := range es {
		types[i] = e.EventType()
	}
	return types
}
