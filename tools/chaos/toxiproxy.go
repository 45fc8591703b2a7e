package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/orderstream/orderstream/internal/netfault"
)

// network puts a Toxiproxy proxy between each application process and each
// server, run in the harness's own process, so that a fault hits one
// process's link to PostgreSQL or Redis and nothing else. With -pgbouncer
// the proxies sit between each process and PgBouncer (DATABASE_URL; link
// "pgbouncer") and between each process and PostgreSQL itself
// (DATABASE_SESSION_URL; link "postgres"), not between PgBouncer and
// PostgreSQL: a fault still hits one process, and PgBouncer sees that
// client stall, crawl or vanish in the middle of a transaction whose
// server session it holds. The proxies stay for the whole run; faults are
// put on them only while the crash scenario's load runs (faultUntil is one
// of its disrupters).
type network struct {
	tp     *netfault.Server
	at     servers // the servers' own URLs (PgBouncer's on databaseURL with -pgbouncer)
	every  time.Duration
	faults *faults
	logger *slog.Logger

	mu     sync.Mutex
	links  []*link
	healed time.Time // when the last fault was taken away
}

// link is one process's proxy to one server.
type link struct {
	process, server string
	proxy           *netfault.Proxy
	busy            bool // a fault is in place
}

func newNetwork(logger *slog.Logger, at servers, every time.Duration, f *faults) *network {
	// Some of toxiproxy's toxics log through zerolog's global logger, at
	// trace level, a line per interrupted pipe.
	zerolog.SetGlobalLevel(zerolog.WarnLevel)
	return &network{tp: netfault.NewServer(), at: at, every: every, faults: f, logger: logger}
}

func (n *network) close() {
	if err := n.tp.Close(); err != nil {
		n.logger.Warn("chaos: stop proxies", "err", err)
	}
}

// route gives process proxies of its own to PostgreSQL (and PgBouncer,
// with -pgbouncer) and Redis, and returns the URLs that reach the servers
// through them (startCluster's route).
func (n *network) route(process string) (servers, error) {
	var at servers
	var err error
	if n.at.sessionURL == "" {
		at.databaseURL, err = n.proxy(process, "postgres", n.at.databaseURL)
	} else {
		at.databaseURL, err = n.proxy(process, "pgbouncer", n.at.databaseURL)
		if err == nil {
			at.sessionURL, err = n.proxy(process, "postgres", n.at.sessionURL)
		}
	}
	if err != nil {
		return servers{}, err
	}
	if at.redisURL, err = n.proxy(process, "redis", n.at.redisURL); err != nil {
		return servers{}, err
	}
	return at, nil
}

// proxy starts a proxy to the server of rawURL and returns rawURL through it.
func (n *network) proxy(process, server, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse %s url: %w", server, err)
	}
	p, err := n.tp.Proxy(process+"-"+server, u.Host)
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	n.links = append(n.links, &link{process: process, server: server, proxy: p})
	n.mu.Unlock()
	return p.Rewrite(rawURL)
}

// faultUntil puts a fault on a random link that has none every n.every
// (±1/3), taking the kinds in turns of one each in random order, until ctx
// is done; then it takes every fault away at once.
func (n *network) faultUntil(ctx context.Context, rng *rand.Rand) {
	n.mu.Lock()
	n.healed = time.Time{}
	n.mu.Unlock()
	defer n.heal()
	if n.every <= 0 || len(n.links) == 0 {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	var turn []string
	for {
		third := int64(n.every / 3)
		gap := n.every - time.Duration(third) + time.Duration(rng.Int64N(2*third+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		if len(turn) == 0 {
			turn = append(turn, netFaultKinds...)
			rng.Shuffle(len(turn), func(i, j int) { turn[i], turn[j] = turn[j], turn[i] })
		}
		l := n.idleLink(rng)
		if l == nil {
			continue
		}
		kind := turn[0]
		turn = turn[1:]
		f, desc, hold, err := n.inject(l, kind, rng)
		if err != nil {
			n.release(l)
			n.logger.Error("chaos: network fault", "kind", kind, "process", l.process, "server", l.server, "err", err)
			continue
		}
		n.faults.add(kind)
		n.logger.Info("chaos: network fault", "kind", kind, "process", l.process, "server", l.server,
			"fault", desc, "for", hold.Round(100*time.Millisecond))
		wg.Go(func() {
			select {
			case <-ctx.Done():
			case <-time.After(hold):
			}
			if err := f.Remove(); err != nil {
				n.logger.Warn("chaos: remove network fault", "kind", kind, "process", l.process, "err", err)
			}
			n.release(l)
		})
	}
}

// inject puts a fault of kind on l and says how long to keep it.
func (n *network) inject(l *link, kind string, rng *rand.Rand) (*netfault.Fault, string, time.Duration, error) {
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	switch kind {
	case faultLatency:
		lat := between(50*time.Millisecond, 300*time.Millisecond)
		jit := time.Duration(rng.Int64N(int64(lat/2) + 1))
		f, err := l.proxy.Latency(lat, jit)
		return f, fmt.Sprintf("%s±%s", lat.Round(time.Millisecond), jit.Round(time.Millisecond)), between(5*time.Second, 15*time.Second), err
	case faultReset:
		after := between(0, 500*time.Millisecond)
		f, err := l.proxy.Reset(after)
		return f, fmt.Sprintf("reset_peer after %s", after.Round(time.Millisecond)), between(time.Second, 3*time.Second), err
	case faultBlackhole:
		dirs := [][]netfault.Direction{{netfault.Upstream}, {netfault.Downstream}, netfault.Both}[rng.IntN(3)]
		f, err := l.proxy.Blackhole(dirs...)
		return f, fmt.Sprintf("timeout %v", dirs), between(10*time.Second, 30*time.Second), err
	default:
		rate := 20 + rng.IntN(181)
		f, err := l.proxy.Bandwidth(rate)
		return f, fmt.Sprintf("%d KB/s", rate), between(5*time.Second, 15*time.Second), err
	}
}

func (n *network) idleLink(rng *rand.Rand) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	var idle []*link
	for _, l := range n.links {
		if !l.busy {
			idle = append(idle, l)
		}
	}
	if len(idle) == 0 {
		return nil
	}
	l := idle[rng.IntN(len(idle))]
	l.busy = true
	return l
}

func (n *network) release(l *link) {
	n.mu.Lock()
	l.busy = false
	n.mu.Unlock()
}

// heal takes away whatever faults are left and notes when.
func (n *network) heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.links {
		if err := l.proxy.Clear(); err != nil {
			n.logger.Error("chaos: clear network faults", "process", l.process, "server", l.server, "err", err)
		}
		l.busy = false
	}
	n.healed = time.Now()
}

// replaced is how many proxies netfault replaced because taking a fault
// away wedged them (see internal/netfault).
func (n *network) replaced() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	wedged := 0
	for _, l := range n.links {
		wedged += l.proxy.Rebuilt()
	}
	return wedged
}

