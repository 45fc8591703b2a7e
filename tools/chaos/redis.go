package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of the harness's own on 127.0.0.1 at a free
// port, with its append-only file in the temp dir, so that a restart keeps
// every stream entry and consumer group.
type redisServer struct {
	server  string
	dataDir string
	logPath string
	port    int
	child   *child
}

func (s *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func startRedis(ctx context.Context, logger *slog.Logger, dir string) (*redisServer, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found in PATH: install Redis (Debian/Ubuntu: apt-get install redis-server)")
	}
	s := &redisServer{
		server:  server,
		dataDir: filepath.Join(dir, "redis"),
		logPath: filepath.Join(dir, "redis.log"),
	}
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create redis dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.port = port
	if err := s.start(ctx); err != nil {
		s.stop(logger)
		return nil, err
	}
	logger.Info("chaos: redis started", "port", s.port)
	return s, nil
}

// start runs redis-server and waits until it answers PING.
func (s *redisServer) start(ctx context.Context) error {
	// appendfsync always: an entry Redis acknowledged is on disk, which is
	// what the forwarder's ack of an outbox row relies on.
	c, err := startChild(s.logPath, nil, s.server,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--dir", s.dataDir, "--daemonize", "no")
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.child = c
	return waitFor(ctx, 30*time.Second, c, func(ctx context.Context) error {
		rdb := s.client()
		defer rdb.Close()
		return rdb.Ping(ctx).Err()
	})
}

func (s *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port), MaxRetries: -1})
}

// crash kills redis-server with SIGKILL, as a crash would (no SHUTDOWN,
// nothing written out at the end), and starts it again on the same data:
// what it acknowledged must come back from the append-only file.
func (s *redisServer) crash(ctx context.Context) (time.Duration, error) {
	began := time.Now()
	s.child.signal(syscall.SIGKILL)
	select {
	case <-s.child.exited:
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("redis-server pid %d still runs 30s after SIGKILL", s.child.pid())
	}
	if err := s.start(ctx); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

func (s *redisServer) stop(logger *slog.Logger) {
	if s.child == nil {
		return
	}
	if err := s.child.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		logger.Warn("chaos: stop redis", "err", err)
	}
}
