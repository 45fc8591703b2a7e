package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	if err := s.kill(); err != nil {
		return 0, err
	}
	if err := s.start(ctx); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

// kill SIGKILLs redis-server and waits until it is gone.
func (s *redisServer) kill() error {
	s.child.signal(syscall.SIGKILL)
	select {
	case <-s.child.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("redis-server pid %d still runs 30s after SIGKILL", s.child.pid())
	}
}

// snapshotDir is where snapshot keeps its copy of the data directory.
func (s *redisServer) snapshotDir() string {
	return filepath.Join(filepath.Dir(s.dataDir), "redis-snapshot")
}

// snapshot copies the data directory (the append-only files: nothing else
// is written there) as it is now, for rewind. Writes are paused meanwhile
// (CLIENT PAUSE WRITE), so that the copy is of one moment: every write
// acknowledged before it is in the copy (appendfsync always), none after.
func (s *redisServer) snapshot(ctx context.Context) error {
	rdb := s.client()
	defer rdb.Close()
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 30000, "WRITE").Err(); err != nil {
		return fmt.Errorf("pause writes: %w", err)
	}
	defer rdb.Do(context.WithoutCancel(ctx), "CLIENT", "UNPAUSE")
	// A rewrite of the append-only file under way changes the files
	// being copied; paused, nothing starts another.
	for {
		info, err := rdb.Info(ctx, "persistence").Result()
		if err != nil {
			return fmt.Errorf("read persistence info: %w", err)
		}
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := os.RemoveAll(s.snapshotDir()); err != nil {
		return err
	}
	return copyDir(s.dataDir, s.snapshotDir())
}

// rewind kills redis-server with SIGKILL and starts it again on the copy
// snapshot took: whatever it acknowledged since is gone, as when a disk
// is restored from a backup or a replica that had not received the last
// writes is promoted.
func (s *redisServer) rewind(ctx context.Context) (time.Duration, error) {
	began := time.Now()
	if _, err := os.Stat(s.snapshotDir()); err != nil {
		return 0, fmt.Errorf("no snapshot to rewind to: %w", err)
	}
	if err := s.kill(); err != nil {
		return 0, err
	}
	if err := os.RemoveAll(s.dataDir); err != nil {
		return 0, err
	}
	if err := copyDir(s.snapshotDir(), s.dataDir); err != nil {
		return 0, fmt.Errorf("restore the snapshot: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

// copyDir copies the directory src, its files and subdirectories, to dst,
// which must not exist.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, info.Mode().Perm())
		case !info.Mode().IsRegular():
			return fmt.Errorf("copy %s: not a regular file", path)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", path, err)
		}
		return out.Close()
	})
}

func (s *redisServer) stop(logger *slog.Logger) {
	if s.child == nil {
		return
	}
	if err := s.child.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		logger.Warn("chaos: stop redis", "err", err)
	}
}
