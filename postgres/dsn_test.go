package postgres

import "testing"

func TestWithParams(t *testing.T) {
	params := []param{{"binary_parameters", "yes"}, {"lock_timeout", "2000"}}
	for _, c := range []struct{ dsn, want string }{
		{"postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?binary_parameters=yes&lock_timeout=2000&sslmode=disable"},
		{"postgresql://u@h/db", "postgresql://u@h/db?binary_parameters=yes&lock_timeout=2000"},
		{"postgres://u@h/db?binary_parameters=no&lock_timeout=0", "postgres://u@h/db?binary_parameters=no&lock_timeout=0"},
		{"host=h dbname=db", "host=h dbname=db"},
	} {
		got, err := withParams(c.dsn, params)
		if err != nil || got != c.want {
			t.Errorf("withParams(%q) = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
}
