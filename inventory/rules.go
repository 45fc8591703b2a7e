package inventory

import (
	"fmt"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/validate"
)

// Decide says whether items can all be reserved from available (units per
// SKU; a SKU missing from it is unknown). It returns "" when they can, or
// the reason they cannot: an unknown SKU is reported before a short one.
func Decide(items []events.Item, available map[string]int) (reason string) {
	for _, it := range items {
		if _, ok := available[it.SKU]; !ok {
			return events.ReasonUnknownSKU
		}
	}
	for _, it := range items {
		if available[it.SKU] < it.Quantity {
			return events.ReasonInsufficientStock
		}
	}
	return ""
}

// checkItems rejects an event whose items could not come from a valid order.
func checkItems(items []events.Item) error {
	if len(items) == 0 {
		return fmt.Errorf("%w: order has no items", events.ErrMalformed)
	}
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		if it.Quantity < 1 || seen[it.SKU] || !validate.SKU(it.SKU) {
			return fmt.Errorf("%w: invalid item %+v", events.ErrMalformed, it)
		}
		seen[it.SKU] = true
	}
	return nil
}
