package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// durableRedis is a redis-server of the bench's own on 127.0.0.1 at a free
// port, that acknowledges a write only once it is on disk: the set-up that
// loses no stream entry it acknowledged, which the machine's Redis (REDIS_URL,
// often without an append-only file) need not be. Its figures say what that
// durability costs an order.
type durableRedis struct {
	proc    *proc
	dataDir string
	url     string
}

// durableRedisArgs: every write is fsynced before Redis answers it
// (appendfsync always), also while the file is rewritten, and no snapshot
// competes for the disk.
var durableRedisArgs = []string{"--appendonly", "yes", "--appendfsync", "always",
	"--no-appendfsync-on-rewrite", "no", "--save", ""}

// startDurableRedis starts it with its append-only file in the run's
// directory (st.dir: the temp dir, on disk unless TMPDIR is a tmpfs), and
// waits until it answers and says it fsyncs every write.
func startDurableRedis(ctx context.Context, st *stage) (*durableRedis, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found in PATH: install Redis (Debian/Ubuntu: apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &durableRedis{url: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
	// A directory of each one's own: a run may start more than one.
	if r.dataDir, err = os.MkdirTemp(st.dir, "redis-durable-"); err != nil {
		return nil, fmt.Errorf("create the durable Redis's dir: %w", err)
	}
	if tmpfs(r.dataDir) {
		// fsync to memory costs nothing: the figures would not be those
		// of a durable Redis.
		st.logger.Warn("bench: the durable Redis's files are on tmpfs, where fsync costs nothing; set TMPDIR to a directory on disk",
			"dir", r.dataDir)
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", r.dataDir,
		"--daemonize", "no"}, durableRedisArgs...)
	if r.proc, err = spawn("redis-server", filepath.Join(st.dir, "redis-durable.log"), exec.Command(server, args...)); err != nil {
		return nil, err
	}
	if err := r.waitReady(ctx); err != nil {
		_ = r.stop()
		return nil, err
	}
	return r, nil
}

// waitReady polls until Redis answers, then checks that it runs as asked.
func (r *durableRedis) waitReady(ctx context.Context) error {
	opts, err := redis.ParseURL(r.url)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	deadline := time.Now().Add(30 * time.Second)
	for rdb.Ping(ctx).Err() != nil {
		select {
		case <-r.proc.exited:
			return fmt.Errorf("redis-server exited while starting: %v", r.proc.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("redis-server did not answer PING within 30s")
		}
	}
	got, err := rdb.ConfigGet(ctx, "appendfsync").Result()
	if err != nil {
		return fmt.Errorf("read the durable Redis's appendfsync: %w", err)
	}
	if got["appendfsync"] != "always" {
		return fmt.Errorf("the durable Redis runs with appendfsync %q, want always", got["appendfsync"])
	}
	return nil
}

// stop shuts Redis down and deletes its files.
func (r *durableRedis) stop() error {
	err := r.proc.stop()
	return errors.Join(err, os.RemoveAll(r.dataDir))
}

// onDurableRedis runs measure on the stage with its Redis replaced by a
// durable Redis of the bench's own (startDurableRedis), stopped afterwards.
func onDurableRedis(ctx context.Context, st *stage, measure func(on *stage) error) (err error) {
	server, err := startDurableRedis(ctx, st)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := server.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop the durable Redis: %w", stopErr))
		}
	}()
	on, err := st.onRedis(server.url)
	if err != nil {
		return err
	}
	defer func() {
		_ = on.rdb.Close()
		if on.keep {
			st.keepLogs()
		}
	}()
	return measure(on)
}

// onRedis is the stage with its Redis replaced by the one at url: the
// processes it starts, its streams and its Redis statistics are there. The
// caller closes its client, and carries its keep back (see keepLogs).
func (s *stage) onRedis(url string) (*stage, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	d := *s
	d.redisURL, d.rdb = url, redis.NewClient(opts)
	return &d, nil
}

// tmpfs says whether dir is on a tmpfs.
func tmpfs(dir string) bool {
	var fs syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	return syscall.Statfs(dir, &fs) == nil && fs.Type == tmpfsMagic
}
