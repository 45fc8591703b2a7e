package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderstream/orderstream/postgres"
)

// notifyChannel is where a CommitNotifier notifies the forwarders.
const notifyChannel = "watermill_outbox"

// CommitNotifier wakes the forwarders, of this process and of others, once
// transactions that wrote events have committed: Publish arranges a call to
// Committed after its transaction commits, when the context carries a
// notifier (WithCommitNotifier).
//
// It notifies from a statement of its own rather than inside those
// transactions (a trigger): a NOTIFY makes its transaction's commit take a
// cluster-wide lock, so the commits of all notifying transactions, each
// with its WAL flush, would happen one at a time. Its own commit does not
// wait for the disk (synchronous_commit off): a notification lost in a
// crash costs a fallback poll, no more. Commits that come while it
// notifies, or within notifySpacing after, share one notification.
//
// Each notification names the outbox shards committed to since the last
// (its payload), so that only their loops poll. A process that forwards
// too (`orderstream all`) wakes its own forwarder directly (WakesLocally),
// at no cost, and notifies the other processes' forwarders only every
// localSpacing: theirs is the turn only while its own forwarder holds the
// shard's offsets row, so a notification per commit would mostly wake
// forwarders that skip it. Its notifications name it (origin), and its own
// forwarder's listener ignores them: they announce commits it was woken
// for already, and a wake-up for rows already forwarded costs an empty
// poll and the rechecks after it.
type CommitNotifier struct {
	db      *sql.DB
	origin  string // names this notifier in its payloads
	pending chan struct{}
	shards  atomic.Uint32 // the shards committed to since the last notification, a bit each
	logger  watermill.LoggerAdapter
	local   atomic.Pointer[Forwarder] // this process's forwarder, if any
	sent    prometheus.Counter        // notifications sent, if counted
}

const (
	// notifySpacing is the least time between two notifications of one
	// process. A busy forwarder polls at least every pollSpacing on its own, so
	// more would wake nothing; after a quiet spell the first commit is
	// notified at once.
	notifySpacing = 5 * time.Millisecond
	// localSpacing is notifySpacing for a process whose own forwarder is
	// woken directly.
	localSpacing = 50 * time.Millisecond
)

// notifyQuery notifies the forwarders with the payload $1 (see
// notification).
const notifyQuery = `SELECT set_config('synchronous_commit', 'off', true), pg_notify('` + notifyChannel + `', $1)`

// NewCommitNotifier returns a notifier that notifies through db; it does so
// while Run runs. With reg, it counts the notifications it sends
// (orderstream_outbox_notifications_total).
func NewCommitNotifier(db *sql.DB, logger watermill.LoggerAdapter, reg prometheus.Registerer) (*CommitNotifier, error) {
	n := &CommitNotifier{db: db, origin: watermill.NewShortUUID(), pending: make(chan struct{}, 1), logger: logger}
	if reg != nil {
		n.sent = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "orderstream", Name: "outbox_notifications_total",
			Help: "NOTIFY statements sent to wake the outbox forwarders after commits that wrote events.",
		})
		if err := reg.Register(n.sent); err != nil {
			return nil, fmt.Errorf("register notification metrics: %w", err)
		}
	}
	return n, nil
}

// WakesLocally makes Committed wake f, this process's forwarder, directly,
// and f's listener ignore n's notifications.
func (n *CommitNotifier) WakesLocally(f *Forwarder) {
	f.ownNotifications.Store(&n.origin)
	n.local.Store(f)
}

// Committed says that events were committed to outbox shard; it never
// blocks.
func (n *CommitNotifier) Committed(shard int) {
	if f := n.local.Load(); f != nil {
		f.Wake(shard)
	}
	n.shards.Or(1 << (uint(shard) % postgres.MaxOutboxShards))
	select {
	case n.pending <- struct{}{}:
	default:
	}
}

