package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// config is everything the environment can set. Each knob, its variable and
// its default are listed in docs/operating.md.
type config struct {
	DatabaseURL string
	RedisURL    string
	HTTPAddr    string
	// OpsAddr is the operations listener's address; "" for none.
	OpsAddr    string
	AdminToken string
	// The keys of customers' and administrators' JWTs: a secret (HS256)
	// or an identity provider's JWKS, with the issuer and audience a
	// token must name, when set.
	AuthJWTSecret, AuthJWKSURL     string
	AuthJWTIssuer, AuthJWTAudience string
	// Dev allows the development secrets (ORDERSTREAM_DEV=true).
	Dev bool
	// Requests a second per client, and its burst; 0: no rate limits.
	RateLimitPerS, RateLimitBurst int
	// TrustedProxies are the proxies whose X-Forwarded-For and
	// X-Request-ID are believed.
	TrustedProxies []*net.IPNet
	// HTTPMaxConns bounds the public listener's connections, and
	// HTTPMaxConnsPerClient one address's (a trusted proxy's are not).
	HTTPMaxConns, HTTPMaxConnsPerClient int
	IdempotencyKeyTTL                   time.Duration
	LogLevel                            string
	LogFormat                           string
	StreamPrefix                        string
	// Replicas that must have each entry orderstream writes before the
	// write counts as done (WAIT); 0 waits for none.
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration

	// DatabaseSessionURL is what needs a session of its own connects to,
	// "" for DatabaseURL (see sessionURL).
	DatabaseSessionURL string
	// DatabasePooler is what DatabaseURL reaches: "" PostgreSQL itself,
	// "pgbouncer" PgBouncer in transaction pooling mode.
	DatabasePooler string

	DBMaxConns         int
	RequestTimeout     time.Duration
	OutboxPollInterval time.Duration
	OutboxBatchSize    int
	OutboxShards       int
	HandlerTimeout     time.Duration
	HandlerMaxRetries  int
	WorkerConcurrency  int
	StreamClaimIdle    time.Duration
	ParkBackoffInitial time.Duration
	ParkBackoffMax     time.Duration
	ParkSurfaceAfter   time.Duration
	// Server-side limits of orderstream's own sessions.
	DBIdleInTransactionTimeout time.Duration
	DBLockTimeout              time.Duration
	ShutdownTimeout            time.Duration
	StartupTimeout             time.Duration
	CleanupInterval            time.Duration
	OutboxRetention            time.Duration
	InboxRetention             time.Duration
	StreamRetention            time.Duration
	OrderSettleTimeout         time.Duration
	MetricsInterval            time.Duration
	OTLPEndpoint               string
	ServiceName                string
}

