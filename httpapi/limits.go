package httpapi

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// Limits are what one client may ask of the API.
type Limits struct {
	// Redis keeps the rate limits' state, so that every API process
	// counts a client's requests together; nil: no rate limits.
	Redis redis.UniversalClient
	// Prefix starts the limits' Redis keys (the streams' prefix), so
	// that deployments sharing a Redis count apart.
	Prefix string
	// PerSecond requests a second per client, with bursts of Burst; 0:
	// no rate limits, as benchmarks and load tests need.
	PerSecond, Burst int
	// Listings is how many listings of orders the process runs at once
	// (more wait); 0 is DefaultListings.
	Listings int
}

// DefaultListings is how many listings run at once by default: a listing
// holds a database connection for its two queries, and the placements and
// reads must keep most of the pool.
const DefaultListings = 8

// listingsPerClient is how many listings one client may run at once; a
// client's further listings are 429 rather than queued behind its own.
const listingsPerClient = 2

// redisWait bounds each of the limiter's calls to Redis: a Redis that is
// slow or away delays a request by this much at most before the request
// goes through unlimited.
const redisWait = 200 * time.Millisecond

// authFailures is the budget of failed authentications of one client
// address: ten, then one more every six seconds.
var authFailures = redis_rate.Limit{Rate: 10, Burst: 10, Period: time.Minute}

// limiter applies Limits.
type limiter struct {
	Limits
	rate   *redis_rate.Limiter // nil: no rate limits
	logger *slog.Logger

	listings chan struct{} // a slot per listing the process runs at once
	mu       sync.Mutex
	byClient map[string]int // listings running per client

	lastWarned atomic.Int64 // unix nanoseconds of the last warning that Redis failed

	// suspects are the client addresses this process saw a failed
	// token from within the failure budget's period, with when: only
	// their requests ask Redis for the budget before the token is read,
	// so that a client whose tokens verify pays no round trip for it.
	suspectsMu sync.Mutex
	suspects   map[string]time.Time
}

// maxSuspects bounds the suspects a process remembers; past it, every
// request asks for its budget, as if every address were one.
const maxSuspects = 1 << 16

func newLimiter(l Limits, logger *slog.Logger) *limiter {
	if l.Listings <= 0 {
		l.Listings = DefaultListings
	}
	lim := &limiter{Limits: l, logger: logger, listings: make(chan struct{}, l.Listings), byClient: map[string]int{},
		suspects: map[string]time.Time{}}
	if l.Redis != nil && l.PerSecond > 0 {
		lim.rate = redis_rate.NewLimiter(l.Redis)
		if lim.Burst < 1 {
			lim.Burst = 1
		}
	}
	return lim
}

// clientKey is whom a request counts against: its customer, else the
// administrator's token, else its client address (behind a trusted proxy,
// the address the proxy saw).
func clientKey(c echo.Context) string {
	if p, ok := principal(c); ok {
		return "customer:" + p.Subject
	}
	if c.Get(adminTokenKey) != nil {
		return "admin-token"
	}
	return "address:" + c.RealIP()
}

// rateLimit answers 429, with Retry-After, to a client over its rate.
// /healthz is exempt: a load balancer's checks are not a client's
// requests. When Redis cannot be asked, the request goes through: a
// limiter must not take the API down with Redis (placing orders needs
// only PostgreSQL); a warning says so, at most once a minute.
func (l *limiter) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if l.rate == nil || c.Path() == "/healthz" {
			return next(c)
		}
		limit := redis_rate.Limit{Rate: l.PerSecond, Burst: l.Burst, Period: time.Second}
		ctx, cancel := context.WithTimeout(c.Request().Context(), redisWait)
		res, err := l.rate.Allow(ctx, l.Prefix+clientKey(c), limit)
		cancel()
		if err != nil {
			l.warn(c.Request().Context(), err)
			return next(c)
		}
		if res.Allowed == 0 {
			return tooMany(c, res.RetryAfter, "too many requests from this client")
		}
		return next(c)
	}
}

// failures answers 429 to a client address that has used up its budget of
// failed authentications, before its token is looked at. Only an address
// this process saw fail lately is asked about: a guesser spread over N
// processes gets at most N guesses a period past the budget, one on each
// before it becomes a suspect there.
func (l *limiter) failures(c echo.Context) error {
	if l.rate == nil || !l.suspect(c.RealIP()) {
		return nil
	}
	// A cost of 0 reads the budget without spending it.
	ctx, cancel := context.WithTimeout(c.Request().Context(), redisWait)
	defer cancel()
	res, err := l.rate.AllowN(ctx, l.Prefix+"auth-failures:"+c.RealIP(), authFailures, 0)
	if err != nil {
		l.warn(c.Request().Context(), err)
		return nil
	}
	if res.Remaining < 1 {
		return tooMany(c, authFailures.Period/time.Duration(authFailures.Rate), "too many failed authentications from this address")
	}
	return nil
}

// failed spends one of the client address's failed authentications.
func (l *limiter) failed(c echo.Context) {
	if l.rate == nil {
		return
	}
	l.suspectsMu.Lock()
	if len(l.suspects) < maxSuspects {
		l.suspects[c.RealIP()] = time.Now()
	}
	l.suspectsMu.Unlock()
	ctx, cancel := context.WithTimeout(c.Request().Context(), redisWait)
	defer cancel()
	if _, err := l.rate.Allow(ctx, l.Prefix+"auth-failures:"+c.RealIP(), authFailures); err != nil {
		l.warn(c.Request().Context(), err)
	}
}

// suspect reports whether a failed token came from addr within the
// budget's period, or this process remembers too many addresses to tell.
func (l *limiter) suspect(addr string) bool {
	l.suspectsMu.Lock()
	defer l.suspectsMu.Unlock()
	if len(l.suspects) >= maxSuspects {
		for a, at := range l.suspects { // forget the old ones
			if time.Since(at) > authFailures.Period {
				delete(l.suspects, a)
			}
		}
		if len(l.suspects) >= maxSuspects {
			return true
		}
	}
	at, ok := l.suspects[addr]
	if ok && time.Since(at) > authFailures.Period {
		delete(l.suspects, addr)
		return false
	}
	return ok
}

func (l *limiter) warn(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	if last := l.lastWarned.Load(); now-last > int64(time.Minute) && l.lastWarned.CompareAndSwap(last, now) {
		l.logger.WarnContext(ctx, "rate limits not applied: Redis cannot be asked", "err", err)
	}
}

// listing runs a listing when the client has fewer than listingsPerClient
// running, once one of the process's slots is free.
func (l *limiter) listing(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := clientKey(c)
		l.mu.Lock()
		if l.byClient[key] >= listingsPerClient {
			l.mu.Unlock()
			return tooMany(c, time.Second, "at most %d listings at once per client", listingsPerClient)
		}
		l.byClient[key]++
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			if l.byClient[key]--; l.byClient[key] == 0 {
				delete(l.byClient, key)
			}
			l.mu.Unlock()
		}()
		select {
		case l.listings <- struct{}{}:
			defer func() { <-l.listings }()
		case <-c.Request().Context().Done():
			// The request's timeout, or its client gone.
			return newProblem(http.StatusServiceUnavailable, "too many listings running; try again")
		}
		return next(c)
	}
}

// tooMany is 429 with Retry-After in whole seconds, at least one.
func tooMany(c echo.Context, after time.Duration, format string, args ...any) error {
	c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(max(1, int(math.Ceil(after.Seconds())))))
	return newProblem(http.StatusTooManyRequests, format, args...)
}
