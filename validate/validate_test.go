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

func TestText(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		text string
		want bool
	}{
		{"c-1", true},
		{"Zoë — 北京", true},
		{"", true},
		{"a\x00b", false},            // NUL
		{"a\nb", false},              // C0: a forged log line
		{"a\x1b[31mb", false},        // C0: a terminal escape
		{"a\x7fb", false},            // DEL
		{"a\u0085b", false},          // C1
		{"evil\u202egnp.exe", false}, // right-to-left override
		{"a\u2066b\u2069", false},    // isolates
		{"a\u200fb", true},           // a mark, not an override
		{"\xff", false},              // not UTF-8
	} {
		if got := validate.Text(tt.text); got != tt.want {
			t.Errorf("Text(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}
