package outbox

import (
	"database/sql"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/postgres"
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
	f, err := newFinishingOutbox(db, cfg, wsql.NewDefaultBackoffManager(cfg.PollInterval, time.Second), logger)
	if err != nil {
		return nil, nil, err
	}
	stopAsked = func() bool {
		f.gate.mu.Lock()
		defer f.gate.mu.Unlock()
		return f.gate.stopped
	}
	return f, stopAsked, nil
}

// PollQuery is the forwarder's select of shard's rows (the poll), with its
// arguments, as its subscriber sends it with a stop of stopTimeout.
func PollQuery(shard int, stopTimeout time.Duration) (string, []any) {
	q := outboxSchema{wsql.DefaultPostgreSQLSchema{}, stopTimeout + pollIdleMargin}.
		SelectQuery(postgres.OutboxTopic(shard), forwarderGroup, skipLockedOffsets{})
	return q.Query, q.Args
}
