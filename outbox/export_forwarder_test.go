package outbox

import (
	"database/sql"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/redisstreams"
)

// ForwarderOutbox returns the forwarder's outbox subscriber built as
// NewForwarder builds it (polling, without the listener), but without the
// router: a test takes its messages, acks them or holds them, and stops it
// at a moment of its choosing. stopAsked reports whether a stop has reached
// the subscription (the batch gate knows of it).
func ForwarderOutbox(db *sql.DB, cfg ForwarderConfig, logger watermill.LoggerAdapter) (sub message.Subscriber, stopAsked func() bool, err error) {
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = redisstreams.DefaultStopTimeout
	}
	gate := newBatchGate(wsql.NewDefaultBackoffManager(cfg.PollInterval, time.Second))
	outbox, err := wsql.NewSubscriber(db, wsql.SubscriberConfig{
		ConsumerGroup:  forwarderGroup,
		SchemaAdapter:  outboxSchema{wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: cfg.BatchSize}},
		OffsetsAdapter: wsql.DefaultPostgreSQLOffsetsAdapter{},
		BackoffManager: gate,
	}, logger)
	if err != nil {
		return nil, nil, err
	}
	stopAsked = func() bool {
		gate.mu.Lock()
		defer gate.mu.Unlock()
		return gate.stopped
	}
	return &finishingOutbox{sub: outbox, gate: gate, drain: redisstreams.DrainTimeout(cfg.StopTimeout), stop: cfg.StopTimeout, logger: logger}, stopAsked, nil
}
