package activity_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/activity"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/redisstreams"
)

// run runs rec until the returned stop is called, which waits for it to
// end.
func run(t *testing.T, rec *activity.Recorder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("the recorder did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func latest(t *testing.T, rdb redis.UniversalClient, streams redisstreams.Config, n int64) []activity.Entry {
	t.Helper()
	entries, err := activity.Latest(context.Background(), rdb, streams, n)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func client(t *testing.T, streams redisstreams.Config) redis.UniversalClient {
	t.Helper()
	rdb := streams.NewClient()
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func eventually(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failed is a marked entry: an attempt that failed.
func failed(i int) activity.Entry {
	return activity.Entry{Handler: "test", MessageUUID: uuid.NewString(), Outcome: "failed", Attempt: 1,
		Error: fmt.Sprintf("failure %d", i)}
}

// ordinary is an entry the rate limit may drop.
func ordinary(i int) activity.Entry {
	return activity.Entry{Handler: "test", MessageUUID: uuid.NewString(), OrderID: fmt.Sprint(i), Outcome: "reserved", Attempt: 1}
}

// counted is the value of the counter of reason in dropped.
func counted(t *testing.T, dropped *prometheus.CounterVec, reason string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(dropped)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestRecorder(t *testing.T) {
	t.Parallel()

	t.Run("writes_entries_that_latest_reads_back_newest_first", func(t *testing.T) {
		t.Parallel()
		streams := testenv.Streams(t)
		rdb := client(t, streams)
		rec := activity.NewRecorder(streams, activity.RecorderConfig{})
		run(t, rec)
		at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
		want := []activity.Entry{
			{At: at, Handler: "inventory.reserve_stock", EventType: "OrderPlaced", MessageUUID: uuid.NewString(),
				OrderID: "o-1", Outcome: "reserved", DurationMS: 1.25, Attempt: 1},
			{At: at.Add(time.Second), Handler: "orders.settle", EventType: "StockReserved", MessageUUID: uuid.NewString(),
				OrderID: "o-2", Outcome: "failed", DurationMS: 3, Attempt: 1, Retried: true, Error: "boom"},
			{At: at.Add(2 * time.Second), Handler: "orders.settle", EventType: "StockReserved", MessageUUID: uuid.NewString(),
				OrderID: "o-3", Outcome: "failed", DurationMS: 100, Attempt: 2, Parked: true, Error: "lock timeout"},
			{At: at.Add(3 * time.Second), Handler: "orders.settle", EventType: "StockRejected", MessageUUID: uuid.NewString(),
				OrderID: "o-4", Outcome: "failed", DurationMS: 2, Attempt: 1, DeadLettered: true, Error: strings.Repeat("é", 300)},
		}
		for _, e := range want {
			rec.Record(e)
		}
		var got []activity.Entry
		eventually(t, func() bool { got = latest(t, rdb, streams, 10); return len(got) == len(want) }, "the entries to be written")
		for i, g := range got {
			w := want[len(want)-1-i] // newest first
			if g.ID == "" {
				t.Errorf("entry %d has no stream entry ID", i)
			}
			if !g.At.Equal(w.At) {
				t.Errorf("entry %d at %s, want %s", i, g.At, w.At)
			}
			if len(w.Error) > activity.MaxErrorLen {
				if len(g.Error) > activity.MaxErrorLen+len("…") || !strings.HasPrefix(w.Error, strings.TrimSuffix(g.Error, "…")) {
					t.Errorf("entry %d error of %d bytes, want the first %d bytes at most", i, len(g.Error), activity.MaxErrorLen)
				}
				w.Error = g.Error
			}
			g.ID, g.At, w.At = "", time.Time{}, time.Time{}
			if g != w {
				t.Errorf("entry %d = %+v, want %+v", i, g, w)
			}
		}
		if got := latest(t, rdb, streams, 2); len(got) != 2 || got[0].OrderID != "o-4" || got[1].OrderID != "o-3" {
			t.Errorf("the 2 newest = %+v, want o-4 and o-3", got)
		}
		if n, err := rdb.XLen(context.Background(), streams.Prefix+"activity").Result(); err != nil || n != 4 {
			t.Errorf("stream %sactivity holds %d entries (%v), want 4", streams.Prefix, n, err)
		}
	})

	t.Run("keeps_marked_entries_over_the_rate_and_counts_the_ordinary_it_drops", func(t *testing.T) {
		t.Parallel()
		streams := testenv.Streams(t)
		rdb := client(t, streams)
		const perSecond, total = 5, 200
		dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped"}, []string{"reason"})
		rec := activity.NewRecorder(streams, activity.RecorderConfig{PerSecond: perSecond, Buffer: 2 * total, Dropped: dropped})
		stop := run(t, rec)
		start := time.Now()
		for i := range total {
			rec.Record(ordinary(i))
			if i%20 == 0 {
				rec.Record(failed(i))
			}
		}
		elapsed := time.Since(start)
		rec.Record(failed(total)) // the last: it says how many were dropped before it
		stop()                    // writes what is left

		got := latest(t, rdb, streams, 10*total)
		var kept, marked, skipped uint64
		for _, e := range got {
			if e.Marked() {
				marked++
			} else {
				kept++
			}
			skipped += e.Skipped
		}
		if marked != total/20+1 {
			t.Errorf("%d marked entries written, want all %d", marked, total/20+1)
		}
		// A burst of perSecond, then perSecond a second.
		if most := perSecond * (1 + uint64(elapsed/time.Second) + 1); kept == 0 || kept > most {
			t.Errorf("%d ordinary entries of %d kept in %s, want 1 to %d", kept, total, elapsed, most)
		}
		if rec.Dropped() != total-kept || skipped != total-kept {
			t.Errorf("dropped %d, skipped %d in the entries, want %d each", rec.Dropped(), skipped, total-kept)
		}
		if n := counted(t, dropped, activity.DropRateLimited); uint64(n) != total-kept {
			t.Errorf("rate_limited counter = %v, want %d", n, total-kept)
		}
	})

	t.Run("trims_the_stream_to_about_max_len", func(t *testing.T) {
		t.Parallel()
		streams := testenv.Streams(t)
		rdb := client(t, streams)
		const maxLen, total = 100, 350
		rec := activity.NewRecorder(streams, activity.RecorderConfig{MaxLen: maxLen, Buffer: total})
		stop := run(t, rec)
		for i := range total {
			rec.Record(failed(i))
		}
		stop()
		n, err := rdb.XLen(context.Background(), streams.Name(activity.Stream)).Result()
		if err != nil {
			t.Fatal(err)
		}
		// MAXLEN ~ trims whole nodes of the stream only (100 entries each
		// by default).
		if n < maxLen || n >= total {
			t.Errorf("stream holds %d entries of %d written, want about %d", n, total, maxLen)
		}
		if got := latest(t, rdb, streams, 1); len(got) != 1 || got[0].Error != fmt.Sprintf("failure %d", total-1) {
			t.Errorf("newest = %+v, want the last written", got)
		}
	})

	t.Run("never_waits_for_a_redis_away_and_stops_in_time", func(t *testing.T) {
		t.Parallel()
		away := testenv.FreeAddr(t) // nothing listens there
		streams := testenv.StreamsOn(t, &redis.UniversalOptions{Addrs: []string{away}}, "test:away:")
		log := &testenv.Buffer{}
		logger, err := logging.New(log, "text", "info")
		if err != nil {
			t.Fatal(err)
		}
		rec := activity.NewRecorder(streams, activity.RecorderConfig{Logger: logger, Interval: 10 * time.Millisecond})
		stop := run(t, rec)

		const total = 20000
		recorded := make(chan struct{})
		go func() {
			defer close(recorded)
			for i := range total {
				if i%2 == 0 {
					rec.Record(failed(i))
				} else {
					rec.Record(ordinary(i))
				}
				if i%1000 == 0 {
					time.Sleep(20 * time.Millisecond) // let writes fail in between
				}
			}
		}()
		select {
		case <-recorded:
		case <-time.After(15 * time.Second):
			t.Fatal("recording waited for Redis")
		}
		stop()
		if n := rec.Dropped(); n != total {
			t.Errorf("%d entries dropped, want all %d", n, total)
		}
		if n := strings.Count(log.String(), "writing the consumers' activity failed"); n != 1 {
			t.Errorf("%d log lines about the failing writes, want 1 (at most one a minute):\n%s", n, log.String())
		}
	})
}
