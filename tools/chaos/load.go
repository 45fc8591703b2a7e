package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// load places the plan's orders from concurrent clients. A client retries
// an order that failed in any passing way (refused connection, timeout,
// 5xx such as the 503 of a restarting database) with the same body and the
// same Idempotency-Key until the api accepts it (201) or replays it (200).
type load struct {
	client  *apiClient
	plan    plan
	timeout time.Duration
	logger  *slog.Logger

	done     atomic.Int64 // of the run under way
	total    atomic.Int64 // orders of the run under way
	retries  atomic.Int64
	replays  atomic.Int64
	mu       sync.Mutex
	ids      []string // order id per plan index; "" when never accepted
	cancels  []int    // the answer to the cancel per plan index; 0 when not cancelled
	problems []string
}

func newLoad(client *apiClient, p plan, timeout time.Duration, logger *slog.Logger) *load {
	return &load{client: client, plan: p, timeout: timeout, logger: logger,
		ids: make([]string, len(p.orders)), cancels: make([]int, len(p.orders))}
}

// progress is the share of the orders of the run under way that are
// finished, accepted or not.
func (l *load) progress() float64 {
	return float64(l.done.Load()) / float64(max(l.total.Load(), 1))
}

// run places the orders at idx with clients concurrent clients, starting at
// most rate orders a second (no limit when 0), and returns when each is
// accepted or given up on, or ctx is done. One run at a time.
func (l *load) run(ctx context.Context, idx indices, clients int, rate float64, seed uint64) error {
	l.done.Store(0)
	l.total.Store(int64(len(idx)))
	next := make(chan int)
	var wg sync.WaitGroup
	for c := range clients {
		rng := rand.New(rand.NewPCG(seed, uint64(c)+1))
		wg.Go(func() {
			for i := range next {
				l.place(ctx, i, rng)
			}
		})
	}
	var pace <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		pace = t.C
	}
	step := max(len(idx)/10, 1)
	for n, i := range idx {
		if pace != nil {
			select {
			case <-pace:
			case <-ctx.Done():
			}
		}
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if n > 0 && n%step == 0 {
			l.logger.Info("chaos: placing orders", "sent", n, "of", len(idx), "done", l.done.Load(), "retries", l.retries.Load())
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("place orders: %w", err)
	}
	return nil
}

func (l *load) place(ctx context.Context, i int, rng *rand.Rand) {
	defer l.done.Add(1)
	var cancelID string // the accepted order, to cancel once l.mu is let go
	defer func() {
		if cancelID != "" {
			l.cancel(ctx, i, cancelID, rng)
		}
	}()
	spec := l.plan.orders[i]
	auth, err := l.client.creds.customer(spec.CustomerID)
	if err != nil {
		l.problem(fmt.Sprintf("order %s: token of %s: %v", spec.Key, spec.CustomerID, err))
		return
	}
	// The customer's own token: body and token name the same customer.
	header := with(auth, "Idempotency-Key", spec.Key)
	var got orderView
	var code int
	failed, err := retry(ctx, l.timeout, rng.Float64, func(ctx context.Context) error {
		got = orderView{}
		var err error
		code, err = l.client.do(ctx, http.MethodPost, "/orders", header, spec, &got)
		return err
	})
	l.retries.Add(int64(failed))
	if ctx.Err() != nil {
		return
	}
	var problem string
	switch {
	case err != nil:
		problem = fmt.Sprintf("order %s not accepted: %v", spec.Key, err)
	case got.ID == "":
		problem = fmt.Sprintf("order %s: %d answer without an id", spec.Key, code)
	case !sameItems(spec.Items, got.Items):
		problem = fmt.Sprintf("order %s: %d answer has items %s, sent %s",
			spec.Key, code, itemsString(got.Items), itemsString(spec.Items))
	case code == http.StatusCreated && got.Status != "pending":
		problem = fmt.Sprintf("order %s: 201 answer with status %q, want pending", spec.Key, got.Status)
	}
	if code == http.StatusOK {
		l.replays.Add(1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if problem != "" {
		l.problems = append(l.problems, problem)
	}
	if err == nil {
		l.ids[i] = got.ID
		if spec.cancel {
			cancelID = got.ID
		}
	}
}

// cancelKeySuffix makes the Idempotency-Key of an order's cancel from the
// order's.
const cancelKeySuffix = "-cancel"

// cancel cancels the order at i, with an Idempotency-Key of its own, retried
// like a placement. The api answers 202 (cancelling), or 200 for a retry
// whose first attempt cancelled it, or 409 when the order was rejected
// first.
func (l *load) cancel(ctx context.Context, i int, id string, rng *rand.Rand) {
	spec := l.plan.orders[i]
	auth, err := l.client.creds.customer(spec.CustomerID)
	if err != nil {
		l.problem(fmt.Sprintf("cancel of order %s: token of %s: %v", id, spec.CustomerID, err))
		return
	}
	header := with(auth, "Idempotency-Key", spec.Key+cancelKeySuffix)
	var got orderView
	var code int
	failed, err := retry(ctx, l.timeout, rng.Float64, func(ctx context.Context) error {
		var err error
		code, err = l.client.do(ctx, http.MethodPost, "/orders/"+id+"/cancel", header, nil, &got)
		if code == http.StatusConflict {
			return nil
		}
		return err
	})
	l.retries.Add(int64(failed))
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.problems = append(l.problems, fmt.Sprintf("cancel of order %s not accepted: %v", id, err))
	case code != http.StatusConflict && got.Status != "cancelling" && got.Status != "cancelled":
		l.problems = append(l.problems, fmt.Sprintf("cancel of order %s: %d answer with status %q", id, code, got.Status))
	default:
		l.cancels[i] = code
	}
}

// problem records something the load ran into.
func (l *load) problem(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, p)
}

// idsOf returns the order ids of the orders at idx that the api accepted.
func (l *load) idsOf(idx indices) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, i := range idx {
		if l.ids[i] != "" {
			out = append(out, l.ids[i])
		}
	}
	return out
}

// accepted is the number of orders the api accepted.
func (l *load) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, id := range l.ids {
		if id != "" {
			n++
		}
	}
	return n
}
