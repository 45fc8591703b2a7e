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
	cli     string
	dataDir string
	logPath string
	port    int
	child   *child
}

func (s *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func startRedis(ctx context.Context, logger *slog.Logger, dir string) (*redisServer, error) {
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		return nil, errors.New("redis-server and redis-cli not found in PATH: install Redis (Debian/Ubuntu: apt-get install redis-server)")
	}
	s := &redisServer{
		server:  server,
		cli:     cli,
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

// restart shuts Redis down through redis-cli (it writes out its append-only
// file) and starts it again on the same data.
func (s *redisServer) restart(ctx context.Context) (time.Duration, error) {
	began := time.Now()
	if err := s.shutdown(ctx); err != nil {
		return 0, err
	}
	if err := s.start(ctx); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

func (s *redisServer) shutdown(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// redis-cli reports the dropped connection of a successful SHUTDOWN as
	// an error, so only the exit of the server counts.
	_ = exec.CommandContext(sctx, s.cli, "-p", strconv.Itoa(s.port), "shutdown").Run()
	if err := s.child.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		return fmt.Errorf("stop redis: %w", err)
	}
	return nil
}

func (s *redisServer) stop(logger *slog.Logger) {
	if s.child == nil {
		return
	}
	if err := s.child.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		logger.Warn("chaos: stop redis", "err", err)
	}
}
