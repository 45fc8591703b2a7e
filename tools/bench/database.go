package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"
)

// runLock is the advisory lock a run holds on the server: two runs at once
// would drop each other's database, and measure each other.
const runLock int64 = 0x6f7374_0062

// lockRun takes the run lock on a connection of its own, held until the
// stage closes; another run holding it is an error.
func (s *stage) lockRun(ctx context.Context) error {
	conn, err := s.admin.Conn(ctx)
	if err != nil {
		return fmt.Errorf("take run lock: %w", err)
	}
	var locked bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, runLock).Scan(&locked); err != nil {
		conn.Close()
		return fmt.Errorf("take run lock: %w", err)
	}
	if !locked {
		conn.Close()
		return errors.New("another bench is running against this PostgreSQL server; wait for it to finish")
	}
	s.lock = conn
	return nil
}

// dbURL is the DATABASE_URL of the bench database.
func (s *stage) dbURL() string {
	u := s.server
	u.Path = "/" + benchDB
	q := u.Query()
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// freshDatabase drops the bench database, creates it again, applies the
// migrations with the binary under test, and checkpoints, so that no dirty
// page of an earlier measurement is written during this one. It returns a
// small pool on the new database.
func (s *stage) freshDatabase(ctx context.Context) (*sql.DB, error) {
	if err := s.dropDatabase(ctx); err != nil {
		return nil, err
	}
	if _, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(benchDB)); err != nil {
		return nil, fmt.Errorf("create bench database: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	if err := s.checkpoint(ctx); err != nil {
		return nil, err
	}
	return s.openBenchDB()
}

// openBenchDB returns a small pool on the bench database.
func (s *stage) openBenchDB() (*sql.DB, error) {
	db, err := sql.Open("postgres", s.dbURL())
	if err != nil {
		return nil, fmt.Errorf("open bench database: %w", err)
	}
	db.SetMaxOpenConns(4)
	return db, nil
}

func (s *stage) dropDatabase(ctx context.Context) error {
	_, err := s.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(benchDB)+" WITH (FORCE)")
	if err != nil {
		return fmt.Errorf("drop bench database: %w", err)
	}
	return nil
}

// checkpoint writes out every dirty page now rather than during a
// measurement.
func (s *stage) checkpoint(ctx context.Context) error {
	if _, err := s.admin.ExecContext(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// transactions is how many transactions the bench database has committed
// and rolled back so far.
func (s *stage) transactions(ctx context.Context) (int64, error) {
	var n int64
	err := s.admin.QueryRowContext(ctx,
		`SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, benchDB).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read database statistics: %w", err)
	}
	return n, nil
}
