// Package tracing carries one order's trace across its hops: the W3C
// trace context (traceparent) in a message's metadata, through the outbox
// and the stream, and the spans of the outbox writes and the forwarder.
// The event contract (package events) knows nothing of it: the outbox
// write (postgres.Tx.Publish) puts the trace context into a message, and
// the forwarder and the worker read it back.
package tracing

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names the spans this package starts, and the forwarder's.
const TracerName = "github.com/orderstream/orderstream/tracing"

// traceContext is the W3C trace context propagator: what travels in the
// metadata is traceparent (and tracestate).
var traceContext = propagation.TraceContext{}

// Inject writes the span context of ctx into md; nothing when ctx carries
// no span.
func Inject(ctx context.Context, md message.Metadata) {
	traceContext.Inject(ctx, propagation.MapCarrier(md))
}

// Extract returns ctx with the remote span context md carries, if any.
func Extract(ctx context.Context, md message.Metadata) context.Context {
	return traceContext.Extract(ctx, propagation.MapCarrier(md))
}

// StartSpan starts a span with the tracer provider of the span ctx already
// carries: a request or message that is traced traces its outbox writes,
// and one that is not costs nothing.
func StartSpan(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	tracer := trace.SpanFromContext(ctx).TracerProvider().Tracer(TracerName)
	return tracer.Start(ctx, name, trace.WithSpanKind(kind))
}
