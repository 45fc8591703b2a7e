package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// failoverScenario checks that a Redis failover loses nothing the
// application was told was written (docs/scaling.md): with the processes
// on a master, its replica and three Sentinels (REDIS_URL
// redis-sentinel://…, REDIS_WAIT_REPLICAS=1, so that each XADD is
// acknowledged only once the replica has it), the master is SIGKILLed
// while orders flow, the Sentinels promote the replica, and every order
// must still settle, once, through the promoted master.
//
// The Sentinel set and a cluster of processes against it are the
// scenario's own, started for it and stopped at its end; the harness's
// cluster, on the single Redis, is stopped meanwhile (SIGTERM, nothing
// left pending), since its forwarders share the outbox and would carry
// the scenario's events to the single Redis instead. Both clusters use
// the same database, so the checks over every order cover these too. The
// other scenarios stay on the single Redis, whose crashes and rewinds
// they need. The scenario's streams live on the promoted master: the
// scenario checks there that each order's OrderPlaced is on its stream
// and that none was dead-lettered, and adds what the streams hold to the
// summary's count of redeliveries.
//
// The old master is started again on its data once the replica is
// promoted, as an orchestrator would: the Sentinels make it a replica of
// the new master, and until it is one, no XADD is acknowledged (no
// replica to WAIT for), so the forwarders retry. The orders must settle
// within settleBound of its return; the summary's failover_settled_after
// is how long after the kill the last of them settled.
type failoverScenario struct {
	orders indices
}

// failoverResult is what the summary line and the end-of-run checks take
// from the failover scenario.
type failoverResult struct {
	settledAfter      time.Duration // from the master's kill until the last of the orders settled
	ran               bool
	streams           streamStats // of the promoted master
	starts, selfExits int
	exitNotes         []string
}

// failoverKillAt is the share of the scenario's orders done when the
// master is killed.
const failoverKillAt = 0.3

func (s *failoverScenario) prepare(h *harness) {
	s.orders = h.plan.addOrders("failover", h.opts.failoverOrders, skuNames("CHAOS-FAILOVER", 5)...)
}

func (s *failoverScenario) run(ctx context.Context, h *harness) error {
	h.quiet(ctx, "failover")
	dir := filepath.Join(h.dir, "failover")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create failover dir: %w", err)
	}
	set, err := startSentinelSet(ctx, h.logger, dir)
	if err != nil {
		return err
	}
	defer set.stop(h.logger)

	h.cluster.hold(stopLimit())
	defer func() {
		h.cluster.release()
		h.quiet(ctx, "failover")
	}()
	fc, err := h.spawn(dir, set.url(), "REDIS_WAIT_REPLICAS=1")
	if err != nil {
		return err
	}
	stopped := false
	stopCluster := func() {
		if !stopped {
			stopped = true
			fc.stop()
			h.failover.starts, h.failover.selfExits, h.failover.exitNotes = fc.counts()
		}
	}
	defer stopCluster()
	h.failover.ran = true
	client := newAPIClient(fc.apiURLs, h.opts.clients+4, h.creds)
	if err := waitAllUp(ctx, fc, client); err != nil {
		return fmt.Errorf("the processes on the Sentinel set did not come up: %w", err)
	}
	harnessClient := h.load.client
	h.load.client = client
	defer func() { h.load.client = harnessClient }()

	loadErr := make(chan error, 1)
	go func() { loadErr <- h.load.run(ctx, s.orders, h.opts.clients, h.opts.rate, h.opts.seed) }()
	for h.load.progress() < failoverKillAt {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-loadErr:
			loadErr <- err
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	old := set.servers[0]
	oldAddr := old.addr()
	h.logger.Info("chaos: SIGKILL the Redis master", "addr", oldAddr, "progress", fmt.Sprintf("%.0f%%", 100*h.load.progress()))
	if err := old.kill(); err != nil {
		return err
	}
	killed := time.Now()
	h.faults.add(faultFailover)
	promoted, err := set.waitNewMaster(ctx, oldAddr, time.Minute)
	if err != nil {
		h.found.add("failover", "the Sentinels promoted no replica: %v", err)
		return nil
	}
	h.logger.Info("chaos: the Sentinels promoted the replica", "master", promoted, "after", time.Since(killed).Round(time.Millisecond))
	if err := old.start(ctx); err != nil {
		return fmt.Errorf("start the old master again: %w", err)
	}
	if err := waitReplicaOnline(ctx, promoted, time.Minute); err != nil {
		h.found.add("failover", "the old master did not become a replica of the new one: %v", err)
	}
	calm := time.Now()
	h.logger.Info("chaos: the old master is a replica of the new one", "after_kill", calm.Sub(killed).Round(time.Millisecond))
	if err := <-loadErr; err != nil {
		return err
	}
	h.loadProblems("failover")
	ids := h.load.idsOf(s.orders)

	rdb := redis.NewClient(&redis.Options{Addr: promoted, MaxRetries: -1})
	defer rdb.Close()
	bound, why := settleBound(os.Getenv)
	if err := waitSettled(ctx, h.db, ids, h.opts.settleTimeout); err != nil {
		h.found.add("failover", "the orders placed around the failover did not settle: %v; %s", err, progressOf(ctx, h.db, rdb, "0", ids))
	} else if last, err := lastSettled(ctx, h.db, ids); err != nil {
		h.found.add("failover", "read when the orders settled: %v", err)
	} else {
		h.failover.settledAfter = last.Sub(killed)
		if after := last.Sub(calm); after > bound {
			h.found.add("failover", "the orders settled %s after the old master came back as a replica, want at most %s (%s)",
				after.Round(100*time.Millisecond), bound, why)
		}
	}
	h.logger.Info("chaos: orders placed around the failover", "orders", len(ids),
		"settled_after_kill", h.failover.settledAfter.Round(time.Millisecond), "bound", bound)
	if missing, err := missingFromStream(ctx, rdb, streamPlaced, "0", ids); err != nil {
		h.found.add("failover", "read %s on the promoted master: %v", streamPlaced, err)
	} else if missing > 0 {
		h.found.add("failover", "%d of the %d orders have no OrderPlaced on %s of the promoted master", missing, len(ids), streamPlaced)
	}
	switch dl, err := deadLettersFor(ctx, rdb, ids); {
	case err != nil:
		h.found.add("failover", "read dead letters: %v", err)
	case len(dl) > 0:
		h.found.add("failover", "%d dead letters for the orders placed around the failover, want none (the first: entry %s, order %s)",
			len(dl), dl[0].id, dl[0].orderID)
	}
	stopCluster()
	h.failover.streams = readStreamsFrom(ctx, rdb)
	return nil
}

