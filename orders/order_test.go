package orders

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/validate"
)

func TestPlaceRequest_Validate(t *testing.T) {
	item := func(sku string, q int) Item { return Item{SKU: sku, Quantity: q} }
	many := func(n int) []Item {
		items := make([]Item, n)
		for i := range items {
			items[i] = item("SKU-"+strconv.Itoa(i), 1)
		}
		return items
	}
	tests := []struct {
		name   string
		req    PlaceRequest
		fields []string // the fields reported, in order; none means valid
	}{
		{"accepts_a_plain_order", PlaceRequest{"c-1", []Item{item("SKU-1", 2)}}, nil},
		{"accepts_limits", PlaceRequest{strings.Repeat("c", 64), append(many(99), item(strings.Repeat("S", 64), 10000))}, nil},
		{"accepts_multibyte_customer_id_of_64_characters", PlaceRequest{strings.Repeat("é", 64), []Item{item("A", 1)}}, nil},
		{"rejects_empty_customer_id", PlaceRequest{"", []Item{item("A", 1)}}, []string{"customer_id"}},
		{"rejects_nul_in_customer_id", PlaceRequest{"a\x00b", []Item{item("A", 1)}}, []string{"customer_id"}},
		{"rejects_invalid_utf8_customer_id", PlaceRequest{"a\xffb", []Item{item("A", 1)}}, []string{"customer_id"}},
		{"rejects_long_customer_id", PlaceRequest{strings.Repeat("c", 65), []Item{item("A", 1)}}, []string{"customer_id"}},
		{"rejects_no_items", PlaceRequest{"c", nil}, []string{"items"}},
		{"rejects_101_items", PlaceRequest{"c", many(101)}, []string{"items"}},
		{"rejects_zero_quantity", PlaceRequest{"c", []Item{item("A", 0)}}, []string{"items[0].quantity"}},
		{"rejects_negative_quantity", PlaceRequest{"c", []Item{item("A", -1)}}, []string{"items[0].quantity"}},
		{"rejects_quantity_over_10000", PlaceRequest{"c", []Item{item("A", 10001)}}, []string{"items[0].quantity"}},
		{"rejects_empty_sku", PlaceRequest{"c", []Item{item("", 1)}}, []string{"items[0].sku"}},
		{"rejects_long_sku", PlaceRequest{"c", []Item{item(strings.Repeat("S", 65), 1)}}, []string{"items[0].sku"}},
		{"rejects_sku_with_space_or_quote", PlaceRequest{"c", []Item{item("A B", 1), item("A'--", 1)}}, []string{"items[0].sku", "items[1].sku"}},
		{"rejects_duplicate_sku", PlaceRequest{"c", []Item{item("A", 1), item("B", 1), item("A", 2)}}, []string{"items[2].sku"}},
		{"reports_every_field", PlaceRequest{"", []Item{item("", 0)}}, []string{"customer_id", "items[0].sku", "items[0].quantity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var errs validate.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Validate() = %v, want validate.Errors", err)
			}
			var got []string
			for _, f := range errs {
				got = append(got, f.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("fields = %v, want %v", got, tt.fields)
			}
		})
	}
}
