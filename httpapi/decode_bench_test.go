package httpapi

import (
	"testing"

	"github.com/orderstream/orderstream/orders"
)

// BenchmarkDecodeOrder is the CPU POST /orders spends on a typical body
// before it touches the database: UTF-8 check, strict JSON decoding and
// validation.
func BenchmarkDecodeOrder(b *testing.B) {
	body := []byte(`{"customer_id":"c-1042","items":[{"sku":"SKU-017","quantity":2},{"sku":"SKU-042","quantity":1}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var req orders.PlaceRequest
		if p := decodeBody(body, &req); p != nil {
			b.Fatalf("decode: %d %s", p.Status, p.Detail)
		}
		if err := req.Validate(); err != nil {
			b.Fatalf("validate: %v", err)
		}
	}
}
