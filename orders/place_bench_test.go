package orders_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
)

// BenchmarkService_Place is one order of two items committed with its
// OrderPlaced event, as POST /orders does after decoding: one at a time
// (the latency of the transaction) and from many goroutines at once (what
// the pool and the database sustain together).
func BenchmarkService_Place(b *testing.B) {
	s := orders.NewService(testenv.DB(b))
	ctx := events.WithCorrelationID(context.Background(), "bench")
	req := orders.PlaceRequest{CustomerID: "c-1042", Items: []orders.Item{
		{SKU: "SKU-017", Quantity: 2}, {SKU: "SKU-042", Quantity: 1},
	}}
	// Keys must be new on every run, or Place would only replay.
	prefix := testenv.Unique("bench")
	var seq atomic.Int64
	key := func() string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

	b.Run("with_idempotency_key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.Place(ctx, req, key()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("without_key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.Place(ctx, req, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16) // 16 goroutines per P, as many as the bench's HTTP clients on two cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := s.Place(ctx, req, key()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
