package logging

import (
	"context"
	"fmt"
	"log/slog"
)

// Redis adapts logger for go-redis (redis.SetLogger), whose lines would
// otherwise go to stderr unstructured: a Sentinel naming a new master, a
// Cluster node unreachable, a pool that cannot dial. They are Info, so
// that a failover shows in the log of every process it reaches.
func Redis(logger *slog.Logger) RedisLogger { return RedisLogger{logger.With("component", "go-redis")} }

// RedisLogger is the go-redis logger of Redis.
type RedisLogger struct{ logger *slog.Logger }

// Printf logs one line of go-redis.
func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.InfoContext(ctx, fmt.Sprintf(format, v...))
}
