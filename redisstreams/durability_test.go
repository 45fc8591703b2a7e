package redisstreams_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

// privateRedis returns a client of a redis-server of the test's own,
// started with args.
func privateRedis(t *testing.T, args ...string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.StartRedis(t, args...)})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestWarnIfNotDurable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		warn string // in the warning; "" for none
		note string // in a note that the check could not be made
	}{
		{"warns_without_append_only_file", []string{"--appendonly", "no"}, "appendonly is no", ""},
		{"warns_when_synced_every_second", []string{"--appendonly", "yes", "--appendfsync", "everysec"}, "appendfsync is everysec", ""},
		{"warns_when_never_synced", []string{"--appendonly", "yes", "--appendfsync", "no"}, "appendfsync is no", ""},
		{"warns_when_rewrites_skip_sync", []string{"--appendonly", "yes", "--appendfsync", "always", "--no-appendfsync-on-rewrite", "yes"}, "no-appendfsync-on-rewrite is yes", ""},
		{"quiet_when_every_write_is_synced", []string{"--appendonly", "yes", "--appendfsync", "always"}, "", ""},
		// A managed Redis may refuse CONFIG: start-up goes on, with a note.
		{"notes_a_refused_config", []string{"--appendonly", "no", "--rename-command", "CONFIG", ""}, "", "cannot check"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb := privateRedis(t, tc.args...)
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			redisstreams.WarnIfNotDurable(context.Background(), rdb, logger)
			got := logs.String()
			warned := strings.Contains(got, "level=WARN")
			switch {
			case tc.warn == "" && warned:
				t.Errorf("warned, want no warning:\n%s", got)
			case tc.warn != "" && (!warned || !strings.Contains(got, tc.warn)):
				t.Errorf("want a warning naming %q, got:\n%s", tc.warn, got)
			case tc.note == "" && strings.Contains(got, "cannot check"):
				t.Errorf("could not check the settings:\n%s", got)
			case tc.note != "" && !strings.Contains(got, tc.note):
				t.Errorf("want a note %q, got:\n%s", tc.note, got)
			}
		})
	}
}

// warnings runs WarnIfNotDurable on rdb and returns its warnings, failing
// t when the settings could not be read.
func warnings(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	redisstreams.WarnIfNotDurable(context.Background(), rdb, logger)
	if strings.Contains(logs.String(), "cannot check") {
		t.Fatalf("could not check the settings:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		return ""
	}
	return logs.String()
}

// A master with a replica is durable only if each entry waits for the
// replica: else a failover loses what had not been replicated yet.
func TestWarnIfNotDurable_replicas(t *testing.T) {
	t.Parallel()
	servers := testenv.StartReplicated(t, 1)
	for _, tc := range []struct {
		name string
		wait int
		warn string // "" for none
	}{
		{"warns_without_a_wait", 0, "1 replicas and REDIS_WAIT_REPLICAS is 0"},
		{"quiet_when_each_entry_waits", 1, ""},
		{"warns_of_a_wait_for_more_than_are_connected", 2, "REDIS_WAIT_REPLICAS is 2 and 1 replicas are connected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			streams := redisstreams.Config{Redis: &redis.UniversalOptions{Addrs: servers[:1]}, WaitReplicas: tc.wait}
			rdb := streams.NewClient()
			defer rdb.Close()
			got := warnings(t, rdb)
			switch {
			case tc.warn == "" && got != "":
				t.Errorf("warned, want no warning:\n%s", got)
			case tc.warn != "" && !strings.Contains(got, tc.warn):
				t.Errorf("want a warning naming %q, got:\n%s", tc.warn, got)
			}
		})
	}
}

// Of a Cluster, each master's settings are read, and a problem is named by
// the master that has it.
func TestWarnIfNotDurable_cluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t)
	opts, err := redisstreams.ParseURL(cluster.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redisstreams.Config{Redis: opts}.NewClient()
	defer rdb.Close()
	if got := warnings(t, rdb); got != "" {
		t.Fatalf("warned of a durable cluster:\n%s", got)
	}
	lax := cluster.Masters[1]
	node := redis.NewClient(&redis.Options{Addr: lax})
	defer node.Close()
	if err := node.ConfigSet(context.Background(), "appendfsync", "everysec").Err(); err != nil {
		t.Fatal(err)
	}
	got := warnings(t, rdb)
	if !strings.Contains(got, lax+": appendfsync is everysec") {
		t.Errorf("want a warning naming %s: appendfsync is everysec, got:\n%s", lax, got)
	}
	for _, m := range cluster.Masters {
		if m != lax && strings.Contains(got, m+":") {
			t.Errorf("warned of the durable master %s:\n%s", m, got)
		}
	}
}
