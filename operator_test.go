package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/migrations"
	"github.com/orderstream/orderstream/postgres"
)

// otherDatabase returns a fresh database name on the test server and its
// URL, and drops whatever of that name exists when t ends.
func otherDatabase(t *testing.T) (name, dsn string) {
	t.Helper()
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	name = strings.ReplaceAll(testenv.Unique("test_typo"), "-", "_")
	u.Path = "/" + name
	admin := testenv.DB(t)
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)") })
	return name, u.String()
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	var n int
	if err := testenv.DB(t).QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// envOn is the environment of an operator command on the database at dsn.
func envOn(t *testing.T, dsn string) func(string) string {
	t.Helper()
	vars := map[string]string{
		"DATABASE_URL":  dsn,
		"REDIS_URL":     testenv.RedisURL(t),
		"STREAM_PREFIX": testenv.StreamPrefix(t),
	}
	return func(k string) string { return vars[k] }
}

// cli runs one command line and returns what it printed on stdout.
func cli(getenv func(string) string, args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), args, getenv, &out, io.Discard)
	return out.String(), err
}

// TestRun_operatorCommandsCreateNoDatabase: with DATABASE_URL naming a
// database the server does not have, the commands that read the database
// and outbox realign fail with an error that names it and says what to run,
// and leave the server without it; those that need no database succeed
// without creating one.
func TestRun_operatorCommandsCreateNoDatabase(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"outbox", "status"}, {"outbox", "status", "--json"}, {"migrate", "status"}, {"outbox", "realign"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			t.Parallel()
			name, dsn := otherDatabase(t)
			getenv := envOn(t, dsn)
			_, err := cli(getenv, args...)
			if !errors.Is(err, postgres.ErrNoDatabase) || !strings.Contains(err.Error(), name) ||
				!strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "orderstream migrate") {
				t.Errorf("%v = %v, want an error naming database %s, DATABASE_URL and orderstream migrate", args, err, name)
			}
			if got := exitStatus(err); got != 1 {
				t.Errorf("exit status %d, want 1", got)
			}
			if databaseExists(t, name) {
				t.Errorf("%v created the database %s", args, name)
			}
		})
	}
	for _, args := range [][]string{{"deadletters", "list"}, {"deadletters", "list", "--json"}, {"version"}} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			t.Parallel()
			name, dsn := otherDatabase(t)
			getenv := envOn(t, dsn)
			if _, err := cli(getenv, args...); err != nil {
				t.Errorf("%v = %v, want no error: it needs no database", args, err)
			}
			if databaseExists(t, name) {
				t.Errorf("%v created the database %s", args, name)
			}
		})
	}
}

// TestRun_operatorCommandsFailAtOnceWithoutADatabase: with DATABASE_URL
// naming a server that does not answer, the commands that read the
// database fail saying so, after one attempt: they do not wait for the
// database as a starting server does.
func TestRun_operatorCommandsFailAtOnceWithoutADatabase(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"outbox", "status"}, {"migrate", "status"}, {"outbox", "realign"}} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			t.Parallel()
			getenv := envOn(t, "postgres://postgres@"+testenv.FreeAddr(t)+"/orderstream?sslmode=disable")
			var logs bytes.Buffer
			err := run(context.Background(), args, getenv, io.Discard, &logs)
			if err == nil || !strings.Contains(err.Error(), "cannot be reached") || !strings.Contains(err.Error(), "DATABASE_URL") {
				t.Errorf("%v = %v, want an error saying the database cannot be reached", args, err)
			}
			if strings.Contains(logs.String(), "waiting for the database") {
				t.Errorf("%v waited for the database:\n%s", args, logs.String())
			}
		})
	}
}