// settleBound is how long after the last network fault, kill and restart
// every order must have left pending, from the processes' settings (the
// harness passes HANDLER_TIMEOUT, HANDLER_MAX_RETRIES, STREAM_CLAIM_IDLE and
// PARK_BACKOFF_MAX through; the rest it leaves at their defaults, as
// config.go sets them).
//
// Once the links are clean and nothing is killed any more:
//   - an event in the outbox is read by a forwarder within its fallback
//     poll (OUTBOX_POLL_INTERVAL, 1 s), or 1 s after a poll that failed
//     (watermill-sql's backoff), and published at once; the outbox
//     listener's reconnect (pq.Listener, at most 5 s apart) only costs the
//     wake-up, never the poll;
//   - an entry on a stream is read within the subscriber's 100 ms block;
//   - an entry delivered to a consumer that was killed, or whose link was
//     cut while it held the entry, is claimed by another once it has been
//     idle STREAM_CLAIM_IDLE, by the claim loop that runs every
//     STREAM_CLAIM_IDLE/4: within 5/4 × STREAM_CLAIM_IDLE of the end; one
//     whose handler is still retrying ends within the worst handling time
//     (config.go's worstHandlingTime), less than STREAM_CLAIM_IDLE by the
//     configuration's own rule; one that was nacked is delivered again
//     after HANDLER_TIMEOUT/10;
//   - a message whose attempts all failed for a passing reason (its
//     database link dark, say) was parked: it is put back on its stream
//     once its backoff is over, at most PARK_BACKOFF_MAX + 20 % jitter
//     after it was parked, noticed within the republisher's 5 s poll (a
//     lease taken by a republisher that was killed runs out within 30 s,
//     less than that);
//   - handling it takes one attempt (HANDLER_TIMEOUT at most) now that the
//     database answers, and its outcome event then crosses the second hop
//     without any of this waiting: forwarding (2 s) and one more attempt;
//   - and a process killed last restarts after 0.5 s and needs a few
//     seconds to connect, migrate and subscribe: 10 s of slack.
func settleBound(getenv func(string) string) (time.Duration, string) {
	dur := func(name string, def time.Duration) time.Duration {
		if d, err := time.ParseDuration(getenv(name)); err == nil && d > 0 {
			return d
		}
		return def
	}
	handler := dur("HANDLER_TIMEOUT", 5*time.Second)
	claim := dur("STREAM_CLAIM_IDLE", time.Minute)
	parkMax := dur("PARK_BACKOFF_MAX", time.Minute)
	retries, err := strconv.Atoi(getenv("HANDLER_MAX_RETRIES"))
	if err != nil || retries < 0 {
		retries = 3
	}
	worst := time.Duration(retries+1)*handler + time.Duration(retries)*6*time.Second + handler
	const republishPoll = 5 * time.Second
	first := max(claim+claim/4, worst+handler/10, parkMax+parkMax/5+republishPoll)
	const forward, slack = 2 * time.Second, 10 * time.Second
	bound := first + handler + forward + handler + slack
	return bound, fmt.Sprintf("max(claim %s + 1/4, park %s + 1/5 + poll %s) + handler %s + forward %s + handler %s + %s slack",
		claim, parkMax, republishPoll, handler, forward, handler, slack)
}
