// Package validate collects what is wrong with a request, field by field, so
// that a client learns every problem at once.
package validate

import (
	"fmt"
	"strings"
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
