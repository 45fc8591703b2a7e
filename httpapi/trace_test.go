package httpapi_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

// flowSubscriptions are the order flow's subscriptions, as handlers.go
// lists them.
func flowSubscriptions(o *orders.Service, inv *inventory.Service) []worker.Subscription {
	return []worker.Subscription{
		{Name: "inventory.reserve_stock", Stream: events.StreamOrdersPlaced, Group: "inventory",
			Handlers: []cqrs.GroupEventHandler{inInbox(inv.OnOrderPlaced), inInbox(inv.OnOrderCancelled)}},
		{Name: "orders.settle", Stream: events.StreamReservations, Group: "orders",
			Handlers: []cqrs.GroupEventHandler{inInbox(o.OnStockReserved), inInbox(o.OnStockRejected), inInbox(o.OnStockReleased)}},
	}
}

// inInbox is a cqrs event handler of fn, run in its inbox's transaction.
func inInbox[E any](fn func(context.Context, *postgres.Tx, *E) error) cqrs.GroupEventHandler {
	return cqrs.NewGroupEventHandler(postgres.InInbox(fn))
}

// TestTracing follows one order through HTTP, the outbox, the forwarder and
// both handlers: every span belongs to one trace, each hop the child of the
// one before.
func TestTracing(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	logger := testenv.Logger(t)
	m := metrics.New()
	ordersSvc, inventorySvc := orders.NewService(db), inventory.NewService(db)
	api := httpapi.New(httpapi.Config{
		Orders: ordersSvc, Inventory: inventorySvc, Auth: newVerifier(t), AdminToken: adminToken,
		Metrics: m, Tracer: tp, Logger: logger, RequestTimeout: 5 * time.Second,
	})
	fwd, err := outbox.NewForwarder(db, streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100, Tracer: tp})
	if err != nil {
		t.Fatal(err)
	}
	workers, err := worker.NewMessages(worker.MessagesConfig{
		DB: db, Streams: streams, Subscriptions: flowSubscriptions(ordersSvc, inventorySvc), Logger: logger,
		Metrics: m, Tracer: tp, HandlerTimeout: 5 * time.Second, MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fwd.Run(ctx)
	go workers.Run(ctx)

	sku := testenv.Unique("SKU")
	if rec := do(t, api, call{method: "PUT", path: "/inventory/" + sku, body: `{"available":1}`,
		header: map[string]string{"Authorization": "Bearer " + adminToken}}); rec.Code != http.StatusOK {
		t.Fatalf("PUT = %d", rec.Code)
	}
	rec := do(t, api, call{method: "POST", path: "/orders", body: `{"customer_id":"c","items":[{"sku":"` + sku + `","quantity":1}]}`})
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s", rec.Code, rec.Body)
	}
	id := decode(t, rec)["id"].(string)

	chain := []string{
		"POST /orders",
		"outbox publish OrderPlaced",
		"forward orders.placed",
		"handle inventory.reserve_stock",
		"outbox publish StockReserved",
		"forward inventory.reservations",
		"handle orders.settle",
	}
	deadline := time.Now().Add(15 * time.Second)
	var byName map[string]tracetest.SpanStub
	for {
		byName = map[string]tracetest.SpanStub{}
		for _, s := range spans.GetSpans() {
			byName[s.Name] = s
		}
		if _, ok := byName["handle orders.settle"]; ok {
			break
		}
		if time.Now().After(deadline) {
			o, _ := ordersSvc.Get(ctx, id)
			t.Fatalf("no settle span; order is %s; spans: %v", o.Status, keys(byName))
		}
		time.Sleep(20 * time.Millisecond)
	}
	root := byName[chain[0]]
	for i, name := range chain {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no span %q among %v", name, keys(byName))
		}
		if s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Errorf("span %q is in trace %s, the request in %s", name, s.SpanContext.TraceID(), root.SpanContext.TraceID())
		}
		if i > 0 && s.Parent.SpanID() != byName[chain[i-1]].SpanContext.SpanID() {
			t.Errorf("span %q is not the child of %q", name, chain[i-1])
		}
	}
}

func keys(m map[string]tracetest.SpanStub) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
