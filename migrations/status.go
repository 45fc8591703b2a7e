package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
)

// versionTable is where goose records the migrations it applied.
const versionTable = "goose_db_version"

// ErrSchemaMissing and ErrSchemaBehind say that the database lacks all of
// the schema, or some of its migrations.
var (
	ErrSchemaMissing = errors.New("the database has no orderstream schema")
	ErrSchemaBehind  = errors.New("the database schema is behind")
)

// Migration is one of the embedded migrations and whether the database has
// it.
type Migration struct {
	Version   int64
	Source    string    // the file's name, such as 00001_init.sql
	Applied   bool      // recorded as applied in the database
	AppliedAt time.Time // when it was applied; zero when pending
}

// State is what a database has of the embedded migrations.
type State struct {
	// Versioned is false when the database has no version table at all:
	// no migration was ever applied to it.
	Versioned  bool
	Current    int64 // the highest version applied, embedded or not; 0 when none
	Target     int64 // the highest embedded version
	Migrations []Migration
}

// Pending are the embedded migrations not applied yet, oldest first.
func (s State) Pending() []Migration {
	var out []Migration
	for _, m := range s.Migrations {
		if !m.Applied {
			out = append(out, m)
		}
	}
	return out
}

// ReadState reads which migrations db has, and changes nothing: goose's
// status helpers create the version table when it is absent, so its
// existence is checked first and, when it is absent, every migration is
// pending. No lock is taken, so a migration that runs meanwhile does not
// hold it up.
func ReadState(ctx context.Context, db *sql.DB) (State, error) {
	provider, err := goose.NewProvider(goose.DialectPostgres, db, files, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return State{}, fmt.Errorf("load migrations: %w", err)
	}
	var st State
	sources := provider.ListSources()
	if len(sources) > 0 {
		st.Target = sources[len(sources)-1].Version
	}
	var table sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1)::text`, versionTable).Scan(&table); err != nil {
		return State{}, fmt.Errorf("read migration state: %w", err)
	}
	if !table.Valid {
		for _, s := range sources {
			st.Migrations = append(st.Migrations, Migration{Version: s.Version, Source: path.Base(s.Path)})
		}
		return st, nil
	}
	st.Versioned = true
	statuses, err := provider.Status(ctx)
	if err != nil {
		return State{}, fmt.Errorf("read migration state: %w", err)
	}
	for _, s := range statuses {
		st.Migrations = append(st.Migrations, Migration{
			Version:   s.Source.Version,
			Source:    path.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	if st.Current, err = provider.GetDBVersion(ctx); err != nil {
		return State{}, fmt.Errorf("read schema version: %w", err)
	}
	return st, nil
}

// Check returns nil when db has every embedded migration, and otherwise an
// error wrapping ErrSchemaMissing or ErrSchemaBehind that names what is
// missing and the command that applies it. It changes nothing.
func Check(ctx context.Context, db *sql.DB) error {
	st, err := ReadState(ctx, db)
	if err != nil {
		return err
	}
	pending := st.Pending()
	switch {
	case len(pending) == 0:
		return nil
	case len(pending) == len(st.Migrations):
		return fmt.Errorf("%w (none of its %d migrations is applied): is DATABASE_URL right? If it is, run `orderstream migrate`",
			ErrSchemaMissing, len(st.Migrations))
	}
	names := make([]string, len(pending))
	for i, m := range pending {
		names[i] = m.Source
	}
	return fmt.Errorf("%w: %d of %d migrations pending (%s): run `orderstream migrate`",
		ErrSchemaBehind, len(pending), len(st.Migrations), strings.Join(names, ", "))
}
