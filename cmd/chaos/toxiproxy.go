//go:build chaosnet

package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orderstream/orderstream/internal/netfault"
)

// The network faults, each on one process's link to one server, in place
// for a while and then taken away.
const (
	faultLatency   = "latency"   // 50-300 ms, jitter up to half of it, each way, for 5-15 s
	faultReset     = "reset"     // every connection reset (TCP RST) once data flows, for 1-3 s
	faultBlackhole = "blackhole" // nothing gets through one way or both, for 10-30 s
	faultBandwidth = "bandwidth" // 20-200 KB/s each way, for 5-15 s
)

var faultKinds = []string{faultLatency, faultReset, faultBlackhole, faultBandwidth}

// network puts a Toxiproxy proxy between each application process and each
// server, run in the harness's own process, so that a fault hits one
// process's link to PostgreSQL or Redis and nothing else.
type network struct {
	tp     *netfault.Server
	pg     *pgServer
	redis  *redisServer
	every  time.Duration
	logger *slog.Logger

	mu     sync.Mutex
	links  []*link
	counts map[string]int
	healed time.Time // when the last fault was taken away
}

// link is one process's proxy to one server.
type link struct {
	process, server string
	proxy           *netfault.Proxy
	busy            bool // a fault is in place
}

func newNetwork(logger *slog.Logger, pg *pgServer, rd *redisServer, every time.Duration) *network {
	return &network{tp: netfault.NewServer(), pg: pg, redis: rd, every: every, logger: logger, counts: map[string]int{}}
}

func (n *network) close() {
	if err := n.tp.Close(); err != nil {
		n.logger.Warn("chaos: stop proxies", "err", err)
	}
}

// route gives each process proxies of its own to PostgreSQL and Redis, and
// points its DATABASE_URL and REDIS_URL at them (the later value of a
// variable wins).
func (n *network) route(procs []*proc) error {
	for _, p := range procs {
		dbURL, err := n.proxy(p.name, "postgres", n.pg.url(dbName))
		if err != nil {
			return err
		}
		redisURL, err := n.proxy(p.name, "redis", n.redis.url())
		if err != nil {
			return err
		}
		p.env = append(p.env, "DATABASE_URL="+dbURL, "REDIS_URL="+redisURL)
	}
	return nil
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
	n.links = append(n.links, &link{process: process, server: server, proxy: p})
	return p.Rewrite(rawURL)
}

// faultUntil puts a fault on a random link that has none every n.every
// (±1/3), taking the kinds in turns of one each in random order, until ctx
// is done; then it takes every fault away at once.
func (n *network) faultUntil(ctx context.Context, rng *rand.Rand) {
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
			turn = append(turn, faultKinds...)
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
		n.mu.Lock()
		n.counts[kind]++
		n.mu.Unlock()
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

// checkSettled adds a violation when the orders left pending later than
// settleBound after the faults ended. settled is when none was pending.
func (n *network) checkSettled(settled time.Time, f *findings) {
	bound, why := settleBound(os.Getenv)
	n.mu.Lock()
	took := settled.Sub(n.healed)
	n.mu.Unlock()
	if took > bound {
		f.add("settle bound", "orders left pending %s after the faults ended; the bound is %s (%s)",
			took.Round(100*time.Millisecond), bound, why)
	}
}

// summary is the network part of the verdict line.
func (n *network) summary(settled time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	bound, _ := settleBound(os.Getenv)
	var b strings.Builder
	for _, k := range faultKinds {
		fmt.Fprintf(&b, " net_%s=%d", k, n.counts[k])
	}
	wedged := 0
	for _, l := range n.links {
		wedged += l.proxy.Rebuilt()
	}
	fmt.Fprintf(&b, " proxies_replaced=%d", wedged)
	fmt.Fprintf(&b, " settled_after_faults=%s settle_bound=%s", settled.Sub(n.healed).Round(100*time.Millisecond), bound)
	return b.String()
}

// settleBound is how long after the last network fault, kill and restart
// every order must have left pending, from the processes' settings (the
// harness passes HANDLER_TIMEOUT, HANDLER_MAX_RETRIES and STREAM_CLAIM_IDLE
// through; the rest it leaves at their defaults, as config.go sets them).
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
//     whose handler is still retrying ends within worstHandling, less than
//     STREAM_CLAIM_IDLE by the configuration's own rule; one that was
//     nacked is delivered again after HANDLER_TIMEOUT/10;
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
	retries, err := strconv.Atoi(getenv("HANDLER_MAX_RETRIES"))
	if err != nil || retries < 0 {
		retries = 3
	}
	worst := time.Duration(retries+1)*handler + time.Duration(retries)*6*time.Second
	first := max(claim+claim/4, worst+handler/10)
	const forward, slack = 2 * time.Second, 10 * time.Second
	bound := first + handler + forward + handler + slack
	return bound, fmt.Sprintf("claim %s + 1/4 + handler %s + forward %s + handler %s + %s slack", claim, handler, forward, handler, slack)
}
