package postgres

import "testing"

func TestWithBinaryParameters(t *testing.T) {
	for _, c := range []struct{ dsn, want string }{
		{"postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?binary_parameters=yes&sslmode=disable"},
		{"postgresql://u@h/db", "postgresql://u@h/db?binary_parameters=yes"},
		{"postgres://u@h/db?binary_parameters=no", "postgres://u@h/db?binary_parameters=no"},
		{"host=h dbname=db", "host=h dbname=db"},
	} {
		got, err := withBinaryParameters(c.dsn)
		if err != nil || got != c.want {
			t.Errorf("withBinaryParameters(%q) = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
}
