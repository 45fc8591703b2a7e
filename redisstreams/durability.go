package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// durabilityTimeout bounds the start-up check, so that a Redis that does not
// answer delays nothing for long: the processes wait for it anyway.
const durabilityTimeout = 3 * time.Second

// RedisDurability reads the settings that decide whether an entry Redis
// acknowledged survives Redis dying: a host crash, a VM reset, a SIGKILL.
// The forwarder acks an outbox row as soon as XADD returns, and the clean-up
// later deletes the row, so an entry Redis loses after acknowledging it is an
// event lost for good: its order stays pending, and no metric shows it.
//
// It reads the server that takes the writes: the one server, or the master
// of a Sentinel client, or every master of a Cluster (CONFIG GET goes to one
// node only, and each master holds entries of its own slots), each problem
// then named by the master's address. Replicas are not read: a process
// started after a failover reads the new master.
//
// A master with replicas is unsafe too unless each entry waits for them
// (Config.WaitReplicas): replication is asynchronous, so a failover to a
// replica loses what the master acknowledged and had not yet sent it. And
// a wait for more replicas than are connected fails every publish.
//
// It returns what is unsafe (nothing: every acknowledged entry is on disk
// before the answer), or an error when the settings cannot be read, as on a
// managed Redis that refuses CONFIG.
func RedisDurability(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	wait := 0
	if r, ok := rdb.(replicatedClient); ok {
		rdb, wait = r.UniversalClient, r.replicas
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return serverDurability(ctx, rdb, wait)
	}
	var (
		mu     sync.Mutex
		unsafe []string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, master *redis.Client) error {
		addr := master.Options().Addr
		found, err := serverDurability(ctx, master, wait)
		if err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range found {
			unsafe = append(unsafe, addr+": "+p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(unsafe) // the masters answer in any order
	return unsafe, nil
}

// serverDurability reads the settings of the one server rdb writes to,
// whose writes wait for wait replicas.
func serverDurability(ctx context.Context, rdb redis.Cmdable, wait int) ([]string, error) {
	unsafe, err := diskDurability(ctx, rdb)
	if err != nil {
		return nil, err
	}
	replicas, err := connectedReplicas(ctx, rdb)
	if err != nil {
		return nil, err
	}
	switch {
	case replicas > 0 && wait == 0:
		unsafe = append(unsafe, fmt.Sprintf("%d replicas and REDIS_WAIT_REPLICAS is 0: a failover loses the entries the master acknowledged and had not yet replicated", replicas))
	case wait > replicas:
		unsafe = append(unsafe, fmt.Sprintf("REDIS_WAIT_REPLICAS is %d and %d replicas are connected: every publish fails until enough are", wait, replicas))
	}
	return unsafe, nil
}

// connectedReplicas counts the replicas connected to the server of rdb.
func connectedReplicas(ctx context.Context, rdb redis.Cmdable) (int, error) {
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		return 0, fmt.Errorf("read redis replication: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("read redis replication: no connected_slaves")
}

// diskDurability reads the persistence settings of the server of rdb.
func diskDurability(ctx context.Context, rdb redis.Cmdable) ([]string, error) {
	get := func(name string) (string, error) {
		m, err := rdb.ConfigGet(ctx, name).Result()
		if err != nil {
			return "", fmt.Errorf("read redis setting %s: %w", name, err)
		}
		v, ok := m[name]
		if !ok {
			return "", fmt.Errorf("read redis setting %s: not reported", name)
		}
		return strings.ToLower(v), nil
	}
	aof, err := get("appendonly")
	if err != nil {
		return nil, err
	}
	if aof != "yes" {
		return []string{"appendonly is " + aof + ": every entry written since the last snapshot is lost when Redis stops"}, nil
	}
	fsync, err1 := get("appendfsync")
	onRewrite, err2 := get("no-appendfsync-on-rewrite")
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	var unsafe []string
	if fsync != "always" {
		unsafe = append(unsafe, "appendfsync is "+fsync+": the entries acknowledged in the last second or so are lost when the host crashes")
	}
	if onRewrite == "yes" {
		unsafe = append(unsafe, "no-appendfsync-on-rewrite is yes: nothing is synced to disk while the append-only file is rewritten")
	}
	return unsafe, nil
}

// WarnIfNotDurable logs a warning when the Redis of rdb can lose entries it
// acknowledged (see RedisDurability). It never fails: a Redis that cannot be
// asked is only noted, so a managed Redis without CONFIG starts as usual.
func WarnIfNotDurable(ctx context.Context, rdb redis.UniversalClient, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, durabilityTimeout)
	defer cancel()
	unsafe, err := RedisDurability(ctx, rdb)
	switch {
	case err != nil:
		logger.Info("cannot check that Redis keeps what it acknowledged; it must run with appendonly yes and appendfsync always (see docs/operating.md: Redis must keep what it acknowledged)", "err", err)
	case len(unsafe) > 0:
		logger.Warn("Redis can lose stream entries it acknowledged, and with them events whose outbox rows are already acked: run it with appendonly yes and appendfsync always (see docs/operating.md: Redis must keep what it acknowledged)",
			"problems", strings.Join(unsafe, "; "))
	}
}
