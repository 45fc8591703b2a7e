package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

// requestTimeout bounds one HTTP request; it outlasts the api's own
// HTTP_REQUEST_TIMEOUT (10 s), so a slow answer is seen, not cut.
const requestTimeout = 12 * time.Second

// apiClient talks to the harness's api instances, in turn: a request that
// fails on one (killed, stopping) is retried on the next. Each request
// carries the token of whom it speaks for (creds).
type apiClient struct {
	bases []string
	next  atomic.Uint64
	http  *http.Client
	creds *harnessCredentials
}

// base is the api instance the next request goes to.
func (c *apiClient) base() string {
	return c.bases[(c.next.Add(1)-1)%uint64(len(c.bases))]
}

func newAPIClient(bases []string, conns int, creds *harnessCredentials) *apiClient {
	return &apiClient{
		bases: bases,
		creds: creds,
		http: &http.Client{
			Timeout:   requestTimeout,
			Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second},
		},
	}
}

// orderView is an order as GET /orders/{id} and POST /orders show it.
type orderView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
	Items  []item `json:"items"`
	// CancelledAt is set once the order is cancelled.
	CancelledAt string `json:"cancelled_at"`
}

// stockView is the answer of /inventory/{sku}.
type stockView struct {
	SKU       string `json:"sku"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
}

// errPermanent marks an answer that no retry can change: the test fails.
var errPermanent = errors.New("permanent")

// do sends one request and decodes a 200 or 201 answer into out. Any other
// answer is an error, wrapped in errPermanent when it is a 4xx other than
// 408 and 429 (a 5xx, a timeout or a refused connection can pass).
func (c *apiClient) do(ctx context.Context, method, path string, header http.Header, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base()+path, rd)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read answer: %w", err)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusOK || code == http.StatusCreated || code == http.StatusAccepted:
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return code, fmt.Errorf("%w: decode %d answer of %s %s: %v", errPermanent, code, method, path, err)
			}
		}
		return code, nil
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return code, fmt.Errorf("%w: %s %s: %d %s", errPermanent, method, path, code, bytes.TrimSpace(raw))
	default:
		return code, fmt.Errorf("%s %s: %d %s", method, path, code, bytes.TrimSpace(raw))
	}
}

// retry calls fn until it succeeds, fails permanently, or limit passes,
// backing off from 50 ms to 1 s with jitter. It returns how many attempts
// failed.
func retry(ctx context.Context, limit time.Duration, rng func() float64, fn func(context.Context) error) (int, error) {
	deadline := time.Now().Add(limit)
	backoff := 50 * time.Millisecond
	for failed := 0; ; failed++ {
		err := fn(ctx)
		if err == nil || errors.Is(err, errPermanent) {
			return failed, err
		}
		if ctx.Err() != nil {
			return failed, ctx.Err()
		}
		wait := time.Duration(float64(backoff) * (0.5 + rng()))
		if time.Now().Add(wait).After(deadline) {
			return failed, fmt.Errorf("gave up after %s and %d attempts: %w", limit, failed+1, err)
		}
		select {
		case <-ctx.Done():
			return failed, ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// waitReady waits for every api instance's /readyz to answer 200
// (PostgreSQL and Redis reachable from it).
func (c *apiClient) waitReady(ctx context.Context, limit time.Duration) error {
	for _, base := range c.bases {
		one := &apiClient{bases: []string{base}, http: c.http, creds: c.creds}
		_, err := retry(ctx, limit, rand.Float64, func(ctx context.Context) error {
			_, err := one.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
			if errors.Is(err, errPermanent) {
				return errors.New(err.Error()) // not ready yet is not final here
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("wait for the api at %s to be ready: %w", base, err)
		}
	}
	return nil
}

// setStock sets the available units of every SKU of the plan, with the
// admin token.
func (c *apiClient) setStock(ctx context.Context, p plan) error {
	auth := c.creds.operator()
	for _, sku := range p.skus {
		want := p.stock[sku]
		var got stockView
		_, err := retry(ctx, time.Minute, rand.Float64, func(ctx context.Context) error {
			_, err := c.do(ctx, http.MethodPut, "/inventory/"+sku, auth, map[string]int{"available": want}, &got)
			return err
		})
		if err != nil {
			return fmt.Errorf("set stock of %s: %w", sku, err)
		}
		if got.Available != want || got.Reserved != 0 {
			return fmt.Errorf("set stock of %s to %d: answered available=%d reserved=%d", sku, want, got.Available, got.Reserved)
		}
	}
	return nil
}
