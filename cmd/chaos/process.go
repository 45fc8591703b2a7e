package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
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

// adminToken guards PUT /inventory on the harness's api.
const adminToken = "chaos-admin-token"

// proc is one application process under supervision: whenever it exits, for
// whatever reason, it is started again after restartDelay.
type proc struct {
	name    string
	path    string
	args    []string
	env     []string
	logPath string
	logger  *slog.Logger

	mu       sync.Mutex
	cur      *child
	since    time.Time // when cur started
	killed   bool      // cur was SIGKILLed by the chaos
	starts   int
	unforced int      // exits the harness did not cause
	notes    []string // why, for the first few of them
}

// cluster is the application: one api, two forwarders, two workers.
type cluster struct {
	procs   []*proc
	apiURL  string
	cancel  context.CancelFunc
	stopped sync.WaitGroup
}

func startCluster(logger *slog.Logger, bin, dir string, pg *pgServer, rd *redisServer, nw *network) (*cluster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := append(inheritedEnv(),
		"DATABASE_URL="+pg.url(dbName),
		"REDIS_URL="+rd.url(),
		"ADMIN_TOKEN="+adminToken,
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
	)
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{apiURL: fmt.Sprintf("http://127.0.0.1:%d", port), cancel: cancel}
	add := func(name, command string, extra ...string) {
		c.procs = append(c.procs, &proc{
			name:    name,
			path:    bin,
			args:    []string{command},
			env:     append(append([]string(nil), base...), extra...),
			logPath: filepath.Join(dir, name+".log"),
			logger:  logger,
		})
	}
	add("api", "api", fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", port))
	add("forwarder-1", "forwarder")
	add("forwarder-2", "forwarder")
	add("worker-1", "worker")
	add("worker-2", "worker")
	if err := nw.route(c.procs); err != nil {
		cancel()
		return nil, err
	}
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
// would point the processes at other servers, make them collide with each
// other or hide their streams from the checks. The remaining knobs (say
// STREAM_CLAIM_IDLE or HANDLER_TIMEOUT) pass through, to try other settings.
func inheritedEnv() []string {
	owned := []string{"DATABASE_URL", "REDIS_URL", "HTTP_ADDR", "ADMIN_TOKEN", "LOG_FORMAT", "LOG_LEVEL",
		"OUTBOX_POLL_INTERVAL", "STREAM_PREFIX", "METRICS_ADDR"}
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
	status := "exit status 0"
	var exitErr *exec.ExitError
	if errors.As(c.err, &exitErr) {
		status = exitErr.Error()
	}
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