// TestRun_operatorCommandsMigrateNothing: on a database without the schema,
// or with a migration missing, outbox status and outbox realign fail naming
// what is missing and `orderstream migrate`, and migrate status lists the
// pending migrations; none of them changes the schema.
func TestRun_operatorCommandsMigrateNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name, dsn := otherDatabase(t)
	if _, err := testenv.DB(t).Exec("CREATE DATABASE " + pq.QuoteIdentifier(name)); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.OpenExisting(ctx, dsn, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tables := func() []string {
		t.Helper()
		rows, err := db.Query(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		return names
	}
	getenv := envOn(t, dsn)

	t.Run("without_schema", func(t *testing.T) {
		for _, args := range [][]string{{"outbox", "status"}, {"outbox", "realign"}} {
			_, err := cli(getenv, args...)
			if !errors.Is(err, migrations.ErrSchemaMissing) || !strings.Contains(err.Error(), "orderstream migrate") {
				t.Errorf("%v = %v, want %v and what to run", args, err, migrations.ErrSchemaMissing)
			}
		}
		out, err := cli(getenv, "migrate", "status")
		if err != nil || strings.Contains(out, "applied  ") || !strings.Contains(out, "00001_init.sql") ||
			!strings.Contains(out, "no migration applied") {
			t.Errorf("migrate status = %v\n%s\nwant every migration pending", err, out)
		}
		if got := tables(); len(got) != 0 {
			t.Errorf("tables after the read-only commands: %v, want none", got)
		}
	})

	t.Run("behind", func(t *testing.T) {
		if err := migrations.Apply(ctx, db, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		st, err := migrations.ReadState(ctx, db)
		if err != nil || len(st.Migrations) < 2 {
			t.Fatalf("ReadState() = %+v, %v", st, err)
		}
		last := st.Migrations[len(st.Migrations)-1]
		// The database as an older release left it: its last migration
		// not recorded (its table may stay: nothing here applies it).
		if _, err := db.Exec(`DELETE FROM goose_db_version WHERE version_id = $1`, last.Version); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"outbox", "status"}, {"outbox", "realign"}} {
			_, err := cli(getenv, args...)
			if !errors.Is(err, migrations.ErrSchemaBehind) || !strings.Contains(err.Error(), last.Source) ||
				!strings.Contains(err.Error(), "orderstream migrate") {
				t.Errorf("%v = %v, want %v naming %s and what to run", args, err, migrations.ErrSchemaBehind, last.Source)
			}
		}
		out, err := cli(getenv, "migrate", "status")
		if err != nil || !strings.Contains(out, "1 of ") || !strings.Contains(out, "pending  -") {
			t.Errorf("migrate status = %v\n%s\nwant one pending", err, out)
		}
		var recorded int
		if err := db.QueryRow(`SELECT count(*) FROM goose_db_version WHERE version_id = $1`, last.Version).Scan(&recorded); err != nil || recorded != 0 {
			t.Errorf("migration %d recorded %d times after the read-only commands (%v), want 0", last.Version, recorded, err)
		}
	})
}

