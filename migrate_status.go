package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/orderstream/orderstream/migrations"
)

// migrateStatusJSON is the document `migrate status --json` prints.
type migrateStatusJSON struct {
	// The highest version applied (0 when none) and the highest this
	// binary has; current above target means a newer binary migrated the
	// database.
	CurrentVersion int64           `json:"current_version"`
	TargetVersion  int64           `json:"target_version"`
	Pending        int             `json:"pending"`
	Migrations     []migrationJSON `json:"migrations"`
}

type migrationJSON struct {
	Version   int64      `json:"version"`
	Source    string     `json:"source"`
	State     string     `json:"state"`      // "applied" or "pending"
	AppliedAt *time.Time `json:"applied_at"` // null when pending
}

// migrateStatus prints which of the binary's migrations the database has.
// Pending migrations are reported, not an error: this command is how an
// operator finds out before running `orderstream migrate`.
func (a *app) migrateStatus(ctx context.Context, stdout io.Writer, asJSON bool) error {
	st, err := migrations.ReadState(ctx, a.db)
	if err != nil {
		return err
	}
	pending := len(st.Pending())
	if asJSON {
		doc := migrateStatusJSON{CurrentVersion: st.Current, TargetVersion: st.Target, Pending: pending, Migrations: []migrationJSON{}}
		for _, m := range st.Migrations {
			mj := migrationJSON{Version: m.Version, Source: m.Source, State: "pending"}
			if m.Applied {
				at := m.AppliedAt.UTC()
				mj.State, mj.AppliedAt = "applied", &at
			}
			doc.Migrations = append(doc.Migrations, mj)
		}
		return writeJSON(stdout, doc)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tSTATE\tAPPLIED AT\tSOURCE")
	for _, m := range st.Migrations {
		state, at := "pending", "-"
		if m.Applied {
			state, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", m.Version, state, at, m.Source)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write migrate status: %w", err)
	}
	switch {
	case !st.Versioned:
		fmt.Fprintf(stdout, "no migration applied: the database has no schema; run `orderstream migrate`\n")
	case pending > 0:
		fmt.Fprintf(stdout, "%d of %d migrations pending; run `orderstream migrate`\n", pending, len(st.Migrations))
	case st.Current > st.Target:
		fmt.Fprintf(stdout, "the database is at version %d, ahead of this binary's %d: a newer orderstream migrated it\n", st.Current, st.Target)
	default:
		fmt.Fprintf(stdout, "up to date at version %d\n", st.Current)
	}
	return nil
}
