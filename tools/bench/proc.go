package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownedEnv are the variables the bench sets for the processes it starts,
// or keeps from them. Tracing is off: all traffic stays on this machine,
// and the figures are those of the default set-up, with its log line per
// request and per message (LOG_LEVEL passes through, to measure what they
// cost), and its operations listener (OPS_ADDR, METRICS_ADDR its old
// name), on a port of each process's own. Customers' tokens are verified
// with the run's secret, as deployed (no ORDERSTREAM_DEV, no identity
// provider), and the rate limits are off unless a measurement turns them
// on (RATE_LIMIT_PER_S): every request comes from 127.0.0.1, and a load
// measures the application, not its limits. For the same reason one
// address may hold as many connections as the loads open.
var ownedEnv = []string{"DATABASE_URL", "REDIS_URL", "STREAM_PREFIX", "HTTP_ADDR", "ADMIN_TOKEN",
	"LOG_FORMAT", "METRICS_ADDR", "OPS_ADDR", "PPROF_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"AUTH_JWT_SECRET", "AUTH_JWKS_URL", "AUTH_JWT_ISSUER", "AUTH_JWT_AUDIENCE", "ORDERSTREAM_DEV",
	"RATE_LIMIT_PER_S", "RATE_LIMIT_BURST", "HTTP_MAX_CONNS", "HTTP_MAX_CONNS_PER_CLIENT"}

// proc is one process the bench started: orderstream, or a Redis of its own.
type proc struct {
	name    string // "orderstream forwarder", "redis-server"
	ops     string // the operations listener's address: /metrics, /debug/pprof/
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	err     error // how it ended; read after exited is closed
}

// start runs the binary under test with command ("all", "api", "forwarder",
// "worker") on the bench database, under prefix, its output appended to a
// log file, with an operations listener of its own.
func (s *stage) start(command, prefix string, extraEnv ...string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ops := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(s.opts.bin, command)
	// extraEnv comes last: of a variable set twice, the last counts.
	cmd.Env = append(append(s.childEnv(prefix), "OPS_ADDR="+ops), extraEnv...)
	p, err := spawn("orderstream "+command, filepath.Join(s.dir, command+".log"), cmd)
	if err != nil {
		return nil, err
	}
	p.ops = ops
	return p, nil
}

// spawn starts cmd, named name in messages, its output appended to the
// file at logPath. The child gets SIGKILL should the bench die, so nothing
// outlives an interrupted run.
func spawn(name, logPath string, cmd *exec.Cmd) (*proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open process log: %w", err)
	}
	defer log.Close() // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// childEnv is the bench's environment with the owned variables replaced.
// The application's other knobs (say WORKER_CONCURRENCY) pass through, so
// that other settings can be measured; the report lists those set.
func (s *stage) childEnv(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(ownedEnv, k) {
			env = append(env, kv)
		}
	}
	conns := strconv.Itoa(max(4096, 2*s.opts.maxInFlight, 2*s.opts.clients))
	env = append(env, s.creds.Env()...)
	return append(env,
		"DATABASE_URL="+s.dbURL(),
		"REDIS_URL="+s.redisURL,
		"STREAM_PREFIX="+prefix,
		"RATE_LIMIT_PER_S=0",
		"HTTP_MAX_CONNS="+conns,
		"HTTP_MAX_CONNS_PER_CLIENT="+conns,
	)
}

// migrate applies the migrations to the bench database and waits for it.
func (s *stage) migrate(ctx context.Context) error {
	p, err := s.start("migrate", s.prefix)
	if err != nil {
		return err
	}
	select {
	case <-p.exited:
		if p.err != nil {
			return fmt.Errorf("orderstream migrate: %w (see %s)", p.err, filepath.Join(s.dir, "migrate.log"))
		}
		return nil
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	_ = p.stop()
	return errors.New("orderstream migrate did not finish within a minute")
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop asks the process to shut down gracefully and kills it after 15 s.
func (p *proc) stop() error {
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("%s did not stop within 15s of SIGTERM; killed", p.name)
}

// memory returns the process's peak resident set (VmHWM) and the current
// one (VmRSS), in bytes.
func (p *proc) memory() (peak, now int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0, fmt.Errorf("read process status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || key != "VmHWM" && key != "VmRSS" {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", key, err)
		}
		if key == "VmHWM" {
			peak = kb << 10
		} else {
			now = kb << 10
		}
	}
	return peak, now, nil
}

// waitReady polls GET /readyz until the API answers 200, the process exits
// or a minute passes.
func waitReady(ctx context.Context, p *proc, base string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited while starting: %v", p.name, p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within a minute", p.name)
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAPI starts `orderstream all` (or api) on a free port and waits until
// it is ready; it returns the process and its base URL.
func (s *stage) startAPI(ctx context.Context, command, prefix string, extraEnv ...string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := s.start(command, prefix, append([]string{"HTTP_ADDR=" + addr}, extraEnv...)...)
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := waitReady(ctx, p, base); err != nil {
		_ = p.stop()
		return nil, "", err
	}
	return p, base, nil
}