// waitReplicaOnline waits until the master at addr streams to a replica.
func waitReplicaOnline(ctx context.Context, addr string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	var last error
	for {
		info, err := rdb.Info(ctx, "replication").Result()
		switch {
		case err != nil:
			last = err
		case !strings.Contains(info, "role:master"):
			last = fmt.Errorf("%s is not a master", addr)
		case !strings.Contains(info, "state=online"):
			last = errors.New("no replica online")
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", limit, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sentinelSet is a master, one replica of it and three Sentinels watching
// them, of the harness's own, each server with the durable settings
// orderstream asks of Redis (append-only file, fsync always).
type sentinelSet struct {
	servers   []*redisNode // the master first, as started; a failover changes their roles
	sentinels []*redisNode
}

// sentinelMaster is the name the Sentinels know the master by.
const sentinelMaster = "orderstream"

// redisNode is one redis-server or redis-sentinel of a sentinelSet.
type redisNode struct {
	bin     string
	args    []string
	port    int
	logPath string
	child   *child
}

func (n *redisNode) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

func (n *redisNode) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.addr(), MaxRetries: -1})
}

// start runs the node and waits until it answers PING.
func (n *redisNode) start(ctx context.Context) error {
	c, err := startChild(n.logPath, nil, n.bin, n.args...)
	if err != nil {
		return fmt.Errorf("start %s: %w", n.bin, err)
	}
	n.child = c
	return waitFor(ctx, 30*time.Second, c, func(ctx context.Context) error {
		rdb := n.client()
		defer rdb.Close()
		return rdb.Ping(ctx).Err()
	})
}

// kill SIGKILLs the node and waits until it is gone.
func (n *redisNode) kill() error {
	n.child.signal(syscall.SIGKILL)
	select {
	case <-n.child.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("pid %d still runs 30s after SIGKILL", n.child.pid())
	}
}

