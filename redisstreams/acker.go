package redisstreams

import (
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// queueAck queues the XACK of the entry id for the acker, without waiting.
func (c *subscription) queueAck(id string) {
	c.ackMu.Lock()
	c.ackIDs = append(c.ackIDs, id)
	c.ackMu.Unlock()
	select {
	case c.ackReady <- struct{}{}:
	default: // the acker has a signal already
	}
}

// takeAcks appends the IDs queued to ids and empties the queue.
func (c *subscription) takeAcks(ids []string) []string {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	ids = append(ids, c.ackIDs...)
	c.ackIDs = c.ackIDs[:0]
	return ids
}

// acker sends the XACKs that handle queues, until finished is closed (no
// message is in hand, so none will be queued) and the last are sent.
func (c *subscription) acker(finished <-chan struct{}) {
	var ids []string
	for {
		select {
		case <-c.ackReady:
			ids = c.ack(ids[:0])
		case <-finished:
			c.ack(ids[:0])
			return
		}
	}
}

// ack sends one XACK of every ID queued, and of those queued meanwhile
// while it retries, every 100 ms, until it succeeds or the handlers'
// context ends: the IDs it then gives up stay pending, to be claimed. It
// returns ids for reuse.
func (c *subscription) ack(ids []string) []string {
	ids = c.takeAcks(ids)
	for len(ids) > 0 {
		err := c.s.client.XAck(c.handlers, c.stream, c.s.group, ids...).Err()
		if err == nil {
			return ids
		}
		fields := c.logFields.Add(watermill.LogFields{"entries": len(ids)})
		if c.handlers.Err() != nil {
			c.s.logger.Error("Cannot ack stream entries; they stay pending", err, fields.Add(watermill.LogFields{"xids": slices.Clone(ids)}))
			return ids
		}
		c.s.logger.Error("Cannot ack stream entry, retrying", err, fields)
		select {
		case <-time.After(100 * time.Millisecond):
		case <-c.handlers.Done():
		}
		ids = c.takeAcks(ids)
	}
	return ids
}
