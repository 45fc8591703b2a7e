package redisstreams_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

// xackHook records the XACKs of a client: the IDs of each, in order. When
// fail is set, each XACK asks it first: an error fails the XACK, which then
// does not reach Redis.
type xackHook struct {
	mu   sync.Mutex
	sent [][]string
	fail func() error
}

func (h *xackHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *xackHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *xackHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "xack" {
			return next(ctx, cmd)
		}
		var ids []string
		for _, a := range cmd.Args()[3:] { // xack stream group id…
			ids = append(ids, a.(string))
		}
		h.mu.Lock()
		h.sent = append(h.sent, ids)
		fail := h.fail
		h.mu.Unlock()
		if fail != nil {
			if err := fail(); err != nil {
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmd)
	}
}

// failOnce makes the next XACK fail with err, after running then.
func (h *xackHook) failOnce(err error, then func()) {
	failed := false
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = func() error {
		if failed {
			return nil
		}
		failed = true
		if then != nil {
			then()
		}
		return err
	}
}

func (h *xackHook) xacks() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sent)
}

// ackFixture is a stream of its own with n entries and a subscriber to it
// (group g) whose client's XACKs hook sees; for the tests of the acker
// alone, a subscription built by hand (the test decides when its acker
// runs) with the n entries read under its consumer but not yet handed out.
type ackFixture struct {
	admin   redis.UniversalClient // the test's own, for setup and checks
	stream  string
	sub     handBuilding
	c       *redisstreams.HandBuilt
	hook    *xackHook
	log     *testenv.Buffer
	entries []redis.XMessage
}

type handBuilding interface {
	message.Subscriber
	HandBuilt(stream string) *redisstreams.HandBuilt
}

func newAckStream(t *testing.T, n int) *ackFixture {
	t.Helper()
	streams := testenv.Streams(t)
	streams.Consumers = n
	log := &testenv.Buffer{}
	streams.Logger = watermill.NewSlogLogger(slog.New(slog.NewTextHandler(log, nil)))
	publish(t, streams, "acks", n)
	hook := &xackHook{}
	client := streams.NewClient()
	client.AddHook(hook)
	t.Cleanup(func() { client.Close() }) // the subscriber's Close closes it too; a second does no harm
	admin := streams.NewClient()
	t.Cleanup(func() { admin.Close() })
	return &ackFixture{
		admin:  admin,
		stream: streams.Name("acks"),
		sub:    streams.SubscriberOn("g", client),
		hook:   hook,
		log:    log,
	}
}

func newAckFixture(t *testing.T, n int) *ackFixture {
	t.Helper()
	f := newAckStream(t, n)
	if err := f.admin.XGroupCreateMkStream(context.Background(), f.stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	f.c = f.sub.HandBuilt(f.stream)
	t.Cleanup(f.c.Cancel)
	entries, err := f.c.Read(n)
	if err != nil || len(entries) != n {
		t.Fatalf("read %d entries (%v), want %d", len(entries), err, n)
	}
	f.entries = entries
	return f
}

// ids are the IDs of the fixture's entries.
func (f *ackFixture) ids() []string {
	ids := make([]string, len(f.entries))
	for i, xm := range f.entries {
		ids[i] = xm.ID
	}
	return ids
}

// pending is how many entries the group has pending.
func (f *ackFixture) pending(t *testing.T) int64 {
	t.Helper()
	p, err := f.admin.XPending(context.Background(), f.stream, "g").Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	return p.Count
}

// TestSubscription_acksInBatches: a handler whose message is acked frees its
// slot without sending an XACK; the acker then sends one XACK of every
// entry acked meanwhile.
func TestSubscription_acksInBatches(t *testing.T) {
	t.Parallel()
	const n = 20
	f := newAckFixture(t, n)
	for _, xm := range f.entries {
		f.c.Handle(xm)
	}
	var msgs []*message.Message
	for range n {
		select {
		case msg := <-f.c.Out():
			msgs = append(msgs, msg)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d messages handed out, want %d", len(msgs), n)
		}
	}
	for _, msg := range msgs {
		msg.Ack()
	}
	f.c.Wait()

	if free := f.c.FreeSlots(); free != n {
		t.Errorf("%d slots free once every message is acked, want %d", free, n)
	}
	if sent := f.hook.xacks(); len(sent) != 0 {
		t.Fatalf("handlers sent XACKs %v themselves; want them left to the acker", sent)
	}
	if p := f.pending(t); p != n {
		t.Errorf("%d entries pending before the acker ran, want %d", p, n)
	}

	f.c.Flush()
	sent := f.hook.xacks()
	if len(sent) != 1 {
		t.Fatalf("%d XACKs sent (%v), want one of all %d entries", len(sent), sent, n)
	}
	got := slices.Clone(sent[0])
	slices.Sort(got)
	want := f.ids()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("XACK of %v, want %v", got, want)
	}
	if p := f.pending(t); p != 0 {
		t.Errorf("%d entries pending after the XACK, want 0", p)
	}
}

