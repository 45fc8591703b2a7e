package activity

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/orderstream/orderstream/redisstreams"
)

// RecorderConfig tunes a Recorder; what it leaves zero takes the default.
type RecorderConfig struct {
	// PerSecond is how many ordinary entries (not Marked) a second the
	// recorder keeps, in bursts of as many at most; it drops the others
	// (default 20). Marked entries are always kept.
	PerSecond int
	// Buffer is how many entries wait for their write at most; the
	// recorder drops what comes beyond it (default 256).
	Buffer int
	// MaxLen is about how many entries the stream keeps (XADD MAXLEN ~;
	// default 500).
	MaxLen int64
	// Interval is how often the entries waiting are written, in one
	// pipeline (default 250 ms).
	Interval time.Duration
	// Timeout bounds a write, the last one at a stop included (default 1 s).
	Timeout time.Duration
	Logger  *slog.Logger // nil: no log
	// Dropped, when not nil, counts the entries left out of the feed by
	// reason (DropRateLimited, DropBufferFull, DropWriteFailed).
	Dropped *prometheus.CounterVec
}

// The reasons an entry is left out of the feed.
const (
	DropRateLimited = "rate_limited"
	DropBufferFull  = "buffer_full"
	DropWriteFailed = "write_failed"
)

// logEvery is how often at most a recorder logs its failing writes.
const logEvery = time.Minute

func (cfg RecorderConfig) withDefaults() RecorderConfig {
	if cfg.PerSecond <= 0 {
		cfg.PerSecond = 20
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = 500
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Recorder records entries to the feed off the handlers' path: Record
// only hands an entry over, never waiting and never failing, and Run
// writes what was handed over in batches. What it cannot keep (over the
// rate, beyond the buffer, Redis away) it drops and counts; the next entry
// it writes says how many (Entry.Skipped). A nil Recorder records nothing.
type Recorder struct {
	cfg     RecorderConfig
	redis   *redis.UniversalOptions
	stream  string
	limit   *rate.Limiter
	entries chan Entry
	skipped atomic.Uint64 // dropped since the last entry handed over
	dropped atomic.Uint64 // dropped in all

	// Run's own.
	loggedAt time.Time
	unlogged int
}

// NewRecorder returns a recorder of the feed of streams (its Redis and
// stream prefix). It writes only while Run runs.
func NewRecorder(streams redisstreams.Config, cfg RecorderConfig) *Recorder {
	cfg = cfg.withDefaults()
	if cfg.Dropped != nil {
		for _, reason := range []string{DropRateLimited, DropBufferFull, DropWriteFailed} {
			cfg.Dropped.WithLabelValues(reason) // shown from the start, at 0
		}
	}
	return &Recorder{
		cfg:     cfg,
		redis:   streams.Redis,
		stream:  streams.Name(Stream),
		limit:   rate.NewLimiter(rate.Limit(cfg.PerSecond), cfg.PerSecond),
		entries: make(chan Entry, cfg.Buffer),
	}
}

// Record hands e over to be written, unless it is an ordinary entry over
// the rate or the buffer is full: then it drops it. It returns at once.
func (r *Recorder) Record(e Entry) {
	if r == nil {
		return
	}
	if !e.Marked() && !r.limit.Allow() {
		r.drop(DropRateLimited, 1)
		return
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.Error = cut(e.Error, MaxErrorLen)
	e.Skipped = r.skipped.Swap(0)
	select {
	case r.entries <- e:
	default:
		r.skipped.Add(e.Skipped)
		r.drop(DropBufferFull, 1)
	}
}

// Dropped is how many entries the recorder has left out of the feed.
func (r *Recorder) Dropped() uint64 {
	if r == nil {
		return 0
	}
	return r.dropped.Load()
}

func (r *Recorder) drop(reason string, n int) {
	r.skipped.Add(uint64(n))
	r.dropped.Add(uint64(n))
	if r.cfg.Dropped != nil {
		r.cfg.Dropped.WithLabelValues(reason).Add(float64(n))
	}
}

// Run writes the entries handed over every Interval until ctx is done,
// then writes those left, within Timeout. Run it once, and end it after
// the handlers that record have stopped, so that their last entries are
// written.
func (r *Recorder) Run(ctx context.Context) {
	if r == nil {
		return
	}
	opts := *r.redis // shared; the client may fill in defaults
	// A write gives up at its Timeout, whatever state Redis is in; one
	// connection, dialled once, so that a Redis away costs one failed
	// dial (and one log line of go-redis's) and fails the writes after it
	// at once, until go-redis finds it back.
	opts.ContextTimeoutEnabled = true
	opts.PoolSize = 1
	opts.DialerRetries = 1
	rdb := redis.NewUniversalClient(&opts)
	defer rdb.Close()
	// The write in hand at a stop finishes, and the last one follows it.
	writeCtx := context.WithoutCancel(ctx)
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.write(writeCtx, rdb, r.drain())
			return
		case <-tick.C:
			r.write(writeCtx, rdb, r.drain())
		}
	}
}

// drain takes the entries waiting, as many as the buffer holds at most.
func (r *Recorder) drain() []Entry {
	var batch []Entry
	for len(batch) < cap(r.entries) {
		select {
		case e := <-r.entries:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// write adds batch to the stream in one pipeline, trimming it to about
// MaxLen, and drops what Redis did not take.
func (r *Recorder) write(ctx context.Context, rdb redis.UniversalClient, batch []Entry) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	pipe := rdb.Pipeline()
	for _, e := range batch {
		b, _ := json.Marshal(e) // an Entry always encodes
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: r.stream, MaxLen: r.cfg.MaxLen, Approx: true, Values: []any{field, b}})
	}
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return
	}
	failed := len(batch)
	if len(cmds) == len(batch) {
		failed = 0
		for _, c := range cmds {
			if c.Err() != nil {
				failed++
			}
		}
	}
	r.drop(DropWriteFailed, failed)
	r.unlogged += failed
	if time.Since(r.loggedAt) >= logEvery {
		r.cfg.Logger.WarnContext(ctx, "writing the consumers' activity failed; entries dropped",
			"stream", r.stream, "dropped", r.unlogged, "err", err)
		r.loggedAt, r.unlogged = time.Now(), 0
	}
}

// cut cuts s after n bytes at most, on a character's boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
