package redisstreams_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/redisstreams"
)

// privateRedis starts a redis-server of the test's own on a free loopback
// port with args, so that its settings can be anything, and returns a client
// of it. The shared Redis is never reconfigured.
func privateRedis(t *testing.T, args ...string) *redis.Client {
	t.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is required (CI is set): %v", err)
		}
		t.Skipf("redis-server is not installed, skipping: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(server, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--daemonize", "no"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Dial before the client exists, so that it does not log its failures.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("private redis-server did not listen within 30s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
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
