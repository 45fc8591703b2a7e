package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"
)

// checkAPI reads a sample of the orders and the stock of every SKU through
// the api and compares them with the database and with what was sent.
func checkAPI(ctx context.Context, c *apiClient, s *snapshot, p plan, ids []string, sample int, rng *rand.Rand, f *findings) {
	var accepted []int
	for i, id := range ids {
		if id != "" {
			accepted = append(accepted, i)
		}
	}
	rng.Shuffle(len(accepted), func(a, b int) { accepted[a], accepted[b] = accepted[b], accepted[a] })
	for _, i := range accepted[:min(sample, len(accepted))] {
		id, spec := ids[i], p.orders[i]
		var got orderView
		if err := getWithRetry(ctx, c, "/orders/"+id, &got); err != nil {
			f.add("api order", "GET /orders/%s (key %s): %v", id, spec.Key, err)
			continue
		}
		o, ok := s.orders[id]
		switch {
		case got.ID != id:
			f.add("api order", "GET /orders/%s answered order %q", id, got.ID)
		case !sameItems(spec.Items, got.Items):
			f.add("api order", "GET /orders/%s shows items %s, sent %s", id, itemsString(got.Items), itemsString(spec.Items))
		case ok && (got.Status != o.status || got.Reason != o.reason):
			f.add("api order", "GET /orders/%s shows %s %q, the database %s %q", id, got.Status, got.Reason, o.status, o.reason)
		case (got.Status == "cancelled") != (got.CancelledAt != ""):
			f.add("api order", "GET /orders/%s shows %s with cancelled_at %q", id, got.Status, got.CancelledAt)
		}
	}
	for _, sku := range p.skus {
		var got stockView
		if err := getWithRetry(ctx, c, "/inventory/"+sku, &got); err != nil {
			f.add("api stock", "GET /inventory/%s: %v", sku, err)
			continue
		}
		if st := s.stock[sku]; got.Available != st.available || got.Reserved != st.reserved {
			f.add("api stock", "GET /inventory/%s shows available=%d reserved=%d, the database %d and %d",
				sku, got.Available, got.Reserved, st.available, st.reserved)
		}
	}
}

// getWithRetry reads path, retrying briefly: the processes are up by now,
// so a failure that lasts is a finding.
func getWithRetry(ctx context.Context, c *apiClient, path string, out any) error {
	_, err := retry(ctx, 15*time.Second, rand.Float64, func(ctx context.Context) error {
		_, err := c.do(ctx, http.MethodGet, path, nil, nil, out)
		return err
	})
	return err
}
