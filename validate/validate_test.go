package validate_test

import (
	"strings"
	"testing"

	"github.com/orderstream/orderstream/validate"
)

func TestSKU(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		sku  string
		want bool
	}{
		{"SKU-1", true},
		{"a.b_c-9", true},
		{strings.Repeat("A", validate.MaxSKULen), true},
		{"", false},
		{strings.Repeat("A", validate.MaxSKULen+1), false},
		{"SKU 1", false},
		{"SKU/1", false},
		{"SKÜ", false},
		{"SKU\x00", false},
	} {
		if got := validate.SKU(tt.sku); got != tt.want {
			t.Errorf("SKU(%q) = %v, want %v", tt.sku, got, tt.want)
		}
	}
}
