package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/logging"
)

// RunnerConfig is what a Runner needs.
type RunnerConfig struct {
	DB     *sql.DB
	Logger *slog.Logger
	// Timeout bounds one attempt, as HANDLER_TIMEOUT does in the worker.
	Timeout time.Duration
	// OnDuplicate, when not nil, is called with the name of each message
	// the inbox finds handled already.
	OnDuplicate func(handler string)
	// Inner, when not nil, runs inside the inbox's transaction, around the
	// handler.
	Inner message.HandlerMiddleware
}

// Runner handles the messages handed to it (Deliver) with one
// subscription's handlers, as the worker does one attempt: the same cqrs
// handler group on a Watermill router, the same middleware and the same
// inbox transaction. It does not retry, park or dead-letter: each
// delivery's error is returned to its caller. The handler test kit and
// backfill deliver through it; deliveries may run concurrently.
type Runner struct {
	router  *message.Router
	feed    feed
	done    chan error
	cancel  context.CancelFunc
	closed  chan struct{} // closed as Close begins
	stopped chan struct{} // closed once the router has stopped
	close   sync.Once
	err     error // Close's
}

// ErrClosed is the error of a delivery to a Runner that is closed.
var ErrClosed = errors.New("runner closed")

// resultKey is the context key of the channel a delivery's attempt
// reports its error on: the router builds each message's context on the
// one it arrived with.
type resultKey struct{}

// NewRunner starts a Runner of sub.
func NewRunner(sub Subscription, cfg RunnerConfig) (*Runner, error) {
	if err := Check([]Subscription{sub}); err != nil {
		return nil, err
	}
	wlog := logging.Watermill(cfg.Logger)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.Timeout + time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("create message router: %w", err)
	}
	run := &Runner{router: r, feed: feed{ch: make(chan *message.Message)},
		done: make(chan error, 1), closed: make(chan struct{}), stopped: make(chan struct{})}
	r.AddMiddleware(report, keepContext)
	r.AddMiddleware(attempt(attemptConfig{
		DB: cfg.DB, Subscriptions: []Subscription{sub}, Logger: cfg.Logger, Timeout: cfg.Timeout,
		OnDuplicate: cfg.OnDuplicate, Inner: cfg.Inner,
	})...)
	err = register(r, wlog, []Subscription{sub},
		func(s Subscription) string { return s.Stream },
		func(Subscription) (message.Subscriber, error) { return run.feed, nil })
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	run.cancel = cancel
	go func() { run.done <- r.Run(ctx) }()
	select {
	case <-r.Running():
	case err := <-run.done:
		cancel()
		return nil, fmt.Errorf("start message router: %w", err)
	}
	return run, nil
}

// Deliver hands msg to the handlers and returns the error of the attempt
// (nil when it was handled, or found handled already). msg is not changed:
// each call delivers a copy, with its UUID.
func (run *Runner) Deliver(ctx context.Context, msg *message.Message) error {
	result := make(chan error, 1)
	m := msg.Copy()
	m.SetContext(context.WithValue(ctx, resultKey{}, result))
	select {
	case run.feed.ch <- m:
	case <-ctx.Done():
		return ctx.Err()
	case <-run.closed:
		return ErrClosed
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-run.stopped:
		select {
		case err := <-result:
			return err
		default: // the router stopped with the message in hand, before its attempt
			return ErrClosed
		}
	}
}

// report hands each attempt's error to its Deliver call and acks the
// message: the Runner's caller decides what a failure means.
func report(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		result, _ := msg.Context().Value(resultKey{}).(chan error)
		_, err := next(msg)
		if result != nil {
			result <- err // buffered: Deliver may have gone
		}
		return nil, nil
	}
}

// Close stops the Runner once the deliveries in flight are done; a
// delivery after it returns ErrClosed. It may be called more than once.
func (run *Runner) Close() error {
	run.close.Do(func() {
		close(run.closed)
		run.cancel()
		err := errors.Join(run.router.Close(), <-run.done)
		close(run.stopped)
		if !errors.Is(err, context.Canceled) {
			run.err = err
		}
	})
	return run.err
}

// feed is the Runner's subscriber: the messages Deliver hands it, each
// handled as soon as it arrives (the router runs each message in a
// goroutine of its own), whether or not the one before is acked. Its
// channel closes when the subscription's context ends, which stops the
// router's handler.
type feed struct{ ch chan *message.Message }

func (f feed) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for {
			select {
			case m := <-f.ch:
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (f feed) Close() error { return nil }
