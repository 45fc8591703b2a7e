package inventory_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
)

// BenchmarkService_OnOrderPlaced reserves the two items of an order and
// writes StockReserved to the outbox in one transaction, as the inventory
// handler does for each OrderPlaced (the inbox row aside): one at a time,
// and from as many goroutines as a worker runs consumers by default.
func BenchmarkService_OnOrderPlaced(b *testing.B) {
	ctx := context.Background()
	db := testenv.DB(b)
	s := inventory.NewService(db)
	// Many SKUs with plenty of units: orders rarely wait on each other's
	// row locks, and none is rejected.
	skus := make([]string, 100)
	for i := range skus {
		skus[i] = testenv.Unique("bench")
		if _, err := s.Set(ctx, skus[i], 1_000_000_000); err != nil {
			b.Fatal(err)
		}
	}
	order := func(i int) events.OrderPlaced {
		return events.OrderPlaced{OrderID: uuid.NewString(), CustomerID: "c-1042", Items: []events.Item{
			{SKU: skus[i%len(skus)], Quantity: 2}, {SKU: skus[(i+1)%len(skus)], Quantity: 1},
		}}
	}

	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := handle(ctx, db, s.OnOrderPlaced, order(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4) // 8 goroutines on two cores: WORKER_CONCURRENCY's default
		b.RunParallel(func(pb *testing.PB) {
			i := int(uuid.New().ID())
			for pb.Next() {
				i++
				if err := handle(ctx, db, s.OnOrderPlaced, order(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
