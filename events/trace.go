package events

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names the spans this package starts.
const TracerName = "github.com/orderstream/orderstream/events"

// The W3C trace context (traceparent) travels in message metadata, through
// the outbox and the stream, so that one order makes one trace.
var traceContext = propagation.TraceContext{}

// InjectTrace writes the span context of ctx into md.
func InjectTrace(ctx context.Context, md message.Metadata) {
	traceContext.Inject(ctx, propagation.MapCarrier(md))
}

// ExtractTrace returns ctx with the remote span context md carries, if any.
func ExtractTrace(ctx context.Context, md message.Metadata) context.Context {
	return traceContext.Extract(ctx, propagation.MapCarrier(md))
}

// StartSpan starts a span with the tracer provider of the span ctx already
// carries: a request or message that is traced traces its outbox writes,
// and one that is not costs nothing.
func StartSpan(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	tracer := trace.SpanFromContext(ctx).TracerProvider().Tracer(TracerName)
	return tracer.Start(ctx, name, trace.WithSpanKind(kind))
}
