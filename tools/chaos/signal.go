package main

import (
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopped is how a process stopped with SIGTERM ended.
type stopped struct {
	pid      int
	status   string // "exit status 0" for a clean exit
	timedOut bool   // it did not exit in time and was SIGKILLed
}

// terminate stops the process as an orchestrator would, with SIGTERM, and
// waits up to limit for it to exit, SIGKILLing it then. The supervisor
// starts it again as after any exit. ok is false when it was not running.
func (p *proc) terminate(limit time.Duration) (s stopped, ok bool) {
	p.mu.Lock()
	c := p.cur
	if c == nil || !c.running() {
		p.mu.Unlock()
		return s, false
	}
	p.killed = true
	p.mu.Unlock()
	s.pid = c.pid()
	s.timedOut = c.stop(syscall.SIGTERM, limit) != nil
	s.status = exitStatus(c)
	return s, true
}

// upFor returns the pid of the process if it has run for at least minUp.
func (p *proc) upFor(minUp time.Duration) (pid int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || !p.cur.running() || time.Since(p.since) < minUp {
		return 0, false
	}
	return p.cur.pid(), true
}

// pause stops (SIGSTOP) or resumes (SIGCONT) the process where it is,
// without ending it.
func (p *proc) pause(stop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return
	}
	if stop {
		p.cur.signal(syscall.SIGSTOP)
	} else {
		p.cur.signal(syscall.SIGCONT)
	}
}

// named returns the processes whose names start with prefix.
func (c *cluster) named(prefix string) []*proc {
	var out []*proc
	for _, p := range c.procs {
		if strings.HasPrefix(p.name, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// pauseWorkers stops the workers (SIGSTOP) and returns what resumes them,
// once however often it is called.
func (c *cluster) pauseWorkers() (resume func()) {
	workers := c.named("worker")
	for _, w := range workers {
		w.pause(true)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, w := range workers {
				w.pause(false)
			}
		})
	}
}

// exitStatus is how an exited child ended, as "exit status 0" or
// "signal: killed".
func exitStatus(c *child) string {
	var exitErr *exec.ExitError
	if errors.As(c.err, &exitErr) {
		return exitErr.Error()
	}
	return "exit status 0"
}
