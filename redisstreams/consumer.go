package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// groupSubscriber reads streams as one consumer of a consumer group, with up
// to slots entries in hand at once, and stops gracefully.
//
// It replaces watermill-redisstream's subscriber, whose stop cannot be made
// graceful from outside: it reads the next entries while one is in the
// handler (each read entry is in the consumer's pending list at once), it
// cancels the contexts of the messages in hand when it closes, and it stops
// waiting for their acks. Whatever it held then stays pending under a
// consumer that no longer exists until another claims it, STREAM_CLAIM_IDLE
// later, and every handler transaction in flight rolls back.
//
// This one reads only as many entries as it has free slots, so every entry it
// read is in a handler. Close (or the end of the subscription's context)
// stops the reads; the messages in hand are handled to completion and acked,
// nacked ones delivered again, with contexts that the stop does not cancel.
// Only once drain has passed are their contexts cancelled and what is left
// given up (pending, to be claimed). Then, once the acks queued are sent, if
// nothing is pending under its name, the consumer leaves the group, so that
// names do not pile up; the consumers a killed process left are removed by
// the others once stale.
//
// An entry's slot is free as soon as Watermill acks its message, before
// Redis has the XACK: each subscription has one acker that sends, in one
// XACK, every entry acked since its previous XACK began. At saturation a
// read so waits for a handler, never for an XACK, and at load several
// entries share one command. An entry acked in Watermill whose XACK was not
// sent yet when the process died is delivered again, which the inbox makes
// a duplicate, as with an XACK that was under way.
type groupSubscriber struct {
	client       redis.UniversalClient
	group        string
	name         string
	slots        int
	claimIdle    time.Duration
	nackResend   time.Duration
	drain        time.Duration
	unmarshaller redisstream.Unmarshaller
	logger       watermill.LoggerAdapter

	stopping  chan struct{}
	stopOnce  sync.Once
	mu        sync.Mutex
	closed    bool
	reading   sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// readBlock is how long one read waits for entries: how long a stop may
// wait for a read already under way.
const readBlock = 250 * time.Millisecond

func (s *groupSubscriber) Subscribe(ctx context.Context, stream string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("subscribe: subscriber closed")
	}
	// "0": a group created now reads the stream from its start, so that
	// events published before the first worker ever ran are handled.
	if err := s.client.XGroupCreateMkStream(ctx, stream, s.group, "0").Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil, fmt.Errorf("create consumer group %s of %s: %w", s.group, stream, err)
	}
	c := s.subscription(ctx, stream)
	s.reading.Add(1)
	go func() {
		defer s.reading.Done()
		c.run(ctx)
	}()
	return c.out, nil
}

// subscription is a subscription of s to stream, not yet running (run).
// The messages' contexts keep ctx's values but not its end: a stop lets
// the messages in hand finish. Only the drain deadline cancels them.
func (s *groupSubscriber) subscription(ctx context.Context, stream string) *subscription {
	handlers, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &subscription{
		s:        s,
		stream:   stream,
		out:      make(chan *message.Message),
		slots:    make(chan struct{}, s.slots),
		handlers: handlers,
		cancel:   cancel,
		ackReady: make(chan struct{}, 1),
		// At once: take over what consumers that went away left pending.
		claimDue:    true,
		claimCursor: "0-0",
		logFields: watermill.LogFields{
			"stream": stream, "consumer_group": s.group, "consumer": s.name,
		},
	}
}

// Close stops reading and returns once the messages in hand are handled (or
// drain has passed) and the consumer has left its group.
func (s *groupSubscriber) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stopOnce.Do(func() { close(s.stopping) })
		s.reading.Wait()
		s.closeErr = s.client.Close()
	})
	return s.closeErr
}

type subscription struct {
	s         *groupSubscriber
	stream    string
	out       chan *message.Message
	slots     chan struct{} // one token per entry in hand
	handlers  context.Context
	cancel    context.CancelFunc
	inHand    sync.WaitGroup
	logFields watermill.LogFields

	// The IDs of the entries acked in Watermill, not yet by XACK, and a
	// signal to the acker that there are some.
	ackMu    sync.Mutex
	ackIDs   []string
	ackReady chan struct{}

	claimDue    bool
	claimCursor string
	nextClaim   time.Time
}

func (c *subscription) run(ctx context.Context) {
	defer close(c.out)
	defer c.cancel()
	finished := make(chan struct{}) // closed once no message is in hand
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		c.acker(finished)
	}()
	c.read(ctx.Done(), c.s.stopping)

	// Stopped: no more reads. Let what is in hand finish, within drain.
	go func() { c.inHand.Wait(); close(finished) }()
	timer := time.NewTimer(c.s.drain)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		c.s.logger.Error("Stopping with messages still in hand", errors.New("drain timeout"), c.logFields)
		c.cancel()
		<-finished
	}
	// The acks queued are sent (or given up with the handlers' context)
	// before the consumer leaves: it cannot leave with entries pending.
	<-acked
	c.leaveGroup()
}

