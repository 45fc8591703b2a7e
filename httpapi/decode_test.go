package httpapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/validate"
)

// FuzzDecodeOrder feeds arbitrary bodies to the order decoder: each is
// either a request, which then validates or lists its bad fields, or a
// 400, 413 or 422 problem; nothing panics.
func FuzzDecodeOrder(f *testing.F) {
	for _, seed := range []string{
		`{"customer_id":"c-1","items":[{"sku":"SKU-1","quantity":2}]}`,
		`{"customer_id":"c","items":[{"sku":"A","quantity":1.5}]}`,
		`{"customer_id":"c","items":[{"sku":"A","quantity":"1"}],"x":1}`,
		`[[[[[]]]]]`, `null`, `{}`, `{"items":null}`, "{\"customer_id\":\"\xff\"}", `{} {}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req orders.PlaceRequest
		if p := decodeBody(body, &req); p != nil {
			switch p.Status {
			case 400, 413, 422:
			default:
				t.Fatalf("status %d for %q", p.Status, body)
			}
			if p.Status == 422 && len(p.Errors) == 0 {
				t.Fatalf("422 without field errors for %q", body)
			}
			return
		}
		err := req.Validate()
		var errs validate.Errors
		if err != nil && !errors.As(err, &errs) {
			t.Fatalf("Validate() = %v", err)
		}
		// What decoded encodes and decodes back to the same request.
		again, _ := json.Marshal(req)
		var req2 orders.PlaceRequest
		if p := decodeBody(again, &req2); p != nil || !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip of %q: %v, %+v != %+v", body, p, req, req2)
		}
	})
}