// Run notifies for what was committed until ctx is done.
func (n *CommitNotifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.pending:
		}
		if _, err := n.db.ExecContext(ctx, notifyQuery, notification(n.origin, n.shards.Swap(0))); err != nil && ctx.Err() == nil {
			// The forwarders' fallback poll moves the events regardless,
			// later. (Watermill's Info is Debug here: an error shows.)
			n.logger.Error("Cannot notify the forwarders", err, nil)
		} else if n.sent != nil {
			n.sent.Inc()
		}
		spacing := notifySpacing
		if n.local.Load() != nil {
			spacing = localSpacing
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(spacing):
		}
	}
}

// notification is the payload of origin's notification of the shards of
// bits: "origin/" and their numbers, separated by commas.
func notification(origin string, bits uint32) string {
	var b strings.Builder
	b.WriteString(origin + "/")
	for shard := range postgres.MaxOutboxShards {
		if bits&(1<<shard) != 0 {
			if b.Len() > len(origin)+1 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(shard))
		}
	}
	return b.String()
}

// wakeFor wakes f's loops of the shards payload names; every loop when it
// names none (the payload of a notifier that does not name shards), and
// none when f's own notifier sent it.
func wakeFor(f *Forwarder, payload string) {
	origin, shards, named := strings.Cut(payload, "/")
	if !named {
		shards = payload
	} else if own := f.ownNotifications.Load(); own != nil && *own == origin {
		return
	}
	if shards == "" {
		f.WakeAll()
		return
	}
	for _, s := range strings.Split(shards, ",") {
		shard, err := strconv.Atoi(s)
		if err != nil {
			f.WakeAll()
			return
		}
		f.Wake(shard)
	}
}

// WithCommitNotifier returns a context whose postgres.Tx.Publish calls wake the
// forwarders through n once their transactions commit.
func WithCommitNotifier(ctx context.Context, n *CommitNotifier) context.Context {
	return postgres.OnCommit(ctx, n.Committed)
}

// outboxWaker is the BackoffManager of one shard's outbox subscriber.
// watermill-sql only polls; polling often for low latency costs a
// transaction per poll while idle, for every shard. Instead, after a poll
// that found nothing, the waker waits to be woken: by the notification that
// events were committed to its shard, or by the forwarder's idle check
// (watchIdle), which finds the rows of a notification that was lost while
// the listener reconnected, once every fallback interval for all shards at
// once. A poll that found rows is followed by the next after pollSpacing, or at
// the next wake-up if that comes sooner.
type outboxWaker struct {
	wake     <-chan struct{}
	done     <-chan struct{}
	fallback time.Duration
	spacing  time.Duration // pollSpacing
	errors   wsql.BackoffManager
	// After a wake-up, a poll may find nothing: the committed rows stay
	// hidden while an older transaction that may write the outbox still
	// runs (see writersHorizon), or another forwarder holds the shard. If
	// the shard holds rows past the group's position (beyond; a check
	// without the horizon's read of pg_locks), look again, a recheck at a
	// time, until rows show up or the rechecks that the schedule fits in a
	// fallback interval are spent (recheckSteps); past them, watchIdle
	// finds rows still hidden. If it holds none, the wake-up was for rows
	// a poll had already taken, and nothing is to be rechecked. A recheck
	// comes once a commit to any shard is announced after the last poll
	// began (commits): the older transaction may be the one that
	// committed, and its commit woke the loop of its own shard only. Else
	// it comes after the schedule's wait, which grows from firstRecheck to
	// maxRecheck: an end that notifies nobody (a rollback, a commit
	// without events) is found that way.
	beyond    func() bool
	commits   *signal
	seen      <-chan struct{} // closed once a commit is announced after the last poll began
	woken     bool            // the last poll followed a wake-up
	rechecks  int             // rechecks left
	recheckIn time.Duration   // the schedule's wait before the next
}

