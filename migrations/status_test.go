package migrations_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/migrations"
)

// TestReadState_changesNothing: on a database without the schema, ReadState
// lists every migration as pending and Check says the schema is missing,
// without creating goose's version table; once applied, every migration is
// applied and Check is satisfied.
func TestReadState_changesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := emptyDatabase(t, "test_state", 2)

	st, err := migrations.ReadState(ctx, db)
	if err != nil || st.Versioned || st.Current != 0 || st.Target == 0 || len(st.Pending()) != len(st.Migrations) || len(st.Migrations) == 0 {
		t.Errorf("ReadState() on an empty database = %+v, %v, want every migration pending", st, err)
	}
	if err := migrations.Check(ctx, db); !errors.Is(err, migrations.ErrSchemaMissing) {
		t.Errorf("Check() = %v, want %v", err, migrations.ErrSchemaMissing)
	}
	var table *string
	if err := db.QueryRow(`SELECT to_regclass('goose_db_version')::text`).Scan(&table); err != nil || table != nil {
		t.Errorf("goose_db_version = %v (%v) after reading the state, want no table", table, err)
	}

	if err := migrations.Apply(ctx, db, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	st, err = migrations.ReadState(ctx, db)
	if err != nil || !st.Versioned || st.Current != st.Target || len(st.Pending()) != 0 {
		t.Errorf("ReadState() after Apply = %+v, %v, want every migration applied", st, err)
	}
	for _, m := range st.Migrations {
		if !m.Applied || m.AppliedAt.IsZero() || !strings.HasSuffix(m.Source, ".sql") {
			t.Errorf("migration %+v, want applied, with its time and file", m)
		}
	}
	if err := migrations.Check(ctx, db); err != nil {
		t.Errorf("Check() after Apply = %v", err)
	}
}