// TestRun_operatorCommandsJSON: with --json each reading command prints one
// JSON document with the fields the README lists.
func TestRun_operatorCommandsJSON(t *testing.T) {
	t.Parallel()
	getenv := env(t, testenv.FreeAddr(t))
	decode := func(args ...string) map[string]any {
		t.Helper()
		out, err := cli(getenv, args...)
		if err != nil {
			t.Fatalf("%v = %v", args, err)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v printed no JSON document: %v\n%s", args, err, out)
		}
		return doc
	}
	has := func(what string, doc map[string]any, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := doc[k]; !ok {
				t.Errorf("%s has no %q: %v", what, k, doc)
			}
		}
	}

	// A dead letter, as the poison middleware writes it.
	streams := testenv.Streams(t)
	streams.Prefix = getenv("STREAM_PREFIX")
	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	msg := message.NewMessage("3f1c1c9e-0000-4000-8000-000000000001", []byte(`{"order_id":"o-1"}`))
	msg.Metadata.Set(events.MetadataEventType, "OrderPlaced")
	msg.Metadata.Set(middleware.ReasonForPoisonedKey, "no items")
	msg.Metadata.Set(middleware.PoisonedTopicKey, streams.Name(events.StreamOrdersPlaced))
	msg.Metadata.Set(middleware.PoisonedHandlerKey, "inventory")
	if err := pub.Publish(events.StreamDeadLetter, msg); err != nil {
		t.Fatal(err)
	}

	letters := decode("deadletters", "list", "--json")
	has("deadletters list", letters, "count", "dead_letters")
	list, _ := letters["dead_letters"].([]any)
	if letters["count"] != 1.0 || len(list) != 1 {
		t.Fatalf("deadletters list --json = %v, want one dead letter", letters)
	}
	d := list[0].(map[string]any)
	has("a dead letter", d, "id", "at", "stream", "handler", "uuid", "event_type", "reason", "metadata", "payload")
	if d["uuid"] != msg.UUID || d["stream"] != events.StreamOrdersPlaced || d["handler"] != "inventory" ||
		d["reason"] != "no items" || d["event_type"] != "OrderPlaced" || d["payload"] != `{"order_id":"o-1"}` {
		t.Errorf("dead letter = %v, want the one published", d)
	}

	status := decode("outbox", "status", "--json")
	has("outbox status", status, "outbox", "streams")
	outbox, _ := status["outbox"].(map[string]any)
	has("outbox status's outbox", outbox, "pending", "oldest_pending_age_seconds", "forwarded", "transaction", "offset_acked", "misalignment", "shards")
	if outbox["forwarded"] != false || outbox["pending"] != 0.0 || outbox["misalignment"] != nil {
		t.Errorf("outbox = %v, want nothing pending, never forwarded, aligned", outbox)
	}
	streamList, _ := status["streams"].([]any)
	seen := map[string]bool{}
	for _, s := range streamList {
		s := s.(map[string]any)
		has("a stream", s, "stream", "length", "groups")
		if _, ok := s["groups"].([]any); !ok {
			t.Errorf("stream %v: groups is not a list", s)
		}
		seen[s["stream"].(string)] = true
		if s["stream"] == events.StreamDeadLetter && s["length"] != 1.0 {
			t.Errorf("dead-letter stream = %v, want length 1", s)
		}
	}
	if !seen[events.StreamOrdersPlaced] || !seen[events.StreamDeadLetter] {
		t.Errorf("streams = %v, want %s and %s among them", streamList, events.StreamOrdersPlaced, events.StreamDeadLetter)
	}

	ms := decode("migrate", "status", "--json")
	has("migrate status", ms, "current_version", "target_version", "pending", "migrations")
	migs, _ := ms["migrations"].([]any)
	if ms["pending"] != 0.0 || ms["current_version"] != ms["target_version"] || len(migs) == 0 {
		t.Errorf("migrate status --json = %v, want every migration applied", ms)
	}
	for _, m := range migs {
		m := m.(map[string]any)
		has("a migration", m, "version", "source", "state", "applied_at")
		if m["state"] != "applied" || m["applied_at"] == nil {
			t.Errorf("migration %v, want applied with its time", m)
		}
	}

	v := decode("version", "--json")
	has("version", v, "version", "revision", "vcs_time", "modified", "go_version")
	if v["go_version"] != runtime.Version() || v["version"] == "" {
		t.Errorf("version --json = %v, want go_version %s and a version", v, runtime.Version())
	}
}

// TestRun_version: the version command prints the build without the
// environment or the services: a configuration that would stop every other
// command does not stop it.
func TestRun_version(t *testing.T) {
	t.Parallel()
	bad := func(k string) string {
		if k == "OUTBOX_POLL_INTERVAL" {
			return "soon"
		}
		return ""
	}
	out, err := cli(bad, "version")
	if err != nil {
		t.Fatalf("version = %v", err)
	}
	lines := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			lines[f[0]] = f[1]
		}
	}
	if len(lines) != 5 || lines["go"] != runtime.Version() || lines["version"] == "" || lines["revision"] == "" ||
		lines["time"] == "" || lines["modified"] == "" {
		t.Errorf("version printed\n%s\nwant version, revision, time, modified and go (%s), one a line", out, runtime.Version())
	}
}
