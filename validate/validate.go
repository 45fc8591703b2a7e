// Package validate collects what is wrong with a request, field by field, so
// that a client learns every problem at once, and holds the checks that more
// than one package's rules share: a SKU, a UUID, text PostgreSQL can store.
package validate

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// FieldError says what is wrong with one field. Field is a JSON path such
// as "items[2].quantity".
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Errors is a request's list of field errors; the HTTP edge answers it with
// 422 and the list.
type Errors []FieldError

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Add records that field is wrong.
func (e *Errors) Add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

// Err returns e as an error, or nil when nothing is wrong.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// Text reports whether s is plain text to store and show: valid UTF-8,
// without control characters (C0, DEL and C1; NUL a text column refuses,
// the others forge lines in logs and terminals) and without the
// bidirectional overrides and isolates that make text read otherwise than
// it is stored (U+202A to U+202E, U+2066 to U+2069).
func Text(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
	})
}

// TextRule is Text's rule, as an error message says it.
const TextRule = "must be UTF-8 text without control characters or bidirectional overrides"

// UUID returns s in its canonical form (lower case) when s is a UUID
// written as the API writes them: 36 characters, hex digits in groups of
// 8-4-4-4-12. uuid.Parse also accepts braces, a urn:uuid: prefix and no
// dashes, some of which PostgreSQL refuses: an id in another form names
// nothing.
func UUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// MaxSKULen is the longest a SKU can be.
const MaxSKULen = 64

var skuPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// SKU reports whether sku is 1 to MaxSKULen characters of [A-Za-z0-9._-]:
// what an order may name and the inventory may stock.
func SKU(sku string) bool {
	return len(sku) <= MaxSKULen && skuPattern.MatchString(sku)
}
