package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"time"

	_ "github.com/lib/pq" // the database/sql driver
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/tools/internal/credentials"
)

// benchDB is the database each measurement gets afresh.
const benchDB = "orderstream_bench"

// Default servers, as `make run` and the tests use them.
const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// stage is where the measurements run: the PostgreSQL server and the Redis
// on this machine, the run's stream prefix, and a directory for the logs of
// the processes started.
type stage struct {
	opts     options
	logger   *slog.Logger
	server   url.URL   // DATABASE_URL's server; the path names a database
	admin    *sql.DB   // the maintenance database, which outlives benchDB
	lock     *sql.Conn // holds the run lock (see lockRun)
	rdb      *redis.Client
	redisURL string
	prefix   string // before every stream of this run
	creds    *credentials.Credentials
	dir      string
	keep     bool
}

func newStage(ctx context.Context, opts options, logger *slog.Logger) (*stage, error) {
	if _, err := os.Stat(opts.bin); err != nil {
		return nil, fmt.Errorf("-bin: %w (build it with: go build -o bin/orderstream .)", err)
	}
	dbURL, err := loopbackURL(opts.databaseURL, defaultDatabaseURL, "DATABASE_URL")
	if err != nil {
		return nil, err
	}
	redisURL, err := loopbackURL(opts.redisURL, defaultRedisURL, "REDIS_URL")
	if err != nil {
		return nil, err
	}
	s := &stage{opts: opts, logger: logger, server: *dbURL, redisURL: redisURL.String(), creds: credentials.New()}
	s.prefix = streamsRoot + randomHex(4) + ":"

	admin := *dbURL
	admin.Path = "/postgres"
	if s.admin, err = sql.Open("postgres", admin.String()); err != nil {
		return nil, fmt.Errorf("open maintenance database: %w", err)
	}
	s.admin.SetMaxOpenConns(3)
	redisOpts, err := redis.ParseURL(s.redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	s.rdb = redis.NewClient(redisOpts)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.admin.PingContext(pingCtx); err != nil {
		s.close()
		return nil, fmt.Errorf("reach PostgreSQL at %s (start it with scripts/services.sh): %w", dbURL.Host, err)
	}
	if err := s.rdb.Ping(pingCtx).Err(); err != nil {
		s.close()
		return nil, fmt.Errorf("reach Redis at %s (start it with scripts/services.sh): %w", redisURL.Host, err)
	}
	if err := s.lockRun(ctx); err != nil {
		s.close()
		return nil, err
	}
	// A run that was killed could not delete its streams; they are of no
	// use to anyone now that this run holds the lock.
	if err := s.clearStreams(ctx, streamsRoot); err != nil {
		s.close()
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "orderstream-bench-"); err != nil {
		s.close()
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	return s, nil
}

// loopbackURL parses raw (or def when raw is empty) and refuses a host that
// is not this machine; localhost becomes 127.0.0.1.
func loopbackURL(raw, def, name string) (*url.URL, error) {
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s names %s: the bench drops and creates databases, so it runs only against servers on 127.0.0.1", name, host)
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	}
	u.Host = host
	return u, nil
}

// keepLogs keeps the process logs when the run ends.
func (s *stage) keepLogs() { s.keep = true }

// close deletes, unless a measurement failed, the logs, the run's streams
// and the bench database: what the last measurement left is kept for
// inspection.
func (s *stage) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if s.lock != nil {
		if !s.keep {
			errs = append(errs, s.dropDatabase(ctx))
		}
		errs = append(errs, s.lock.Close())
	}
	if s.admin != nil {
		errs = append(errs, s.admin.Close())
	}
	if s.rdb != nil {
		if !s.keep {
			errs = append(errs, s.clearStreams(ctx, s.prefix))
		}
		errs = append(errs, s.rdb.Close())
	}
	if s.dir != "" && !s.keep {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	if err := errors.Join(errs...); err != nil {
		s.logger.Warn("bench: clean up", "err", err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
