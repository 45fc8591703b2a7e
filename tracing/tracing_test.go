package tracing_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderstream/orderstream/tracing"
)

// TestInject_extract: the span context written into a message's metadata
// is the one read back from it; a context without a span writes nothing.
func TestInject_extract(t *testing.T) {
	t.Parallel()
	md := message.Metadata{}
	tracing.Inject(context.Background(), md)
	if len(md) != 0 {
		t.Errorf("no span, yet metadata %v", md)
	}

	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "place order")
	defer span.End()
	ctx, child := tracing.StartSpan(ctx, "outbox publish", trace.SpanKindProducer)
	defer child.End()
	if !child.SpanContext().IsValid() || child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatalf("StartSpan did not continue the trace of ctx's span")
	}
	tracing.Inject(ctx, md)
	if md.Get("traceparent") == "" {
		t.Fatalf("no traceparent in %v", md)
	}
	got := trace.SpanContextFromContext(tracing.Extract(context.Background(), md))
	if got.TraceID() != child.SpanContext().TraceID() || got.SpanID() != child.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want the remote span %v", got, child.SpanContext())
	}
}
