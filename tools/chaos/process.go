package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// restartDelay is how long the supervisor waits before starting a process
// that exited again, as an orchestrator would.
const restartDelay = 500 * time.Millisecond

// proc is one application process under supervision: whenever it exits, for
// whatever reason, it is started again after restartDelay.
type proc struct {
	name    string
	path    string
	args    []string
	env     []string
	logPath string
	logger  *slog.Logger
	ops     string // its operations listener (OPS_ADDR): metrics, the live page

	mu       sync.Mutex
	cur      *child
	since    time.Time // when cur started
	killed   bool      // cur was killed or stopped by the chaos
	held     bool      // stopped on purpose: not started again until released
	starts   int
	unforced int      // exits the harness did not cause
	notes    []string // why, for the first few of them
}

// shape is how many processes of each command a cluster runs.
type shape struct{ apis, forwarders, workers int }

// chaosShape is the faults' cluster: two apis, two forwarders sharing four
// outbox shards (unless OUTBOX_SHARDS says otherwise), three workers.
// soakShape is the split deployment of docs/scaling.md at its smallest:
// one of each, on the application's defaults.
var (
	chaosShape = shape{apis: 2, forwarders: 2, workers: 3}
	soakShape  = shape{apis: 1, forwarders: 1, workers: 1}
)

// cluster is the application: the processes of a shape.
type cluster struct {
	procs   []*proc
	apiURLs []string
	cancel  context.CancelFunc
	stopped sync.WaitGroup
}

// servers are the URLs the application processes reach PostgreSQL and Redis
// at: the servers' own, or something in between (a proxy that injects
// network faults) when it is started first. With -pgbouncer, databaseURL
// reaches PostgreSQL through PgBouncer and sessionURL reaches PostgreSQL
// itself (DATABASE_SESSION_URL); without, sessionURL is empty.
type servers struct{ databaseURL, sessionURL, redisURL string }