func startSentinelSet(ctx context.Context, logger *slog.Logger, dir string) (set *sentinelSet, err error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found in PATH: install Redis (Debian/Ubuntu: apt-get install redis-server)")
	}
	sentinel, err := exec.LookPath("redis-sentinel")
	if err != nil {
		return nil, errors.New("redis-sentinel not found in PATH: install it (Debian/Ubuntu: apt-get install redis-sentinel)")
	}
	set = &sentinelSet{}
	defer func() {
		if err != nil {
			set.stop(logger)
		}
	}()
	durable := []string{"--appendonly", "yes", "--appendfsync", "always", "--no-appendfsync-on-rewrite", "no", "--save", ""}
	for i, name := range []string{"master", "replica"} {
		port, err := freePort()
		if err != nil {
			return set, err
		}
		data := filepath.Join(dir, "redis-"+name)
		if err := os.Mkdir(data, 0o700); err != nil {
			return set, fmt.Errorf("create %s: %w", data, err)
		}
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", data, "--daemonize", "no",
			"--repl-diskless-sync-delay", "0"}, durable...)
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(set.servers[0].port))
		}
		n := &redisNode{bin: server, args: args, port: port, logPath: filepath.Join(dir, "redis-"+name+".log")}
		set.servers = append(set.servers, n)
		if err := n.start(ctx); err != nil {
			return set, err
		}
	}
	// After a sync the master streams nothing to a replica until its
	// first acknowledgement: a write that WAIT sees on the replica is past
	// that.
	if err := waitReplicaOnline(ctx, set.servers[0].addr(), 30*time.Second); err != nil {
		return set, err
	}
	const sentinels = 3
	for i := range sentinels {
		port, err := freePort()
		if err != nil {
			return set, err
		}
		sdir := filepath.Join(dir, fmt.Sprintf("sentinel-%d", i+1))
		if err := os.Mkdir(sdir, 0o700); err != nil {
			return set, err
		}
		// A Sentinel rewrites its configuration file: one of its own.
		conf := filepath.Join(sdir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d %d\n"+
			"sentinel down-after-milliseconds %[3]s 2000\n"+
			"sentinel failover-timeout %[3]s 10000\n", port, sdir, sentinelMaster, set.servers[0].port, sentinels/2+1)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return set, err
		}
		n := &redisNode{bin: sentinel, args: []string{conf}, port: port, logPath: filepath.Join(dir, fmt.Sprintf("sentinel-%d.log", i+1))}
		set.sentinels = append(set.sentinels, n)
		if err := n.start(ctx); err != nil {
			return set, err
		}
	}
	// A Sentinel learns the replica from the master's INFO, the other
	// Sentinels from their hello messages.
	for _, n := range set.sentinels {
		if err := waitSentinelReady(ctx, n.addr(), sentinels-1, time.Minute); err != nil {
			return set, err
		}
	}
	logger.Info("chaos: redis sentinel set started", "master", set.servers[0].addr(), "replica", set.servers[1].addr(), "url", set.url())
	return set, nil
}

// waitSentinelReady waits until the Sentinel at addr sees the replica
// linked to the master and others other Sentinels.
func waitSentinelReady(ctx context.Context, addr string, others int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
	defer sc.Close()
	var last error
	for {
		last = func() error {
			found, err := sc.Replicas(ctx, sentinelMaster).Result()
			if err != nil {
				return err
			}
			if len(found) != 1 || found[0]["flags"] != "slave" || found[0]["master-link-status"] != "ok" {
				return fmt.Errorf("replicas %v", found)
			}
			m, err := sc.Master(ctx, sentinelMaster).Result()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != strconv.Itoa(others) {
				return fmt.Errorf("sees %s other Sentinels", m["num-other-sentinels"])
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Sentinel %s not ready after %s: %w", addr, limit, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// url is the processes' REDIS_URL: the Sentinels, and the master's name.
func (s *sentinelSet) url() string {
	var addrs []string
	for _, n := range s.sentinels {
		addrs = append(addrs, n.addr())
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/0?master=" + sentinelMaster
}

// waitNewMaster waits until every Sentinel names a master other than old
// and the server there answers as master, and returns its address.
func (s *sentinelSet) waitNewMaster(ctx context.Context, old string, limit time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		var now string
		last = func() error {
			for _, n := range s.sentinels {
				sc := redis.NewSentinelClient(&redis.Options{Addr: n.addr()})
				a, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
				sc.Close()
				if err != nil {
					return err
				}
				addr := net.JoinHostPort(a[0], a[1])
				switch {
				case addr == old:
					return fmt.Errorf("Sentinel %s still names %s", n.addr(), old)
				case now != "" && addr != now:
					return fmt.Errorf("the Sentinels name %s and %s", now, addr)
				}
				now = addr
			}
			rdb := redis.NewClient(&redis.Options{Addr: now, MaxRetries: -1})
			defer rdb.Close()
			info, err := rdb.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "role:master") {
				return fmt.Errorf("%s does not answer as master yet", now)
			}
			return nil
		}()
		if last == nil {
			return now, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("after %s: %w", limit, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *sentinelSet) stop(logger *slog.Logger) {
	for _, n := range append(append([]*redisNode(nil), s.sentinels...), s.servers...) {
		if n.child == nil || !n.child.running() {
			continue
		}
		if err := n.child.stop(syscall.SIGTERM, 10*time.Second); err != nil {
			logger.Warn("chaos: stop redis sentinel set", "node", n.addr(), "err", err)
		}
	}
}
