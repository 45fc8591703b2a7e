// Command pglocks measures how often one read of pg_locks shows a committing
// transaction's id and its advisory lock under different virtual
// transactions: the reason the forwarder's horizon (outbox.writersHorizon)
// matches a writer's id to the writers' lock by backend pid.
//
// Writers loop over BEGIN; the shared advisory lock; an insert (which gives
// the transaction an id); COMMIT. A reader meanwhile reads pg_locks once per
// statement, as the forwarder does, and counts the reads in which a
// writer's transaction id has no advisory lock under its virtual
// transaction, and those in which it has none under its pid.
//
//	go -C tools run ./pglocks -writers 6 -duration 30s
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// The advisory lock of the writers, (classid, objid) = (lockKey1, lockKey2).
const lockKey1, lockKey2 = 7_700_001, 7_700_002

var writerLock = fmt.Sprintf(`SELECT pg_advisory_xact_lock_shared(%d, %d)`, lockKey1, lockKey2)

// probe is one read of pg_locks: of the writers' transaction ids it
// shows, how many have no advisory lock with the same virtual transaction,
// and how many none with the same pid.
const probe = `
	WITH locks AS MATERIALIZED (
		SELECT locktype, mode, classid, objid, objsubid, pid, virtualtransaction
		FROM pg_locks WHERE granted AND locktype IN ('advisory', 'transactionid')
	),
	ids AS (SELECT * FROM locks WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND pid = ANY($1))
	SELECT
		count(*),
		count(*) FILTER (WHERE NOT EXISTS (SELECT FROM locks w WHERE w.locktype = 'advisory'
			AND w.classid = $2 AND w.objid = $3 AND w.objsubid = 2 AND w.virtualtransaction = ids.virtualtransaction)),
		count(*) FILTER (WHERE NOT EXISTS (SELECT FROM locks w WHERE w.locktype = 'advisory'
			AND w.classid = $2 AND w.objid = $3 AND w.objsubid = 2 AND w.pid = ids.pid))
	FROM ids`

func main() {
	dsn := flag.String("dsn", envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL to run against (creates and drops the table pglocks_probe)")
	writers := flag.Int("writers", 6, "concurrent writing sessions")
	duration := flag.Duration("duration", 30*time.Second, "how long to run")
	flag.Parse()
	if err := run(*dsn, *writers, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "pglocks:", err)
		os.Exit(1)
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func run(dsn string, writers int, duration time.Duration) error {
	if writers < 1 || duration <= 0 {
		return fmt.Errorf("want at least one writer and a positive duration")
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(writers + 1)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS pglocks_probe (id bigserial PRIMARY KEY)`); err != nil {
		return err
	}
	defer db.Exec(`DROP TABLE IF EXISTS pglocks_probe`) //nolint:errcheck // best effort

	// Each writer keeps one session, so its pid is known to the reader.
	pids := make([]int64, writers)
	conns := make([]*sql.Conn, writers)
	for i := range conns {
		if conns[i], err = db.Conn(context.Background()); err != nil {
			return err
		}
		defer conns[i].Close()
		if err := conns[i].QueryRowContext(context.Background(), `SELECT pg_backend_pid()`).Scan(&pids[i]); err != nil {
			return err
		}
	}

	var commits atomic.Int64
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- write(ctx, c, &commits)
		}()
	}

	var reads, seen, byVXID, byPID int64
	for ctx.Err() == nil {
		var n, v, p int64
		if err := db.QueryRowContext(ctx, probe, pq.Array(pids), lockKey1, lockKey2).Scan(&n, &v, &p); err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		reads++
		seen += n
		if v > 0 {
			byVXID++
		}
		if p > 0 {
			byPID++
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	fmt.Printf("%d writers, %s: %d commits; %d reads of pg_locks showing %d writer transaction ids\n",
		writers, duration, commits.Load(), reads, seen)
	fmt.Printf("reads with a writer's id and no advisory lock under its virtualtransaction: %d\n", byVXID)
	fmt.Printf("reads with a writer's id and no advisory lock under its pid:                %d\n", byPID)
	return nil
}

// write commits transactions that take the advisory lock first, then an id,
// until ctx ends.
func write(ctx context.Context, c *sql.Conn, commits *atomic.Int64) error {
	for ctx.Err() == nil {
		tx, err := c.BeginTx(ctx, nil)
		if err != nil {
			return ignoreEnd(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, writerLock); err != nil {
			tx.Rollback() //nolint:errcheck // the statement's error is the one to report
			return ignoreEnd(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pglocks_probe DEFAULT VALUES`); err != nil {
			tx.Rollback() //nolint:errcheck // the statement's error is the one to report
			return ignoreEnd(ctx, err)
		}
		if err := tx.Commit(); err != nil {
			return ignoreEnd(ctx, err)
		}
		commits.Add(1)
	}
	return nil
}

func ignoreEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
