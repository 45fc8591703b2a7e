package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orderstream/orderstream/migrations"
	"github.com/orderstream/orderstream/postgres"
)

// openPool opens a pool of the servers on DATABASE_URL: through PgBouncer
// (DATABASE_POOLER=pgbouncer), one whose limits are set in each
// transaction (postgres.OpenPooled).
func openPool(ctx context.Context, cfg config, logger *slog.Logger, opts ...postgres.Option) (*sql.DB, error) {
	open := postgres.Open
	if cfg.DatabasePooler == "pgbouncer" {
		open = postgres.OpenPooled
	}
	return openDatabase(ctx, cfg, logger, "DATABASE_URL", cfg.DatabaseURL, open, opts...)
}

// migrate brings the schema up to date on sessions of their own
// (DATABASE_SESSION_URL): the migrations hold a session-level advisory
// lock and run on its connection (migrations.Apply). It creates a missing
// database, which a pooler in front of the server could not.
func migrate(ctx context.Context, cfg config, logger *slog.Logger, cmd string) error {
	dsn, variable := cfg.sessionURL()
	db, err := openDatabase(ctx, cfg, logger, variable, dsn, postgres.Open,
		postgres.IdleInTransactionTimeout(cfg.DBIdleInTransactionTimeout), postgres.ApplicationName("orderstream "+cmd))
	if err != nil {
		return err
	}
	defer db.Close()
	return migrations.Apply(ctx, db, logger)
}

// openDatabase connects to dsn, the URL of variable, with open
// (postgres.Open or postgres.OpenPooled, which create a missing database),
// waiting up to cfg.StartupTimeout while it cannot be reached: under docker compose or an orchestrator, the database may
// come up after the process. A refused startup parameter is a mistake of
// the configuration, and fails at once.
func openDatabase(ctx context.Context, cfg config, logger *slog.Logger, variable, dsn string,
	open func(context.Context, string, int, ...postgres.Option) (*sql.DB, error), opts ...postgres.Option) (*sql.DB, error) {
	deadline := time.Now().Add(cfg.StartupTimeout)
	for {
		db, err := open(ctx, dsn, cfg.DBMaxConns, opts...)
		if errors.Is(err, postgres.ErrParameterRefused) {
			return nil, refused(cfg, variable, err)
		}
		if err == nil || !postgres.IsUnavailable(err) || time.Now().After(deadline) {
			return db, err
		}
		logger.Warn("waiting for the database", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// refused says what to change when the server at variable's URL refused a
// startup parameter: PgBouncer passes on only the few it knows.
func refused(cfg config, variable string, err error) error {
	switch {
	case variable == "DATABASE_SESSION_URL":
		return fmt.Errorf("%s: %w: it must reach PostgreSQL itself, not a pooler", variable, err)
	case cfg.DatabasePooler == "":
		return fmt.Errorf("%s: %w: behind PgBouncer, set DATABASE_POOLER=pgbouncer, and DATABASE_SESSION_URL to PostgreSQL itself", variable, err)
	default:
		return fmt.Errorf("%s: %w: through PgBouncer it can set no run-time parameters", variable, err)
	}
}
