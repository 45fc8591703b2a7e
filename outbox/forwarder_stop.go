package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// finishingOutbox is the forwarder's outbox subscriber: a stop (Close, or
// the end of the subscription's context) lets the batch in hand finish
// instead of abandoning it.
//
// watermill-sql reads a batch of rows in one transaction, hands them out one
// at a time and, once they are acked, saves the group's offset in that
// transaction. Closed or cancelled in the middle, it rolls the transaction
// back (database/sql does so as soon as the context of a transaction ends),
// though some rows of the batch are on their streams already: the next poll
// forwards them again. So this subscriber keeps the stop from reaching the
// batch: the subscription's context is one of its own, ended only between
// batches (in the BackoffManager, which watermill-sql calls after each poll
// and which does all the waiting between polls).
//
// A batch is forwarded in well under a second. Should it take longer than
// drain (Redis away), it is abandoned at the row in hand through
// watermill-sql's Close, which saves the rows acked so far, so that at most
// that one row is forwarded again; should even that not end by the end of
// the stop's time (the database away), the context ends and the batch
// rolls back.
type finishingOutbox struct {
	sub   *wsql.Subscriber
	gate  *batchGate
	drain time.Duration
	stop  time.Duration // the stop's whole time; drain is most of it
	// logger tells of a subscription that waits for the database.
	logger watermill.LoggerAdapter

	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
}

// newFinishingOutbox is the forwarder's outbox subscriber: the consumer
// group "forwarder", cfg.BatchSize rows a poll, backoff deciding the waits
// between polls, and a stop within cfg.StopTimeout (which must be set).
func newFinishingOutbox(db *sql.DB, cfg ForwarderConfig, backoff wsql.BackoffManager, logger watermill.LoggerAdapter) (*finishingOutbox, error) {
	gate := newBatchGate(backoff)
	outbox, err := wsql.NewSubscriber(limitedDB{db}, wsql.SubscriberConfig{
		ConsumerGroup: forwarderGroup,
		SchemaAdapter: outboxSchema{wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: cfg.BatchSize},
			cfg.StopTimeout + pollIdleMargin},
		OffsetsAdapter: skipLockedOffsets{},
		BackoffManager: gate,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("create outbox subscriber: %w", err)
	}
	return &finishingOutbox{sub: outbox, gate: gate, drain: redisstreams.DrainTimeout(cfg.StopTimeout), stop: cfg.StopTimeout,
		logger: logger}, nil
}

// pollIdleMargin is how much longer than a stop may take a poll's
// transaction may sit idle before the server ends it (outboxSchema).
const pollIdleMargin = 5 * time.Second

// limitedDB begins the subscriber's transactions with the pool's limits
// (postgres.BeginTx): through a transaction pooler, the server ends a poll
// left idle in its transaction, which holds its shard's offsets row, as
// it ends one of a session of its own (only later than the pool says:
// outboxSchema sets the poll's own limit).
type limitedDB struct{ *sql.DB }

func (d limitedDB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return postgres.BeginTx(ctx, d.DB, opts)
}

func (f *finishingOutbox) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.gate.subscribed(cancel)
	// Subscribing writes the group's row first; a failure leaves nothing
	// behind, so a subscription the database could not take yet (a link
	// reset, a lock) is made again rather than ending the forwarder.
	var msgs <-chan *message.Message
	err := retryTransient(ctx, f.logger, "subscribe to the outbox", func() (err error) {
		msgs, err = f.sub.Subscribe(inner, topic)
		return err
	})
	if err != nil {
		f.gate.failed() // no batch to finish: a Close need not wait
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			f.stopping()
		case <-f.gate.ended:
		}
	}()
	return msgs, nil
}

// stopping ends the subscription after the batch in hand, within the
// stop's time.
func (f *finishingOutbox) stopping() {
	f.stopOnce.Do(func() {
		if !f.gate.stop() {
			return
		}
		go func() {
			select {
			case <-f.gate.ended:
				return
			case <-time.After(f.drain):
			}
			go f.closeSub() // abandon at the row in hand
			select {
			case <-f.gate.ended:
			case <-time.After(f.stop - f.drain):
				f.gate.abandon()
			}
		}()
	})
}

// closeSub closes watermill-sql's subscriber, once: its Close is not safe
// to call twice at once.
func (f *finishingOutbox) closeSub() error {
	f.closeOnce.Do(func() { f.closeErr = f.sub.Close() })
	return f.closeErr
}

// Close returns once the batch in hand, if any, is done (or given up) and
// the outbox subscription has ended.
func (f *finishingOutbox) Close() error {
	f.stopping()
	if f.gate.running() {
		<-f.gate.ended
	}
	return f.closeSub()
}

// batchGate is the outbox subscriber's BackoffManager, wrapping the one
// that decides how long to wait between polls. It knows whether a poll (a
// batch) is under way, and ends the subscription only between two.
type batchGate struct {
	backoff wsql.BackoffManager

	mu       sync.Mutex
	polling  bool
	stopped  bool
	cancel   context.CancelFunc
	stopping chan struct{}
	ended    chan struct{}
}

func newBatchGate(backoff wsql.BackoffManager) *batchGate {
	return &batchGate{backoff: backoff, stopping: make(chan struct{}), ended: make(chan struct{})}
}

// subscribed is called with what ends the subscription; the first poll
// follows at once.
func (g *batchGate) subscribed(cancel context.CancelFunc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancel, g.polling = cancel, true
}

// stop asks the subscription to end after the batch in hand, at once if
// there is none. It reports whether a subscription was running.
func (g *batchGate) stop() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel == nil {
		return false
	}
	if !g.stopped {
		g.stopped = true
		close(g.stopping)
		if !g.polling {
			g.end()
		}
	}
	return true
}

// failed ends a subscription that could not be made.
func (g *batchGate) failed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.end()
}

// running reports whether a subscription was made.
func (g *batchGate) running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cancel != nil
}

// abandon ends the subscription's context even in the middle of a batch:
// the batch rolls back.
func (g *batchGate) abandon() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancel()
}

// end ends the subscription; g.mu is held.
func (g *batchGate) end() {
	select {
	case <-g.ended:
	default:
		g.cancel()
		close(g.ended)
	}
}

// idleWait is what HandleError returns once the subscription has ended: a
// wait long enough that watermill-sql sees the end of its context first.
const idleWait = time.Hour

// HandleError is called by watermill-sql after each poll, before the next.
// It waits here, not in watermill-sql, so that the wait can end with the
// subscription and no poll starts after a stop.
func (g *batchGate) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	g.mu.Lock()
	g.polling = false
	if g.stopped {
		g.end()
		g.mu.Unlock()
		return idleWait
	}
	g.mu.Unlock()

	if d := g.backoff.HandleError(logger, noMsg, err); d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-g.stopping:
		}
		timer.Stop()
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		g.end()
		return idleWait
	}
	g.polling = true
	return 0
}
