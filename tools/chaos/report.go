package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/redis/go-redis/v9"
)

// report is what a run saw, printed as the verdict.
type report struct {
	seed                         uint64
	orders, accepted             int
	confirmed, rejected, pending int
	cancelled, overtaken         int    // overtaken: cancels handled before their placement
	faults                       string // the count of each kind of fault, as faults.String
	scenarios                    []scenarioResult
	checks                       int // violations of the checks over every order
	retries, replays             int64
	starts, selfExits            int
	streams                      streamStats
	settle                       settleResult  // of the crash scenario, after its last fault
	lock                         lockResult    // of the lock scenario's row lock
	lost                         lostResult    // of the lost scenario
	failover                     time.Duration // of the failover scenario: from the kill until its orders settled
	soak                         soakResult
	proxiesReplaced              int // network proxies replaced because they wedged
	settleWait, duration         time.Duration
	pooler                       string   // what the processes reach PostgreSQL through: "pgbouncer", or "" for nothing
	exitNotes                    []string // why processes exited by themselves
	violations                   []string
}

// scenarioResult is how one scenario went.
type scenarioResult struct {
	name       string
	took       time.Duration
	violations int
}

func (r *report) passed() bool { return len(r.violations) == 0 }

func verdict(violations int) string {
	if violations > 0 {
		return "FAIL"
	}
	return "PASS"
}

// print writes the summary line, then each violation on a line of its own.
func (r *report) print(w io.Writer) {
	var scen []string
	for _, s := range r.scenarios {
		scen = append(scen, fmt.Sprintf("%s:%s(%s)", s.name, verdict(s.violations), s.took.Round(time.Second)))
	}
	scen = append(scen, "checks:"+verdict(r.checks))
	fmt.Fprintf(w, "chaos: %s orders=%d confirmed=%d rejected=%d cancelled=%d cancels_first=%d pending=%d %s scenarios=%s "+
		"retries=%d replays=%d process_starts=%d self_exits=%d redeliveries=%d deadletters=%d "+
		"proxies_replaced=%d settled_after_faults=%s settle_bound=%s lock_others_p99=%s lock_held_settled_after_release=%s "+
		"lost_settled_after=%s failover_settled_after=%s settle_wait=%s duration=%s %sseed=%d\n",
		verdict(len(r.violations)), r.orders, r.confirmed, r.rejected, r.cancelled, r.overtaken, r.pending, r.faults, strings.Join(scen, ","),
		r.retries, r.replays, r.starts, r.selfExits, r.streams.redeliveries(r.accepted), r.streams.deadLetters,
		r.proxiesReplaced, settled(r.settle.took), settled(r.settle.bound), r.lock.othersP99(), settled(r.lock.heldAfterRelease),
		settled(r.lost.settledAfter), settled(r.failover),
		r.settleWait.Round(100*time.Millisecond), r.duration.Round(time.Second), r.poolerField()+r.soak.fields(), r.seed)
	for _, v := range r.violations {
		fmt.Fprintln(w, "  violation:", v)
	}
	for _, n := range r.exitNotes {
		fmt.Fprintln(w, "  note:", n)
	}
	if r.streams.err != nil {
		fmt.Fprintln(w, "  note: streams:", r.streams.err)
	}
	for _, d := range r.streams.deadLetterReasons {
		fmt.Fprintln(w, "  dead letter:", d)
	}
}

// poolerField is "pooler=pgbouncer " when the processes went through
// PgBouncer, and nothing when they reached PostgreSQL directly.
func (r *report) poolerField() string {
	if r.pooler == "" {
		return ""
	}
	return "pooler=" + r.pooler + " "
}

// settled formats how long the orders took to settle, or the bound: "-"
// when they did not, or the scenario did not run.
func settled(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(100 * time.Millisecond).String()
}

// streamStats is what the Redis streams hold after the run: with at-least-
// once forwarding an event can be on its stream more than once, which the
// inbox must absorb.
type streamStats struct {
	placed, reservations int64
	deadLetters          int64
	deadLetterReasons    []string
	err                  error
}

// redeliveries is how many stream entries beyond one per event there are
// (each order has an OrderPlaced and a StockReserved or StockRejected).
func (s streamStats) redeliveries(orders int) int64 {
	if s.err != nil {
		return -1
	}
	return s.placed + s.reservations - 2*int64(orders)
}

// add adds what the streams of another Redis hold.
func (s *streamStats) add(o streamStats) {
	s.placed += o.placed
	s.reservations += o.reservations
	s.deadLetters += o.deadLetters
	s.deadLetterReasons = append(s.deadLetterReasons, o.deadLetterReasons...)
	if s.err == nil {
		s.err = o.err
	}
}

func readStreams(ctx context.Context, rd *redisServer) streamStats {
	rdb := rd.client()
	defer rdb.Close()
	return readStreamsFrom(ctx, rdb)
}

// readStreamsFrom is what the streams of the Redis of rdb hold.
func readStreamsFrom(ctx context.Context, rdb *redis.Client) streamStats {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var s streamStats
	for name, n := range map[string]*int64{"orders.placed": &s.placed, "inventory.reservations": &s.reservations, "deadletter": &s.deadLetters} {
		v, err := rdb.XLen(ctx, name).Result()
		if err != nil {
			s.err = fmt.Errorf("read length of %s: %w", name, err)
			return s
		}
		*n = v
	}
	if s.deadLetters == 0 {
		return s
	}
	entries, err := rdb.XRangeN(ctx, "deadletter", "-", "+", maxExamples).Result()
	if err != nil {
		s.err = fmt.Errorf("read dead letters: %w", err)
		return s
	}
	for _, e := range entries {
		s.deadLetterReasons = append(s.deadLetterReasons, describeDeadLetter(e.ID, e.Values))
	}
	return s
}

// describeDeadLetter names a dead letter's stream, handler and reason from
// the Watermill poison metadata the entry carries, and its payload.
func describeDeadLetter(id string, values map[string]any) string {
	msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(values)
	if err != nil {
		return fmt.Sprintf("%s (undecodable: %v)", id, err)
	}
	payload := string(msg.Payload)
	if len(payload) > 200 {
		payload = payload[:200] + "..."
	}
	return fmt.Sprintf("%s uuid=%s topic=%s handler=%s reason=%q payload=%s", id, msg.UUID,
		msg.Metadata.Get(middleware.PoisonedTopicKey), msg.Metadata.Get(middleware.PoisonedHandlerKey),
		msg.Metadata.Get(middleware.ReasonForPoisonedKey), payload)
}
