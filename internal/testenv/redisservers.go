package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// durableArgs are the settings orderstream asks of every Redis: nothing
// acknowledged is lost when it stops (see redisstreams.RedisDurability).
var durableArgs = []string{"--appendonly", "yes", "--appendfsync", "always", "--no-appendfsync-on-rewrite", "no"}

// startupTimeout bounds the setup of a group of servers: a machine running
// the whole suite at once is slow, and a setup that never converges must
// fail, not hang.
const startupTimeout = 60 * time.Second

// SentinelSet is a master, its replicas and Sentinels watching them, of a
// test's own.
type SentinelSet struct {
	// URL is its REDIS_URL: redis-sentinel://s1,s2,…/0?master=…
	URL string
	// MasterName is the name the Sentinels know the master by.
	MasterName string
	// Sentinels are the Sentinels' addresses.
	Sentinels []string
	// Servers are the addresses of the master and of its replicas as
	// started; a failover changes their roles.
	Servers []string
}

// StartReplicated starts, on free loopback ports in directories of t's
// own, a master and replicas replicas of it, all with the durable
// settings, and returns their addresses, the master's first, once every
// replica has synced. They stop when t ends. Without redis-server, t
// skips, or fails when CI is set.
func StartReplicated(t testing.TB, replicas int) []string {
	t.Helper()
	bin := redisServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	// The master syncs a replica at once, not after the default 5 s wait
	// for more replicas to sync together.
	master := startRedis(t, bin, "master", append([]string{"--repl-diskless-sync-delay", "0"}, durableArgs...)...)
	servers := []string{master}
	for i := range replicas {
		servers = append(servers, startRedis(t, bin, fmt.Sprintf("replica-%d", i),
			append([]string{"--replicaof", "127.0.0.1", portOf(master)}, durableArgs...)...))
	}
	// Streaming to every replica: after a sync the master streams nothing
	// to a replica until its first acknowledgement, which may come a
	// second later, and a WAIT until then counts it out. A write that
	// WAIT sees on every replica is past that.
	rdb := redis.NewClient(&redis.Options{Addr: master, MaxRetries: -1})
	defer rdb.Close()
	waitFor(ctx, t, "the master to stream to every replica", func(ctx context.Context) error {
		var wait *redis.IntCmd
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "testenv:replicated", 1, 0)
			wait = redis.NewIntCmd(ctx, "wait", replicas, 200)
			return p.Process(ctx, wait)
		})
		if err == nil && wait.Val() < int64(replicas) {
			err = fmt.Errorf("a write reached %d of %d replicas", wait.Val(), replicas)
		}
		return err
	})
	return servers
}

// StartSentinelSet starts a master and replicas replicas of it (see
// StartReplicated) and sentinels Sentinels watching them (one is enough
// for SENTINEL FAILOVER, which asks no other), and returns once each
// Sentinel knows every replica and the other Sentinels.
func StartSentinelSet(t testing.TB, replicas, sentinels int) SentinelSet {
	t.Helper()
	bin := redisBinary(t, "redis-sentinel") // Debian's redis-sentinel package
	servers := StartReplicated(t, replicas)
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	const name = "orderstream"
	set := SentinelSet{MasterName: name, Servers: servers}
	for i := range sentinels {
		dir := t.TempDir()
		port := FreePort(t)
		// A Sentinel rewrites its configuration file: one of its own.
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %s %d\n"+
			"sentinel down-after-milliseconds %[3]s 2000\n"+
			"sentinel failover-timeout %[3]s 10000\n", port, dir, name, portOf(servers[0]), sentinels/2+1)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		set.Sentinels = append(set.Sentinels, runRedis(t, bin, fmt.Sprintf("sentinel-%d", i), port, conf))
	}
	// A Sentinel learns the replicas from the master's INFO, the other
	// Sentinels from their hello messages.
	for _, s := range set.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s})
		waitFor(ctx, t, "Sentinel "+s+" to watch the replicas and the other Sentinels", func(ctx context.Context) error {
			found, err := sc.Replicas(ctx, name).Result()
			if err != nil {
				return err
			}
			if len(found) != replicas {
				return fmt.Errorf("replicas %v", found)
			}
			for _, r := range found {
				if r["flags"] != "slave" || r["master-link-status"] != "ok" {
					return fmt.Errorf("replica %v", r)
				}
			}
			m, err := sc.Master(ctx, name).Result()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
				return fmt.Errorf("sees %s other Sentinels", m["num-other-sentinels"])
			}
			return nil
		})
		sc.Close()
	}
	set.URL = "redis-sentinel://" + strings.Join(set.Sentinels, ",") + "/0?master=" + name
	return set
}

