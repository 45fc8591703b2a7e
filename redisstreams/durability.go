package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
// It returns what is unsafe (nothing: every acknowledged entry is on disk
// before the answer), or an error when the settings cannot be read, as on a
// managed Redis that refuses CONFIG.
func RedisDurability(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
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
		logger.Info("cannot check that Redis keeps what it acknowledged; it must run with appendonly yes and appendfsync always (see the README)", "err", err)
	case len(unsafe) > 0:
		logger.Warn("Redis can lose stream entries it acknowledged, and with them events whose outbox rows are already acked: run it with appendonly yes and appendfsync always (see the README)",
			"problems", strings.Join(unsafe, "; "))
	}
}
