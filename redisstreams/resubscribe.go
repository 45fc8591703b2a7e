package redisstreams

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// patientSubscriber subscribes again, backing off from 100 ms to 5 s, while
// Redis cannot be reached. watermill-redisstream creates the consumer group
// when it subscribes, and the router gives up on a handler whose Subscribe
// fails: a worker starting while its link to Redis is down, slow or reset
// would exit.
type patientSubscriber struct {
	message.Subscriber
	logger watermill.LoggerAdapter
}

func (p patientSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	backoff := 100 * time.Millisecond
	for {
		ch, err := p.Subscriber.Subscribe(ctx, topic)
		if err == nil || !redisUnreachable(err) || ctx.Err() != nil {
			return ch, err
		}
		p.logger.Error("Cannot subscribe yet, Redis unreachable; retrying", err, watermill.LogFields{"topic": topic, "retry_in": backoff})
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// redisUnreachable reports whether err says Redis could not be reached or
// went away, as opposed to a refused command.
func redisUnreachable(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.HasPrefix(err.Error(), "LOADING")
}