// MasterAddr is the address the Sentinels name as the master's.
func (s SentinelSet) MasterAddr(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil {
		return "", fmt.Errorf("ask the Sentinel for the master: %w", err)
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// Failover has the first Sentinel promote the replica (SENTINEL FAILOVER)
// and returns the new master's address once the server there answers as
// master.
func (s SentinelSet) Failover(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	old, err := s.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
	defer sc.Close()
	if err := sc.Failover(ctx, s.MasterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	var now string
	waitFor(ctx, t, "the Sentinels to name a new master", func(ctx context.Context) error {
		if now, err = s.MasterAddr(ctx); err != nil {
			return err
		}
		if now == old {
			return fmt.Errorf("the master is still %s", old)
		}
		return infoHas(ctx, now, "replication", "role:master")
	})
	return now
}

// RedisCluster is a Redis Cluster of a test's own: three masters, the
// slots split between them, no replicas.
type RedisCluster struct {
	// URL is its REDIS_URL: redis-cluster://n1,n2,n3
	URL string
	// Masters are the nodes' addresses.
	Masters []string
}

// StartRedisCluster starts three cluster nodes on free loopback ports,
// each with the durable settings, makes them a cluster as an operator
// does (redis-cli --cluster create: a third of the slots each), and
// returns once every node sees the cluster whole. They stop when t ends.
// Without redis-server or redis-cli, t skips, or fails when CI is set.
func StartRedisCluster(t testing.TB) RedisCluster {
	t.Helper()
	bin, cli := redisServer(t), redisBinary(t, "redis-cli")
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	var c RedisCluster
	const nodes = 3
	for i := range nodes {
		// The bus port is chosen too: the default, port + 10000, may be
		// taken or past 65535.
		bus := FreePort(t)
		addr := startRedis(t, bin, fmt.Sprintf("node-%d", i), append([]string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "5000",
		}, durableArgs...)...)
		c.Masters = append(c.Masters, addr)
	}
	// redis-cli learns each node's bus port from the node.
	create := exec.CommandContext(ctx, cli, append(append([]string{"--cluster", "create"}, c.Masters...), "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range c.Masters {
		waitFor(ctx, t, "node "+addr+" to see the cluster whole", func(ctx context.Context) error {
			return infoOf(ctx, addr, func(ctx context.Context, rdb *redis.Client) (string, error) {
				return rdb.ClusterInfo(ctx).Result()
			}, "cluster_state:ok", "cluster_slots_ok:16384", fmt.Sprintf("cluster_known_nodes:%d", nodes))
		})
	}
	c.URL = "redis-cluster://" + strings.Join(c.Masters, ",")
	return c
}

// redisServer returns the path of redis-server, or skips t (fails it when
// CI is set).
func redisServer(t testing.TB) string {
	t.Helper()
	return redisBinary(t, "redis-server")
}

// redisBinary returns the path of Redis's program name, or skips t (fails
// it when CI is set).
func redisBinary(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required (CI is set): %v", name, err)
		}
		t.Skipf("%s is not installed, skipping: %v", name, err)
	}
	return bin
}

// StartRedis starts a redis-server of t's own with args (its settings can
// then be anything: the shared Redis is never reconfigured) on a free
// loopback port, and returns its address once it listens. It stops when t
// ends. Without redis-server, t skips, or fails when CI is set.
func StartRedis(t testing.TB, args ...string) string {
	t.Helper()
	return startRedis(t, redisServer(t), "private", args...)
}

// startRedis starts a redis-server named name with args on a free
// loopback port, in a directory of its own, and returns its address once
// it listens.
func startRedis(t testing.TB, bin, name string, args ...string) string {
	t.Helper()
	port := FreePort(t)
	return runRedis(t, bin, name, port, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", t.TempDir(), "--save", "", "--daemonize", "no"}, args...)...)
}

// runRedis runs redis-server with args until t ends, and returns its
// address once it listens on port. Its output is logged if t fails.
func runRedis(t testing.TB, bin, name string, port int, args ...string) string {
	t.Helper()
	return runServer(t, exec.Command(bin, args...), "redis-server "+name, port, nil)
}

// runServer runs cmd, the server called name, until t ends (as cred's
// user, when not nil), and returns its address once it listens on the
// loopback port. Its output is logged if t fails.
func runServer(t testing.TB, cmd *exec.Cmd, name string, port int, cred *syscall.Credential) string {
	t.Helper()
	logs := &Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s:\n%s", name, logs.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	// Dialled before any client exists, so that no client logs the
	// refusals.
	waitFor(ctx, t, name+" to listen", func(ctx context.Context) error {
		select {
		case <-exited:
			return fmt.Errorf("exited:\n%s", logs.String())
		default:
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr
}

// FreeAddr returns a loopback address (127.0.0.1:port) no one listened on
// a moment ago: for a server of the test's own, or one nothing listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// FreePort returns a loopback port no one listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// WaitForInfo waits until INFO section of the server at addr has every
// one of lines ("role:master", "connected_slaves:1"), failing t after a
// minute.
func WaitForInfo(t testing.TB, addr, section string, lines ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	waitFor(ctx, t, addr+" to report "+strings.Join(lines, ", "), func(ctx context.Context) error {
		return infoHas(ctx, addr, section, lines...)
	})
}

// infoHas checks that INFO section of the server at addr has each line.
func infoHas(ctx context.Context, addr, section string, lines ...string) error {
	return infoOf(ctx, addr, func(ctx context.Context, rdb *redis.Client) (string, error) {
		return rdb.Info(ctx, section).Result()
	}, lines...)
}

// infoOf checks that what read returns of the server at addr has each line.
func infoOf(ctx context.Context, addr string, read func(context.Context, *redis.Client) (string, error), lines ...string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	text, err := read(ctx, rdb)
	if err != nil {
		return err
	}
	have := strings.Split(strings.ReplaceAll(text, "\r", ""), "\n")
	for _, l := range lines {
		if !slices.Contains(have, l) {
			return fmt.Errorf("no %q in:\n%s", l, text)
		}
	}
	return nil
}

// waitFor retries check every 50 ms until it succeeds, failing t with its
// last error when ctx ends.
func waitFor(ctx context.Context, t testing.TB, what string, check func(context.Context) error) {
	t.Helper()
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
