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

// onServer names the server of a postgres:// or postgresql:// URL, and
// nothing for a URL without a host or a DSN in the key=value form.
func TestOnServer(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u:secret@db.example:5433/orderstream":  " on db.example:5433",
		"postgresql://u@db.example/orderstream":            " on db.example",
		"postgres:///orderstream?host=/var/run/postgresql": "",
		"mysql://db.example/orderstream":                   "",
		"host=db.example port=5433 dbname=orderstream":     "",
		"postgres://db.example:5433/%zz":                   "",
	} {
		if got := onServer(dsn); got != want {
			t.Errorf("onServer(%q) = %q, want %q", dsn, got, want)
		}
	}
}
