package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/worker"
)

// TestHandlers_aRegisteredStreamIsHandledEverywhere: one more entry in the
// subscription list, on a stream nothing else in it names, and that stream
// is subscribed by the worker, reported by `outbox status`, measured by
// the lag and pending gauges, shown on the live page, trimmed by the
// clean-up, and open to dead-letter replay.
//
// The stream is the one of the order outcomes, with the list's own
// subscriptions of it left out: a subscription handles events of the
// contract only.
func TestHandlers_aRegisteredStreamIsHandledEverywhere(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := testenv.FreeAddr(t)
	vars := map[string]string{
		"DATABASE_URL":     testenv.OwnDatabaseURL(t),
		"REDIS_URL":        testenv.RedisURL(t),
		"STREAM_PREFIX":    testenv.StreamPrefix(t),
		"OPS_ADDR":         addr, // the live page's
		"STREAM_RETENTION": "1ms",
	}
	cfg, err := loadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	opts, err := redisstreams.ParseURL(cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opts)
	defer rdb.Close()
	logger := testenv.Logger(t)
	a := &app{cfg: cfg, logger: logger, db: db, rdb: rdb, metrics: metrics.New(), live: live.New(),
		orders: orders.NewService(db), inventory: inventory.NewService(db)}

	const auditStream = events.StreamOrderOutcomes
	subs := slices.DeleteFunc(a.subscriptions(), func(s worker.Subscription) bool { return s.Stream == auditStream })
	if slices.Contains(worker.ConsumedStreams(subs), auditStream) {
		t.Fatalf("%s is still consumed without the test's subscription", auditStream)
	}
	notes := make(chan string, 10)
	subs = append(subs, worker.Subscription{Name: "audit.record", Stream: auditStream, Group: "audit",
		Handlers: []cqrs.GroupEventHandler{cqrs.NewGroupEventHandler(postgres.InInbox(
			func(_ context.Context, _ *postgres.Tx, e *events.OrderConfirmed) error {
				notes <- e.OrderID
				return nil
			}))}})
	a.streams = newStreams(cfg, opts, logger, worker.ConsumedStreams(subs))

	// The worker subscribes it.
	handling := make(chan error, 1)
	go func() { handling <- a.handleMessages(ctx, subs) }()
	pub, err := a.streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, note := range []string{"first", "second"} {
		msg, err := events.NewMessage(ctx, events.OrderConfirmed{OrderID: note})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(auditStream, msg); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-notes:
			if got != note {
				t.Fatalf("handled %q, want %q", got, note)
			}
		case err := <-handling:
			t.Fatalf("worker ended: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("the registered handler was not called")
		}
	}
	acked := func() bool {
		groups, err := rdb.XInfoGroups(ctx, a.streams.Name(auditStream)).Result()
		return err == nil && len(groups) == 1 && groups[0].Pending == 0 && groups[0].Lag == 0
	}
	waitFor(t, "the audit entry acked", acked)

	// outbox status.
	var out bytes.Buffer
	if err := a.outboxStatus(ctx, &out, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), auditStream) || !strings.Contains(out.String(), "audit") {
		t.Errorf("outbox status does not show %s and its group:\n%s", auditStream, out.String())
	}

	// The gauges, and the live page (which the API process's watcher feeds).
	go a.watcher().Run(ctx)
	go a.serveOps(ctx, true)
	waitFor(t, "the lag gauge of the audit group", func() bool {
		text := gather(t, a.metrics)
		return strings.Contains(text, `stream_consumer_lag{group="audit",stream="`+auditStream+`"} 0`) &&
			strings.Contains(text, `stream_pending_messages{group="audit",stream="`+auditStream+`"} 0`)
	})
	if page := livePage(t, ctx, addr); !strings.Contains(page, auditStream) {
		t.Errorf("the live page's snapshot does not show %s: %s", auditStream, page)
	}

	// The clean-up trims it: both entries are acked, and only the last
	// one handed to the group stays.
	a.janitor().Once(ctx)
	if n, err := rdb.XLen(ctx, a.streams.Name(auditStream)).Result(); err != nil || n != 1 {
		t.Errorf("%s holds %d entries after the clean-up (%v), want the first trimmed", auditStream, n, err)
	}

	// A dead letter of it goes back to it.
	dead := message.NewMessage(testenv.Unique("dead"), []byte(`{"order_id":"replayed"}`))
	dead.Metadata.Set(events.MetadataEventType, "OrderConfirmed")
	dead.Metadata.Set(middleware.PoisonedTopicKey, a.streams.Name(auditStream))
	dead.Metadata.Set(middleware.ReasonForPoisonedKey, "a test")
	dlq, err := a.streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	if err := dlq.Publish(events.StreamDeadLetter, dead); err != nil {
		t.Fatal(err)
	}
	letters, err := a.streams.DeadLetters(ctx, rdb)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters = %v, %v; want the one", letters, err)
	}
	if err := a.streams.Replay(ctx, rdb, letters[0]); err != nil {
		t.Fatalf("replay a dead letter of %s: %v", auditStream, err)
	}
	select {
	case note := <-notes:
		if note != "replayed" {
			t.Errorf("handled %q, want replayed", note)
		}
	case <-time.After(time.Minute):
		t.Error("the replayed dead letter was not handled")
	}

	cancel()
	if err := <-handling; err != nil {
		t.Errorf("worker: %v", err)
	}
}

// gather returns the metrics of m in the text format.
func gather(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// livePage returns the first snapshot the live page's event stream sends.
func livePage(t *testing.T, ctx context.Context, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var resp *http.Response
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/events", nil)
		var err error
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("GET /events: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			return data
		}
	}
	t.Fatalf("the live page's event stream ended without a snapshot: %v", lines.Err())
	return ""
}
