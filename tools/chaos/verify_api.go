package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"
)

// stranger is a customer who places no order: none of the others' may be
// shown to it.
const stranger = "chaos-stranger"

// checkAPI reads a sample of the orders, each with its customer's token,
// and the stock of every SKU through the api, and compares them with the
// database and with what was sent. Each order of the sample must be
// hidden from another customer: not found, as an unknown id is.
func checkAPI(ctx context.Context, c *apiClient, s *snapshot, p plan, ids []string, sample int, rng *rand.Rand, f *findings) {
	var accepted []int
	for i, id := range ids {
		if id != "" {
			accepted = append(accepted, i)
		}
	}
	other, err := c.creds.customer(stranger)
	if err != nil {
		f.add("api order", "token of %s: %v", stranger, err)
		return
	}
	rng.Shuffle(len(accepted), func(a, b int) { accepted[a], accepted[b] = accepted[b], accepted[a] })
	for _, i := range accepted[:min(sample, len(accepted))] {
		id, spec := ids[i], p.orders[i]
		owner, err := c.creds.customer(spec.CustomerID)
		if err != nil {
			f.add("api order", "token of %s: %v", spec.CustomerID, err)
			continue
		}
		var got orderView
		if _, err := getWithRetry(ctx, c, "/orders/"+id, owner, &got); err != nil {
			f.add("api order", "GET /orders/%s (key %s) as %s: %v", id, spec.Key, spec.CustomerID, err)
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
		if code, err := getWithRetry(ctx, c, "/orders/"+id, other, nil); code != http.StatusNotFound {
			f.add("api isolation", "GET /orders/%s of %s as customer %s: want 404, got %d (%v)", id, spec.CustomerID, stranger, code, err)
		}
	}
	admin, err := c.creds.administrator()
	if err != nil {
		f.add("api stock", "administrator's token: %v", err)
		return
	}
	for _, sku := range p.skus {
		var got stockView
		if _, err := getWithRetry(ctx, c, "/inventory/"+sku, admin, &got); err != nil {
			f.add("api stock", "GET /inventory/%s: %v", sku, err)
			continue
		}
		if st := s.stock[sku]; got.Available != st.available || got.Reserved != st.reserved {
			f.add("api stock", "GET /inventory/%s shows available=%d reserved=%d, the database %d and %d",
				sku, got.Available, got.Reserved, st.available, st.reserved)
		}
	}
}

// getWithRetry reads path with the token of auth, retrying briefly: the
// processes are up by now, so a failure that lasts is a finding. It
// returns the last answer's status, an error for any but 200.
func getWithRetry(ctx context.Context, c *apiClient, path string, auth http.Header, out any) (int, error) {
	var code int
	_, err := retry(ctx, 15*time.Second, rand.Float64, func(ctx context.Context) error {
		var err error
		code, err = c.do(ctx, http.MethodGet, path, auth, nil, out)
		return err
	})
	return code, err
}