// TestSubscription_retriesFailedAcks: an XACK that fails keeps its IDs;
// the next one sends them with those queued meanwhile, and all end acked.
func TestSubscription_retriesFailedAcks(t *testing.T) {
	t.Parallel()
	f := newAckFixture(t, 6)
	ids := f.ids()
	first, later := ids[:4], ids[4:]
	for _, id := range first {
		f.c.QueueAck(id)
	}
	f.hook.failOnce(errors.New("connection reset"), func() {
		for _, id := range later {
			f.c.QueueAck(id)
		}
	})

	f.c.Flush()
	sent := f.hook.xacks()
	if len(sent) != 2 || !slices.Equal(sent[0], first) || !slices.Equal(sent[1], ids) {
		t.Errorf("XACKs sent %v, want %v then %v", sent, first, ids)
	}
	if p := f.pending(t); p != 0 {
		t.Errorf("%d entries pending, want 0", p)
	}
	if !strings.Contains(f.log.String(), "Cannot ack stream entry, retrying") {
		t.Errorf("the failed XACK was not logged:\n%s", f.log)
	}
}

// TestSubscription_givesUpAcksWhenTheHandlersEnd: past the drain deadline
// (the handlers' context ended) a failed XACK is not retried; its entries
// stay pending, to be claimed, and the acker returns.
func TestSubscription_givesUpAcksWhenTheHandlersEnd(t *testing.T) {
	t.Parallel()
	f := newAckFixture(t, 3)
	for _, id := range f.ids() {
		f.c.QueueAck(id)
	}
	f.hook.failOnce(errors.New("broken pipe"), f.c.Cancel)

	f.c.Flush()
	if sent := f.hook.xacks(); len(sent) != 1 {
		t.Errorf("XACKs sent %v, want one, not retried", sent)
	}
	if p := f.pending(t); p != 3 {
		t.Errorf("%d entries pending, want the 3 given up", p)
	}
	if !strings.Contains(f.log.String(), "stay pending") {
		t.Errorf("the entries given up were not logged:\n%s", f.log)
	}
}

// TestSubscriber_closeSendsQueuedAcksBeforeLeaving: the XACKs still queued
// when the last message in hand is acked are sent before the consumer
// leaves its group, which it does with nothing pending. Here they fail
// until the stop has begun and for three more tries: longer than a read's
// block, so that a stop that did not wait for them would leave first.
func TestSubscriber_closeSendsQueuedAcksBeforeLeaving(t *testing.T) {
	t.Parallel()
	const n = 5
	f := newAckStream(t, n)
	var closing atomic.Bool
	retries := 3
	f.hook.fail = func() error { // only the acker calls it
		if closing.Load() {
			if retries == 0 {
				return nil
			}
			retries--
		}
		return errors.New("connection reset")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := f.sub.Subscribe(ctx, f.stream)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		select {
		case msg := <-msgs:
			msg.Ack()
		case <-time.After(30 * time.Second):
			t.Fatalf("%d messages handed out, want %d", i, n)
		}
	}
	cancel()
	closing.Store(true)
	if err := f.sub.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	groups, err := f.admin.XInfoGroups(context.Background(), f.stream).Result()
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups %v (%v)", groups, err)
	}
	if g := groups[0]; g.Pending != 0 || g.Consumers != 0 {
		t.Errorf("group after the stop: %d pending, %d consumers; want 0, 0\n%s", g.Pending, g.Consumers, f.log)
	}
	if sent := f.hook.xacks(); len(sent) < 4 {
		t.Errorf("XACKs sent %v; want three that failed after the stop began, then one that did not", sent)
	}
}
