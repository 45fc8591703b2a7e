package inventory

import (
	"errors"
	"testing"

	"github.com/orderstream/orderstream/events"
)

func TestDecide(t *testing.T) {
	items := func(pairs ...any) []events.Item {
		var out []events.Item
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, events.Item{SKU: pairs[i].(string), Quantity: pairs[i+1].(int)})
		}
		return out
	}
	tests := []struct {
		name      string
		items     []events.Item
		available map[string]int
		want      string
	}{
		{"reserves_when_every_item_fits", items("A", 2, "B", 1), map[string]int{"A": 2, "B": 5}, ""},
		{"rejects_when_one_item_is_short", items("A", 2, "B", 6), map[string]int{"A": 2, "B": 5}, events.ReasonInsufficientStock},
		{"rejects_when_stock_is_zero", items("A", 1), map[string]int{"A": 0}, events.ReasonInsufficientStock},
		{"rejects_unknown_sku", items("A", 1, "X", 1), map[string]int{"A": 2}, events.ReasonUnknownSKU},
		{"reports_unknown_before_short", items("A", 9, "X", 1), map[string]int{"A": 2}, events.ReasonUnknownSKU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.items, tt.available); got != tt.want {
				t.Errorf("Decide() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckItems(t *testing.T) {
	tests := []struct {
		name  string
		items []events.Item
		ok    bool
	}{
		{"accepts_valid_items", []events.Item{{SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 3}}, true},
		{"rejects_no_items", nil, false},
		{"rejects_zero_quantity", []events.Item{{SKU: "A", Quantity: 0}}, false},
		{"rejects_duplicate_sku", []events.Item{{SKU: "A", Quantity: 1}, {SKU: "A", Quantity: 1}}, false},
		{"rejects_invalid_sku", []events.Item{{SKU: "A B", Quantity: 1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkItems(tt.items)
			if tt.ok && err != nil {
				t.Fatalf("checkItems() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("checkItems() = %v, want ErrMalformed", err)
			}
		})
	}
}