// startCluster starts the processes, each reaching the servers at the URLs
// route gives for its name (a proxy of its own, for the network faults),
// with env (the run's secrets, say) added to every one's environment.
//
// Every serving process opens an operations listener (OPS_ADDR), by
// default on one fixed port: each gets a port of its own, or all but the
// first would fail to start. The harness reads nothing there (the public
// /readyz says whether an api is ready); the addresses are logged, for a
// look at the live page or the metrics while a run goes on.
func startCluster(logger *slog.Logger, bin, dir string, sh shape, route func(process string) (servers, error), env ...string) (*cluster, error) {
	// Held until every proxy is up: the proxies listen on port 0.
	var held heldPorts
	defer held.release()
	ports := make([]int, sh.apis)
	for i := range ports {
		port, err := held.take()
		if err != nil {
			return nil, err
		}
		ports[i] = port
	}
	base := append(append(inheritedEnv(), env...),
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		// The load must not be throttled: every client is on 127.0.0.1,
		// and the checks count on each order being accepted.
		"RATE_LIMIT_PER_S=0",
	)
	if sh.forwarders > 1 && os.Getenv("OUTBOX_SHARDS") == "" {
		base = append(base, "OUTBOX_SHARDS=4")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{cancel: cancel}
	for _, port := range ports {
		c.apiURLs = append(c.apiURLs, fmt.Sprintf("http://127.0.0.1:%d", port))
	}
	var routeErr error
	add := func(name, command string, extra ...string) {
		at, err := route(name)
		if err != nil {
			routeErr = errors.Join(routeErr, fmt.Errorf("route %s: %w", name, err))
			return
		}
		port, err := held.take()
		if err != nil {
			routeErr = errors.Join(routeErr, fmt.Errorf("operations listener of %s: %w", name, err))
			return
		}
		ops := fmt.Sprintf("127.0.0.1:%d", port)
		env := append(append([]string(nil), base...), "DATABASE_URL="+at.databaseURL, "REDIS_URL="+at.redisURL, "OPS_ADDR="+ops)
		if at.sessionURL != "" {
			env = append(env, "DATABASE_POOLER=pgbouncer", "DATABASE_SESSION_URL="+at.sessionURL)
		}
		c.procs = append(c.procs, &proc{
			name:    name,
			path:    bin,
			args:    []string{command},
			env:     append(env, extra...),
			logPath: filepath.Join(dir, name+".log"),
			logger:  logger,
			ops:     ops,
		})
	}
	for i, port := range ports {
		add(fmt.Sprintf("api-%d", i+1), "api", fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", port))
	}
	for i := range sh.forwarders {
		add(fmt.Sprintf("forwarder-%d", i+1), "forwarder")
	}
	for i := range sh.workers {
		add(fmt.Sprintf("worker-%d", i+1), "worker")
	}
	if routeErr != nil {
		cancel()
		return nil, routeErr
	}
	var ops []string
	for _, p := range c.procs {
		ops = append(ops, p.name+"=http://"+p.ops+"/")
	}
	logger.Info("chaos: operations listeners (live page, metrics)", "ops", strings.Join(ops, " "))
	held.release()
	for _, p := range c.procs {
		c.stopped.Add(1)
		go func() {
			defer c.stopped.Done()
			p.supervise(ctx)
		}()
	}
	return c, nil
}

// inheritedEnv is the harness's environment without the variables that
// would point the processes at other servers (DATABASE_SESSION_URL and
// DATABASE_POOLER among them: the harness sets both with -pgbouncer,
// neither without), make them collide with each other (OPS_ADDR, and
// METRICS_ADDR, its old name), hide their streams from the checks, refuse
// the harness's tokens (another key, issuer or audience), throttle the
// load, or accept development secrets
// (ORDERSTREAM_DEV: the harness runs as deployed). The remaining knobs pass
// through, to try other settings: among them STREAM_CLAIM_IDLE,
// HANDLER_TIMEOUT, HANDLER_MAX_RETRIES, WORKER_CONCURRENCY, SHUTDOWN_TIMEOUT,
// PARK_BACKOFF_INITIAL, PARK_BACKOFF_MAX, PARK_SURFACE_AFTER,
// DB_LOCK_TIMEOUT, DB_IDLE_IN_TRANSACTION_TIMEOUT and ORDER_SETTLE_TIMEOUT
// (1 min, as deployed, when the environment sets none). The
// harness reads those its own bounds depend on from its environment too
// (knobs), with config.go's defaults, so that both see the same values.
func inheritedEnv() []string {
	owned := []string{"DATABASE_URL", "DATABASE_SESSION_URL", "DATABASE_POOLER", "REDIS_URL",
		"HTTP_ADDR", "ADMIN_TOKEN", "LOG_FORMAT", "LOG_LEVEL",
		"OUTBOX_POLL_INTERVAL", "STREAM_PREFIX", "METRICS_ADDR", "OPS_ADDR",
		"AUTH_JWT_SECRET", "AUTH_JWKS_URL", "AUTH_JWT_ISSUER", "AUTH_JWT_AUDIENCE", "ORDERSTREAM_DEV",
		"RATE_LIMIT_PER_S", "HTTP_MAX_CONNS_PER_CLIENT"}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(owned, k) {
			env = append(env, kv)
		}
	}
	return env
}

// stop ends supervision and stops every process gracefully (SIGTERM), or
// with SIGKILL after a while.
func (c *cluster) stop() {
	c.cancel()
	c.stopped.Wait()
}

// allRunning reports whether every process has been up for at least minUp;
// otherwise the error names those that are not.
func (c *cluster) allRunning(minUp time.Duration) error {
	var errs []error
	for _, p := range c.procs {
		p.mu.Lock()
		if p.cur == nil || !p.cur.running() {
			errs = append(errs, fmt.Errorf("%s is not running", p.name))
		} else if up := time.Since(p.since); up < minUp {
			errs = append(errs, fmt.Errorf("%s up for only %s", p.name, up.Round(time.Millisecond)))
		}
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

// counts returns the starts and the exits not caused by the chaos, over
// every process, and notes on the latter.
func (c *cluster) counts() (starts, unforced int, notes []string) {
	for _, p := range c.procs {
		p.mu.Lock()
		starts += p.starts
		unforced += p.unforced
		notes = append(notes, p.notes...)
		p.mu.Unlock()
	}
	return starts, unforced, notes
}

func (p *proc) supervise(ctx context.Context) {
	for ctx.Err() == nil {
		if p.isHeld() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		c, err := p.start()
		if err != nil {
			p.logger.Error("chaos: start process", "process", p.name, "err", err)
		} else {
			select {
			case <-c.exited:
				p.exited(c)
			case <-ctx.Done():
				if err := c.stop(syscall.SIGTERM, 15*time.Second); err != nil {
					p.logger.Warn("chaos: stop process", "process", p.name, "err", err)
				}
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(restartDelay):
		}
	}
}

func (p *proc) start() (*child, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := appendLine(p.logPath, fmt.Sprintf("--- chaos: starting %s (%s %v)", p.name, p.path, p.args)); err != nil {
		return nil, err
	}
	c, err := startChildEnv(p.logPath, nil, p.env, p.path, p.args...)
	if err != nil {
		return nil, err
	}
	p.cur, p.since, p.killed = c, time.Now(), false
	p.starts++
	return c, nil
}

// exited records how the process ended. An exit the chaos did not cause
// (a crash, or giving up on an unreachable database) is worth a look.
func (p *proc) exited(c *child) {
	p.mu.Lock()
	defer p.mu.Unlock()
	status := exitStatus(c)
	defer func() {
		_ = appendLine(p.logPath, fmt.Sprintf("--- chaos: %s pid %d ended: %s", p.name, c.pid(), status))
	}()
	if !p.killed {
		p.unforced++
		last := lastLine(p.logPath)
		p.logger.Warn("chaos: process exited by itself", "process", p.name, "pid", c.pid(), "status", status, "last_line", last)
		if len(p.notes) < maxExamples {
			p.notes = append(p.notes, fmt.Sprintf("%s pid %d exited by itself (%s): %s", p.name, c.pid(), status, last))
		}
	}
}

func (p *proc) isHeld() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// hold stops every process with SIGTERM (SIGKILL after limit) and keeps
// them stopped until release: for a while the cluster takes no part in
// the run.
func (c *cluster) hold(limit time.Duration) {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		p.mu.Lock()
		p.held = true
		p.mu.Unlock()
		wg.Go(func() {
			// One started just before the hold was set is stopped too.
			for range 3 {
				if _, ok := p.terminate(limit); !ok {
					time.Sleep(2 * restartDelay)
					if _, ok := p.terminate(limit); !ok {
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// release lets the supervisor start the held processes again.
func (c *cluster) release() {
	for _, p := range c.procs {
		p.mu.Lock()
		p.held = false
		p.mu.Unlock()
	}
}

// kill SIGKILLs the process if it runs, and reports whether it did.
func (p *proc) kill() (pid int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || !p.cur.running() {
		return 0, false
	}
	p.killed = true
	p.cur.signal(syscall.SIGKILL)
	return p.cur.pid(), true
}

// knob is the duration the processes read from the environment variable
// name (they inherit the harness's), or def, config.go's default.
func knob(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}
