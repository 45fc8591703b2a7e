package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is one run of a program whose output goes to a log file.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // how it ended; read after exited is closed
}

// startChild runs path with args, appending its stdout and stderr to
// logPath, as cred when not nil. The child gets SIGKILL when the harness
// dies, so nothing outlives a harness that is itself killed.
func startChild(logPath string, cred *syscall.Credential, path string, args ...string) (*child, error) {
	return startChildEnv(logPath, cred, nil, path, args...)
}

// startChildEnv is startChild with env as the whole environment (nil: the
// harness's).
func startChildEnv(logPath string, cred *syscall.Credential, env []string, path string, args ...string) (*child, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// running reports whether the child has not exited yet.
func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// signal sends sig unless the child has already exited.
func (c *child) signal(sig syscall.Signal) {
	if c.running() {
		_ = c.cmd.Process.Signal(sig)
	}
}

// stop sends sig and waits up to timeout for the child to exit, then kills it.
func (c *child) stop(sig syscall.Signal, timeout time.Duration) error {
	c.signal(sig)
	select {
	case <-c.exited:
		return nil
	case <-time.After(timeout):
	}
	c.signal(syscall.SIGKILL)
	<-c.exited
	return fmt.Errorf("pid %d did not exit within %s of %v; killed", c.pid(), timeout, sig)
}

// waitFor polls probe until it succeeds, the child exits, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, c *child, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited while starting (%v); see its log", c.cmd.Path, c.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %w", c.cmd.Path, timeout, errors.Join(ctx.Err(), last))
		case <-time.After(100 * time.Millisecond):
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

// heldPorts finds free ports on 127.0.0.1 and keeps a listener on each
// until release. A port found free and let go at once (freePort) can be
// handed to the next listener on port 0, such as the proxy of a process
// routed after it, before its own process starts.
type heldPorts []net.Listener

func (h *heldPorts) take() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	*h = append(*h, l)
	return l.Addr().(*net.TCPAddr).Port, nil
}

// release lets the ports go, for their processes to listen on.
func (h *heldPorts) release() {
	for _, l := range *h {
		l.Close()
	}
	*h = nil
}

// lastLine is the last line a process wrote before the harness's own
// "ended" line: usually the error it exited with.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 8 << 10
	var off int64
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		off = fi.Size() - tail
	}
	b := make([]byte, tail)
	n, _ := f.ReadAt(b, off)
	lines := strings.Split(strings.TrimRight(string(b[:n]), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], "--- chaos:") {
			return lines[i]
		}
	}
	return ""
}

// appendLine adds a line of the harness's own to a process's log.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	_, err = fmt.Fprintln(f, line)
	return errors.Join(err, f.Close())
}
