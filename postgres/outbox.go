package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/tracing"
)

// errNotBegun is the error of publishing in a Tx that was not begun by
// InTx or the inbox (its zero value): it holds no writers' lock.
var errNotBegun = errors.New("transaction not begun by postgres.InTx or the inbox")

// Published returns the events written to the outbox in tx so far, for
// the handler test kit.
func (tx *Tx) Published() []events.Event { return tx.published }

type commitHookKey struct{}

// OnCommit returns ctx whose Publish calls arrange for fn to run once their
// transaction has committed, with the outbox shard they wrote: the
// forwarders' wake-up (outbox.WithCommitNotifier).
func OnCommit(ctx context.Context, fn func(shard int)) context.Context {
	return context.WithValue(ctx, commitHookKey{}, fn)
}

// MaxOutboxShards is how many outbox shards there can be: the tables the
// migrations create (watermill_outbox, watermill_outbox_1 …
// watermill_outbox_15). The forwarder reads them all, whatever the writers'
// count, so changing the count loses nothing.
const MaxOutboxShards = 16

// OutboxTopic is the watermill-sql topic of outbox shard k: "outbox" (the
// table watermill_outbox) for shard 0, "outbox_k" for the others.
func OutboxTopic(shard int) string {
	if shard == 0 {
		return "outbox"
	}
	return "outbox_" + strconv.Itoa(shard)
}

// ShardOf is the outbox shard, of n, of the events of key: a stable hash
// (FNV-1a), the same in every process and every version.
func ShardOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

type shardsKey struct{}

// WithOutboxShards returns ctx whose Publish calls spread the events over n
// outbox shards (1 to MaxOutboxShards; OUTBOX_SHARDS). Without it, every
// event is written to shard 0.
func WithOutboxShards(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, shardsKey{}, min(max(n, 1), MaxOutboxShards))
}

// outboxKey is what places e in the outbox: its key (the order id), or
// its UUID when it has none.
func outboxKey(e events.Event, msg *message.Message) string {
	if k, ok := e.(events.Keyed); ok {
		return k.Key()
	}
	return msg.UUID
}

// OutboxKeyMetadata is the metadata of an outbox row (not of its event)
// that holds the event's key, so that the events of one order can be
// found again (outbox.Resend).
const OutboxKeyMetadata = "key"

// keyed writes the outbox rows it publishes with their event's key.
type keyed struct {
	message.Publisher
	key string
}

func (p keyed) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		m.Metadata.Set(OutboxKeyMetadata, p.key)
	}
	return p.Publisher.Publish(topic, msgs...)
}

// Publish writes e to the outbox inside tx. The event becomes visible to
// the forwarder only if tx commits, and then it is certain to be forwarded:
// the business change and its announcement cannot disagree. When ctx
// carries a commit hook (OnCommit), it runs once tx commits.
//
// Only a Tx can publish, and only InTx and the inbox begin one: the
// forwarder waits only for the transactions that hold the outbox writers'
// lock (see the outbox package's writersHorizon), and would pass over the
// rows of another that commits late.
//
// A watermill-sql publisher bound to one transaction is cheap (no I/O), so
// each call makes its own; the forwarder publisher wraps the event in an
// envelope that names its destination stream.
func (tx *Tx) Publish(ctx context.Context, e events.Event) (err error) {
	if tx == nil || tx.tx == nil {
		return fmt.Errorf("write %s to outbox: %w", e.EventType(), errNotBegun)
	}
	ctx, span := tracing.StartSpan(ctx, "outbox publish "+e.EventType(), trace.SpanKindProducer)
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	msg, err := events.NewMessage(ctx, e)
	if err != nil {
		return err
	}
	tracing.Inject(ctx, msg.Metadata) // the forwarder's span is the child of this one
	span.SetAttributes(attribute.String("messaging.message.id", msg.UUID), attribute.String("messaging.destination.name", e.Stream()))
	pub, err := wsql.NewPublisher(tx.tx, wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, nil)
	if err != nil {
		return fmt.Errorf("create outbox publisher: %w", err)
	}
	n, _ := ctx.Value(shardsKey{}).(int)
	key := outboxKey(e, msg)
	shard := ShardOf(key, n)
	out := forwarder.NewPublisher(keyed{pub, key}, forwarder.PublisherConfig{ForwarderTopic: OutboxTopic(shard)})
	if err := out.Publish(e.Stream(), msg); err != nil {
		return fmt.Errorf("write %s to outbox: %w", e.EventType(), err)
	}
	tx.published = append(tx.published, e)
	if fn, ok := ctx.Value(commitHookKey{}).(func(int)); ok {
		tx.AfterCommit(func() { fn(shard) })
	}
	return nil
}

// Rewrote arranges, as Publish does, for ctx's commit hook (OnCommit) to
// run with shard once tx commits: for outbox rows written other than by
// Publish (outbox.Resend writes retained rows again).
func (tx *Tx) Rewrote(ctx context.Context, shard int) {
	if fn, ok := ctx.Value(commitHookKey{}).(func(int)); ok {
		tx.AfterCommit(func() { fn(shard) })
	}
}