const (
	// pollSpacing is the most time from a poll that found rows to the
	// next, unless a wake-up comes first (space). Each poll is a
	// transaction; a poll as soon as the last batch is out, with nothing
	// committed meanwhile, would find the rows that commit after it one at
	// a time. A backlog hardly notices (a batch of 1000 takes far longer to
	// forward).
	pollSpacing  = 5 * time.Millisecond
	firstRecheck = 2 * time.Millisecond
	maxRecheck   = 100 * time.Millisecond
)

// recheckSteps is how many rechecks the schedule, from firstRecheck
// doubling up to maxRecheck, fits in fallback: the most a wake-up for rows
// that a poll already took can cost.
func recheckSteps(fallback time.Duration) int {
	n := 0
	for d, total := firstRecheck, time.Duration(0); total < fallback; d = min(2*d, maxRecheck) {
		total += d
		n++
	}
	return n
}

func (w *outboxWaker) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	defer func() { w.seen = w.commits.next() }() // before the next poll
	if err != nil {
		// A second forwarder waits on the offsets row's lock while the
		// first works, then fails to serialize: it is the standby, and
		// retrying at once would only spin.
		if strings.Contains(err.Error(), "could not serialize") {
			return w.fallback
		}
		return w.errors.HandleError(logger, noMsg, err)
	}
	if !noMsg {
		w.rechecks = 0
		w.woken = w.space()
		return 0
	}
	if w.woken && w.beyond() {
		w.rechecks = recheckSteps(w.fallback)
	}
	w.woken = false
	if w.rechecks > 0 {
		w.rechecks--
		wait := time.NewTimer(w.recheckIn)
		defer wait.Stop()
		w.recheckIn = min(2*w.recheckIn, maxRecheck)
		select {
		case <-w.seen:
		case <-w.wake:
		case <-wait.C:
		case <-w.done:
		}
		return 0
	}
	select {
	case <-w.wake:
		w.woken, w.recheckIn = true, firstRecheck
	case <-w.done:
	}
	return 0
}

// space waits, after a poll that found rows, for w.spacing or until the
// loop is woken, whichever comes first, and reports whether it was woken.
// Under a steady flow the spacing lets a batch gather what commits
// meanwhile; but the commit that wakes the loop is one the next poll is
// for, and waiting out the spacing would only delay it: an order's second
// event, committed a few milliseconds after its first was forwarded,
// would wait for the rest of the first's spacing.
func (w *outboxWaker) space() bool {
	wait := time.NewTimer(w.spacing)
	defer wait.Stop()
	select {
	case <-w.wake:
		w.recheckIn = firstRecheck
		return true
	case <-wait.C:
	case <-w.done:
	}
	return false
}

// signal tells those who wait that something happened: next returns a
// channel that the next fire closes.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// fire closes the channel next returned, if any: with no one waiting it
// costs a lock.
func (s *signal) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// listenOutbox listens for the CommitNotifiers' notifications on a
// connection of its own until ctx is done, and wakes f's loops of the
// shards each names, and all of them whenever the connection was
// re-established (a notification may have been missed meanwhile).
func listenOutbox(ctx context.Context, dsn string, f *Forwarder, logger watermill.LoggerAdapter) {
	l := pq.NewListener(dsn, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			logger.Info("Outbox listener connection event", watermill.LogFields{"event": ev, "err": err.Error()})
		}
		if ev == pq.ListenerEventReconnected {
			f.WakeAll()
		}
	})
	go func() {
		<-ctx.Done()
		l.Close() // also ends a Listen still waiting for a connection
	}()
	go func() {
		// Listen waits until the server acknowledges, reconnecting as
		// needed; until then the fallback poll carries on alone.
		if err := l.Listen(notifyChannel); err != nil {
			if ctx.Err() == nil {
				logger.Error("Cannot listen for outbox notifications", err, nil)
			}
			return
		}
		f.WakeAll()
		for {
			select {
			case <-ctx.Done():
				return
			case n := <-l.Notify:
				if n == nil { // the connection was lost; reconnected wakes all
					continue
				}
				wakeFor(f, n.Extra)
			}
		}
	}()
}
