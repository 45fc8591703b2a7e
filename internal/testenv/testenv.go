// Package testenv gives integration tests the real services: a fresh
// PostgreSQL database per test package, with the migrations applied, and a
// unique Redis stream prefix per test, so that packages and tests run in
// parallel without seeing each other's data.
//
// Where PostgreSQL or Redis cannot be reached, the tests that need them skip
// with the reason, except when CI is set: there they fail.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/migrations"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// Server URLs, from TEST_DATABASE_URL and TEST_REDIS_URL when set.
func serverURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

func redisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

var (
	dbOnce sync.Once
	dbURL  string
	dbErr  error
	dbName string
)

// Main runs the package's tests and drops the package's database after them.
// Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if dbName != "" {
		if err := dropDatabase(dbName); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
	}
	os.Exit(code)
}

// unavailable skips t, or fails it under CI.
func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required (CI is set): %v", what, err)
	}
	t.Skipf("%s is not reachable, skipping: %v", what, err)
}

// DatabaseURL returns the URL of the package's fresh, migrated database.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	dbOnce.Do(func() { dbURL, dbErr = createDatabase() })
	if dbErr != nil {
		unavailable(t, "PostgreSQL", dbErr)
	}
	return dbURL
}

// DB returns a connection pool on the package's database, closed when t ends.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), DatabaseURL(t), 20)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func createDatabase() (string, error) {
	wd, _ := os.Getwd()
	pkg := regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(filepath.Base(wd)), "_")
	name := fmt.Sprintf("test_%s_%s", pkg, randomHex(4))
	u, err := newDatabase(name)
	if err == nil {
		dbName = name
	}
	return u, err
}

// OwnDatabaseURL returns the URL of a fresh, migrated database for t alone,
// dropped when t ends: for tests that run the whole application, whose
// forwarder would otherwise take the outbox rows of other tests.
func OwnDatabaseURL(t testing.TB) string {
	t.Helper()
	DatabaseURL(t) // skips or fails as the package's database would
	name := "test_own_" + randomHex(6)
	u, err := newDatabase(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(name); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return u
}

// newDatabase creates the database name, applies the migrations and returns
// its URL.
func newDatabase(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("postgres", serverURL())
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		return "", err
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		return "", fmt.Errorf("create test database: %w", err)
	}
	u, err := url.Parse(serverURL())
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		return "", err
	}
	defer db.Close()
	if err := migrations.Apply(ctx, db, slog.New(slog.DiscardHandler)); err != nil {
		return "", err
	}
	return u.String(), nil
}

func dropDatabase(name string) error {
	admin, err := sql.Open("postgres", serverURL())
	if err != nil {
		return err
	}
	defer admin.Close()
	_, err = admin.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)")
	return err
}

// RedisURL returns the URL of the test Redis, checking that it answers.
func RedisURL(t testing.TB) string {
	t.Helper()
	rdb := redis.NewUniversalClient(redisOptions(t))
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		unavailable(t, "Redis", err)
	}
	return redisURL()
}

// redisOptions are the options of the test Redis, as REDIS_URL is read.
func redisOptions(t testing.TB) *redis.UniversalOptions {
	t.Helper()
	opts, err := redisstreams.ParseURL(redisURL())
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	return opts
}

// StreamPrefix returns a stream name prefix that no other test uses; the
// streams under it are deleted when t ends.
func StreamPrefix(t testing.TB) string {
	t.Helper()
	RedisURL(t)
	opts := redisOptions(t)
	prefix := "test:" + randomHex(6) + ":"
	t.Cleanup(func() { deleteKeys(redis.NewUniversalClient(opts), prefix) })
	return prefix
}

// deleteKeys deletes the keys under prefix and closes rdb. SCAN reads one
// server: of a Cluster, each master is scanned.
func deleteKeys(rdb redis.UniversalClient, prefix string) {
	defer rdb.Close()
	ctx := context.Background()
	scan := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			node.Del(ctx, iter.Val())
		}
		return iter.Err()
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
		return
	}
	_ = scan(ctx, rdb)
}

// Streams returns redisstreams.Config on the test Redis under a fresh prefix.
func Streams(t testing.TB) redisstreams.Config {
	t.Helper()
	return StreamsOn(t, redisOptions(t), StreamPrefix(t))
}

// StreamsOn returns redisstreams.Config on the Redis of opts under prefix,
// with the tests' settings.
func StreamsOn(t testing.TB, opts *redis.UniversalOptions, prefix string) redisstreams.Config {
	t.Helper()
	return redisstreams.Config{
		Redis:      opts,
		Prefix:     prefix,
		ClaimIdle:  time.Minute,
		NackResend: 50 * time.Millisecond,
		Logger:     watermill.NopLogger{},
	}
}

// Logger returns a logger whose output is shown only when t fails.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", w.String())
		}
	})
	logger, err := logging.New(w, "text", "debug")
	if err != nil {
		t.Fatal(err)
	}
	return logger
}

// Buffer is a bytes.Buffer that goroutines can write to at once.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Unique returns prefix followed by random characters, for keys and ids that
// must not collide with those of other tests or earlier runs.
func Unique(prefix string) string { return prefix + "-" + randomHex(6) }

// OwnDB returns a connection pool on a fresh database for t alone (see
// OwnDatabaseURL), closed when t ends.
func OwnDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), OwnDatabaseURL(t), 10)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
