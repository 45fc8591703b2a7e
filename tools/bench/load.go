package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/tools/internal/credentials"
)

// stockUnits is what each SKU starts with: enough that no order of a run is
// rejected for want of stock.
const stockUnits = 1_000_000_000

// loader places orders on one API process, each with its customer's token.
type loader struct {
	client *http.Client
	base   string
	skus   int
	creds  *credentials.Credentials
	seq    atomic.Int64
	tag    string // makes the idempotency keys of this loader its own
}

// newLoader returns a loader whose client keeps up to conns connections
// open to the API, so that no request waits for a connection to be made.
// It has no proxy: requests go straight to 127.0.0.1 whatever HTTP_PROXY
// says.
func newLoader(base string, skus, conns int, creds *credentials.Credentials) *loader {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &loader{client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: base, skus: skus, creds: creds, tag: randomHex(3)}
}

func (l *loader) close() { l.client.CloseIdleConnections() }

// sku names the i-th SKU of the catalogue.
func sku(i int) string { return fmt.Sprintf("SKU-%03d", i) }

// setStock gives every SKU stockUnits units through PUT /inventory, with
// the admin token.
func (l *loader) setStock(ctx context.Context) error {
	for i := range l.skus {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, l.base+"/inventory/"+sku(i),
			strings.NewReader(fmt.Sprintf(`{"available":%d}`, stockUnits)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+l.creds.AdminToken)
		resp, err := l.client.Do(req)
		if err != nil {
			return fmt.Errorf("set stock: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("set stock of %s: status %d", sku(i), resp.StatusCode)
		}
	}
	return nil
}

// place sends one new order, two different SKUs of one to three units, with
// an Idempotency-Key of its own (as the raw-limit transaction records one),
// for one of the customers, with that customer's token; it succeeds on 201.
func (l *loader) place(ctx context.Context, customers []customer) error {
	n := l.seq.Add(1)
	who := customers[n%int64(len(customers))]
	a := rand.IntN(l.skus)
	b := (a + 1 + rand.IntN(l.skus-1)) % l.skus
	body := fmt.Sprintf(`{"customer_id":"%s","items":[{"sku":"%s","quantity":%d},{"sku":"%s","quantity":%d}]}`,
		who.id, sku(a), 1+rand.IntN(3), sku(b), 1+rand.IntN(3))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.base+"/orders", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", who.authorization)
	req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%s-%d", l.tag, n))
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// customers are the customers of group, with their tokens; a load whose
// tokens cannot be made fails as a whole.
func (l *loader) customers(group string) ([]customer, loadResult, bool) {
	cs, err := customersOf(l.creds, group)
	if err != nil {
		var r loadResult
		r.record(0, fmt.Errorf("tokens of %s: %w", group, err))
		return nil, r, false
	}
	return cs, loadResult{}, true
}

// loadResult is what one load saw.
type loadResult struct {
	sent, ok, skipped int
	failures          map[string]int // by error, for the report
	latencies         []time.Duration
	elapsed           time.Duration
	maxLag            time.Duration // how late the open loop sent, at worst
}

func (r *loadResult) record(lat time.Duration, err error) {
	r.sent++
	if err != nil {
		if r.failures == nil {
			r.failures = map[string]int{}
		}
		msg := err.Error()
		if len(msg) > 80 {
			msg = msg[:80]
		}
		r.failures[msg]++
		return
	}
	r.ok++
	r.latencies = append(r.latencies, lat)
}

func (r *loadResult) merge(o *loadResult) {
	r.sent += o.sent
	r.ok += o.ok
	r.latencies = append(r.latencies, o.latencies...)
	for k, v := range o.failures {
		if r.failures == nil {
			r.failures = map[string]int{}
		}
		r.failures[k] += v
	}
}

// closedLoop runs clients that each place one order after another for d,
// for the customers of group.
func (l *loader) closedLoop(ctx context.Context, group string, clients int, d time.Duration) loadResult {
	return l.closed(ctx, group, clients, d, 0)
}

// closedCount is closedLoop until n orders have been sent, or d has
// passed: a backlog of n orders, each its own transaction.
func (l *loader) closedCount(ctx context.Context, group string, clients, n int, d time.Duration) loadResult {
	return l.closed(ctx, group, clients, d, n)
}

// closed is the closed loop of clients for d, or until limit orders have
// been sent when limit > 0.
func (l *loader) closed(ctx context.Context, group string, clients int, d time.Duration, limit int) loadResult {
	cs, failed, ok := l.customers(group)
	if !ok {
		return failed
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var tickets atomic.Int64
	results := make([]loadResult, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && (limit <= 0 || tickets.Add(1) <= int64(limit)) {
				t := time.Now()
				err := l.place(ctx, cs)
				if ctx.Err() != nil { // cut short by the end of the load
					return
				}
				results[i].record(time.Since(t), err)
			}
		}()
	}
	wg.Wait()
	total := loadResult{elapsed: time.Since(start)}
	for i := range results {
		total.merge(&results[i])
	}
	return total
}

// openLoop sends perSecond orders a second for d on a fixed schedule,
// whatever the answers, each in a goroutine of its own. A request is timed
// from when it was due, so a late send counts against the latency. When
// maxInFlight requests are outstanding, a send is skipped and counted.
func (l *loader) openLoop(ctx context.Context, group string, perSecond int, d time.Duration, maxInFlight int) loadResult {
	cs, failed, ok := l.customers(group)
	if !ok {
		return failed
	}
	interval := time.Second / time.Duration(perSecond)
	n := int(d / interval)
	var (
		mu    sync.Mutex
		total loadResult
		wg    sync.WaitGroup
	)
	slots := make(chan struct{}, maxInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				continue
			}
		} else if -wait > total.maxLag {
			total.maxLag = -wait
		}
		select {
		case slots <- struct{}{}:
		default:
			mu.Lock()
			total.skipped++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			err := l.place(ctx, cs)
			lat := time.Since(due)
			mu.Lock()
			total.record(lat, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}