func loadConfig(getenv func(string) string) (config, error) {
	str := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var errs []error
	num := func(name string, def, min int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number of at least %d", name, v, min))
		}
		return n
	}
	dur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 250ms or 2s", name, v))
		}
		return d
	}
	c := config{
		DatabaseURL: str("DATABASE_URL", "postgres://postgres@localhost:5432/orderstream?sslmode=disable"),
		RedisURL:    str("REDIS_URL", "redis://localhost:6379/0"),
		HTTPAddr:    str("HTTP_ADDR", ":8080"),
		// METRICS_ADDR is its old name, from when it served only /metrics.
		OpsAddr:         str("OPS_ADDR", str("METRICS_ADDR", defaultOpsAddr)),
		AdminToken:      getenv("ADMIN_TOKEN"),
		AuthJWTSecret:   getenv("AUTH_JWT_SECRET"),
		AuthJWKSURL:     getenv("AUTH_JWKS_URL"),
		AuthJWTIssuer:   getenv("AUTH_JWT_ISSUER"),
		AuthJWTAudience: getenv("AUTH_JWT_AUDIENCE"),
		Dev:             getenv("ORDERSTREAM_DEV") == "true",

		RateLimitPerS:         num("RATE_LIMIT_PER_S", 50, 0),
		RateLimitBurst:        num("RATE_LIMIT_BURST", 100, 1),
		HTTPMaxConns:          num("HTTP_MAX_CONNS", 4096, 1),
		HTTPMaxConnsPerClient: num("HTTP_MAX_CONNS_PER_CLIENT", 64, 1),
		IdempotencyKeyTTL:     dur("IDEMPOTENCY_KEY_TTL", 24*time.Hour),
		LogLevel:              str("LOG_LEVEL", "info"),
		LogFormat:             str("LOG_FORMAT", "text"),
		StreamPrefix:          getenv("STREAM_PREFIX"),

		RedisWaitReplicas: num("REDIS_WAIT_REPLICAS", 0, 0),
		RedisWaitTimeout:  dur("REDIS_WAIT_TIMEOUT", redisstreams.DefaultWaitTimeout),

		DatabaseSessionURL: getenv("DATABASE_SESSION_URL"),
		DatabasePooler:     getenv("DATABASE_POOLER"),

		DBMaxConns:         num("DB_MAX_CONNS", 20, 2),
		RequestTimeout:     dur("HTTP_REQUEST_TIMEOUT", 10*time.Second),
		OutboxPollInterval: dur("OUTBOX_POLL_INTERVAL", time.Second),
		OutboxBatchSize:    num("OUTBOX_BATCH_SIZE", 1000, 1),
		OutboxShards:       num("OUTBOX_SHARDS", 1, 1),
		HandlerTimeout:     dur("HANDLER_TIMEOUT", 5*time.Second),
		HandlerMaxRetries:  num("HANDLER_MAX_RETRIES", 3, 0),
		WorkerConcurrency:  num("WORKER_CONCURRENCY", 8, 1),
		StreamClaimIdle:    dur("STREAM_CLAIM_IDLE", time.Minute),
		ParkBackoffInitial: dur("PARK_BACKOFF_INITIAL", time.Second),
		ParkBackoffMax:     dur("PARK_BACKOFF_MAX", time.Minute),
		ParkSurfaceAfter:   dur("PARK_SURFACE_AFTER", 5*time.Minute),

		DBIdleInTransactionTimeout: dur("DB_IDLE_IN_TRANSACTION_TIMEOUT", 15*time.Second),
		DBLockTimeout:              dur("DB_LOCK_TIMEOUT", 100*time.Millisecond),
		ShutdownTimeout:            dur("SHUTDOWN_TIMEOUT", 30*time.Second),
		StartupTimeout:             dur("STARTUP_TIMEOUT", time.Minute),
		CleanupInterval:            dur("CLEANUP_INTERVAL", time.Minute),
		OutboxRetention:            dur("OUTBOX_RETENTION", 24*time.Hour),
		InboxRetention:             dur("INBOX_RETENTION", 7*24*time.Hour),
		StreamRetention:            dur("STREAM_RETENTION", 24*time.Hour),
		OrderSettleTimeout:         dur("ORDER_SETTLE_TIMEOUT", time.Minute),
		MetricsInterval:            dur("METRICS_INTERVAL", 5*time.Second),
		OTLPEndpoint:               getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
		ServiceName:                str("OTEL_SERVICE_NAME", "orderstream"),
	}
	// An entry stays pending while its handler runs and retries and the
	// message is parked; another consumer must not claim it meanwhile.
	if worst := c.worstHandlingTime(); c.StreamClaimIdle <= worst {
		errs = append(errs, fmt.Errorf("STREAM_CLAIM_IDLE=%s must exceed the longest a message can be handled (%s: HANDLER_TIMEOUT × (HANDLER_MAX_RETRIES+2) plus backoff)", c.StreamClaimIdle, worst))
	}
	if c.OutboxShards > postgres.MaxOutboxShards {
		errs = append(errs, fmt.Errorf("OUTBOX_SHARDS=%d: at most %d (the outbox tables there are)", c.OutboxShards, postgres.MaxOutboxShards))
	}
	if err := c.checkPooler(); err != nil {
		errs = append(errs, err)
	}
	if getenv("PPROF_ADDR") != "" {
		errs = append(errs, errors.New("PPROF_ADDR is gone: Go's profiles are on the operations listener, OPS_ADDR, under /debug/pprof/"))
	}
	if c.OpsAddr == "off" {
		c.OpsAddr = ""
	}
	proxies, err := parseCIDRs(getenv("TRUSTED_PROXIES"))
	if err != nil {
		errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %w", err))
	}
	c.TrustedProxies = proxies
	if c.ParkBackoffMax < c.ParkBackoffInitial {
		errs = append(errs, fmt.Errorf("PARK_BACKOFF_MAX=%s must be at least PARK_BACKOFF_INITIAL=%s", c.ParkBackoffMax, c.ParkBackoffInitial))
	}
	return c, errors.Join(errs...)
}

// checkPooler checks that behind PgBouncer what needs a session of its
// own has one: through transaction pooling, a LISTEN would hear nothing
// and the migrations' advisory lock would stay on a session that others'
// transactions then run on.
func (c config) checkPooler() error {
	switch {
	case c.DatabasePooler != "" && c.DatabasePooler != "pgbouncer":
		return fmt.Errorf("DATABASE_POOLER=%q: want pgbouncer, or nothing for PostgreSQL itself", c.DatabasePooler)
	case c.DatabasePooler == "pgbouncer" && (c.DatabaseSessionURL == "" || c.DatabaseSessionURL == c.DatabaseURL):
		return errors.New("DATABASE_POOLER=pgbouncer needs DATABASE_SESSION_URL, another URL than DATABASE_URL: " +
			"PostgreSQL itself, for LISTEN, the migrations' lock and the operator commands")
	}
	return nil
}

// sessionURL is the URL of what needs a session of its own (LISTEN, the
// migrations under their session-level lock, the operator commands with
// their read-only sessions), and the variable that set it.
func (c config) sessionURL() (url, variable string) {
	if c.DatabaseSessionURL != "" {
		return c.DatabaseSessionURL, "DATABASE_SESSION_URL"
	}
	return c.DatabaseURL, "DATABASE_URL"
}

// worstHandlingTime is the longest one delivery of a message can hold its
// entry with every attempt timing out: the attempts, the backoff between
// them (at most 5 s each, with 20% jitter) and parking it (one statement,
// bounded by HANDLER_TIMEOUT too). A parked message's entry is acked; it
// comes back as a new entry, so the parked wait does not count.
func (c config) worstHandlingTime() time.Duration {
	attempts := time.Duration(c.HandlerMaxRetries + 1)
	return attempts*c.HandlerTimeout + time.Duration(c.HandlerMaxRetries)*6*time.Second + c.HandlerTimeout
}

// defaultOpsAddr is where the operations listener is by default: loopback,
// reached by what runs on the host (Prometheus, an operator) and nothing
// else.
const defaultOpsAddr = "127.0.0.1:9090"

// parseCIDRs reads a comma-separated list of CIDRs (10.0.0.0/8) or single
// addresses (10.0.0.7).
func parseCIDRs(s string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip := net.ParseIP(f)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither an address nor a CIDR", f)
			}
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			f = fmt.Sprintf("%s/%d", ip, bits)
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR", f)
		}
		nets = append(nets, n)
	}
	return nets, nil
}
