package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

var errNotAWriter = errors.New("the transaction is not the one the context carries (postgres.InTx)")

// Writer is what Publish needs of the transaction it writes in, as the
// context carries it (WithWriter): postgres.InTx and the inbox put there
// each transaction they begin, which holds the outbox writers' lock.
type Writer interface {
	Tx() *sql.Tx
	// AfterCommit arranges for fn to run once the transaction has
	// committed.
	AfterCommit(fn func())
}

type writerKey struct{}

// WithWriter returns ctx carrying w, the transaction Publish may write in.
func WithWriter(ctx context.Context, w Writer) context.Context {
	return context.WithValue(ctx, writerKey{}, w)
}

// WriterFrom returns the Writer ctx carries, if any.
func WriterFrom(ctx context.Context) (Writer, bool) {
	w, ok := ctx.Value(writerKey{}).(Writer)
	return w, ok
}

type commitHookKey struct{}

// OnCommit returns ctx whose Publish calls arrange for fn to run once their
// transaction has committed: the forwarders' wake-up
// (outbox.WithCommitNotifier).
func OnCommit(ctx context.Context, fn func()) context.Context {
	return context.WithValue(ctx, commitHookKey{}, fn)
}

// OutboxTopic is the watermill-sql topic every event is written to: the
// table watermill_outbox, read by the forwarder.
const OutboxTopic = "outbox"

// Publish writes e to the outbox inside tx, the transaction ctx carries
// (postgres.InTx, or the inbox of a message handler). The event becomes
// visible to the forwarder only if tx commits, and then it is certain to be
// forwarded: the business change and its announcement cannot disagree.
// When ctx carries a commit hook (OnCommit), it runs once tx commits.
//
// Any other transaction is refused: the forwarder waits only for the
// transactions that postgres began, which hold the outbox writers' lock
// (see the outbox package's writersHorizon), and would pass over the rows of
// another that commits late.
//
// A watermill-sql publisher bound to one transaction is cheap (no I/O), so
// each call makes its own; the forwarder publisher wraps the event in an
// envelope that names its destination stream.
func Publish(ctx context.Context, tx *sql.Tx, e Event) (err error) {
	w, ok := WriterFrom(ctx)
	if !ok || w.Tx() != tx {
		return fmt.Errorf("write %s to outbox: %w", e.EventType(), errNotAWriter)
	}
	ctx, span := startSpan(ctx, "outbox publish "+e.EventType(), trace.SpanKindProducer)
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	msg, err := NewMessage(ctx, e)
	if err != nil {
		return err
	}
	span.SetAttributes(attribute.String("messaging.message.id", msg.UUID), attribute.String("messaging.destination.name", e.Stream()))
	pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, nil)
	if err != nil {
		return fmt.Errorf("create outbox publisher: %w", err)
	}
	out := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: OutboxTopic})
	if err := out.Publish(e.Stream(), msg); err != nil {
		return fmt.Errorf("write %s to outbox: %w", e.EventType(), err)
	}
	if fn, ok := ctx.Value(commitHookKey{}).(func()); ok {
		w.AfterCommit(fn)
	}
	return nil
}