// read hands entries to handlers, never more than there are free slots,
// until the subscription's context ends or the subscriber closes. Both are
// checked where they are, not through a channel a goroutine closes after
// them: a handler that acks right after the stop frees a slot, and the
// read that slot allows must see the stop.
func (c *subscription) read(done, closing <-chan struct{}) {
	stopped := func() bool {
		select {
		case <-done:
			return true
		case <-closing:
			return true
		default:
			return false
		}
	}
	for !stopped() {
		select {
		case c.slots <- struct{}{}:
		case <-done:
			return
		case <-closing:
			return
		}
		n := 1
	more:
		for n < cap(c.slots) {
			select {
			case c.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		if stopped() {
			c.release(n)
			return
		}
		entries, err := c.next(int64(n))
		c.release(n - len(entries))
		// Entries read are in this consumer's pending list: each is handled,
		// even if the stop came meanwhile.
		for _, xm := range entries {
			c.inHand.Add(1)
			go c.handle(xm)
		}
		if err != nil {
			c.s.logger.Error("Cannot read stream", err, c.logFields)
			select {
			case <-time.After(500 * time.Millisecond):
			case <-done:
				return
			case <-closing:
				return
			}
		}
	}
}

func (c *subscription) release(n int) {
	for range n {
		<-c.slots
	}
}

// next returns up to n entries: first those idle for claimIdle under other
// consumers (claimed for this one), then new ones.
func (c *subscription) next(n int64) ([]redis.XMessage, error) {
	ctx := c.handlers
	if !c.claimDue && time.Now().After(c.nextClaim) {
		c.claimDue, c.claimCursor = true, "0-0"
	}
	if c.claimDue {
		msgs, cursor, err := c.s.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: c.stream, Group: c.s.group, Consumer: c.s.name,
			MinIdle: c.s.claimIdle, Start: c.claimCursor, Count: n,
		}).Result()
		if err != nil || cursor == "0-0" {
			c.claimDue, c.nextClaim = false, time.Now().Add(c.s.claimIdle/4)
			c.sweepConsumers(ctx)
		}
		c.claimCursor = cursor
		if err != nil {
			return nil, fmt.Errorf("claim idle entries: %w", err)
		}
		if len(msgs) > 0 {
			return msgs, nil
		}
	}
	xss, err := c.s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.s.group, Consumer: c.s.name, Streams: []string{c.stream, ">"},
		Count: n, Block: readBlock,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read group: %w", err)
	}
	var msgs []redis.XMessage
	for _, xs := range xss {
		msgs = append(msgs, xs.Messages...)
	}
	return msgs, nil
}

// handle hands one entry to the router until it is acked, then queues its
// XACK for the acker and frees its slot at once: the next read does not wait
// for the XACK. A nacked message is delivered again from here, its entry
// never acked.
func (c *subscription) handle(xm redis.XMessage) {
	defer c.inHand.Done()
	defer c.release(1)
	fields := c.logFields.Add(watermill.LogFields{"xid": xm.ID})
	msg, err := c.s.unmarshaller.Unmarshal(xm.Values)
	if err != nil {
		c.s.logger.Error("Cannot unmarshal stream entry; it stays pending", err, fields)
		return
	}
	for {
		ctx, cancel := context.WithCancel(c.handlers)
		msg.SetContext(ctx)
		select {
		case c.out <- msg:
		case <-c.handlers.Done():
			cancel()
			return
		}
		select {
		case <-msg.Acked():
			cancel()
			c.queueAck(xm.ID)
			return
		case <-msg.Nacked():
			cancel()
		case <-c.handlers.Done():
			cancel()
			c.s.logger.Info("Message given up while in hand; it stays pending", fields)
			return
		}
		msg = msg.Copy()
		select {
		case <-time.After(max(c.s.nackResend, 0)):
		case <-c.handlers.Done():
			return
		}
	}
}

// leaveGroupScript deletes a consumer from its group only if nothing is
// pending under it, in one step: XGROUP DELCONSUMER drops a consumer's
// pending entries from the group for good (no one could claim them).
var leaveGroupScript = redis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return -1
end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])`)

// leaveGroup removes the stopped consumer from its group, unless entries
// are still pending under it (then the consumers' sweep removes it once
// they have been claimed).
func (c *subscription) leaveGroup() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.handlers), 5*time.Second)
	defer cancel()
	n, err := leaveGroupScript.Run(ctx, c.s.client, []string{c.stream}, c.s.group, c.s.name).Int()
	switch {
	case err != nil:
		c.s.logger.Error("Cannot leave the consumer group", err, c.logFields)
	case n < 0:
		c.s.logger.Error("Stopped with entries pending; they will be claimed", errors.New("pending entries"), c.logFields)
	}
}

// staleConsumer is how long a consumer must have been idle, with nothing
// pending, before the others remove it from the group (as
// watermill-redisstream's ConsumerTimeout): the names of killed processes.
// Removing one still alive would lose nothing (its next read adds it
// again), but Redis 7.0's idle time is not a sure sign of life.
const staleConsumer = 10 * time.Minute

// sweepConsumers removes from the group the consumers that have been idle
// longer than staleConsumer (and claimIdle) with nothing pending.
func (c *subscription) sweepConsumers(ctx context.Context) {
	consumers, err := c.s.client.XInfoConsumers(ctx, c.stream, c.s.group).Result()
	if err != nil {
		return
	}
	for _, xc := range consumers {
		if xc.Name == c.s.name || xc.Pending > 0 || xc.Idle < max(staleConsumer, c.s.claimIdle) {
			continue
		}
		if err := leaveGroupScript.Run(ctx, c.s.client, []string{c.stream}, c.s.group, xc.Name).Err(); err != nil {
			c.s.logger.Error("Cannot remove an idle consumer", err, c.logFields.Add(watermill.LogFields{"idle_consumer": xc.Name}))
		}
	}
}
