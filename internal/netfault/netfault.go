// Package netfault puts Toxiproxy proxies, run in this process, between an
// orderstream process and PostgreSQL or Redis, so that tests and the chaos
// harness can slow, cut and blackhole one process's link to one server
// without touching the server itself.
package netfault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Server holds the proxies. Its zero value is not usable: call NewServer.
type Server struct {
	api *toxiproxy.ApiServer

	mu      sync.Mutex
	proxies []*Proxy
}

// NewServer returns a Toxiproxy server without its HTTP API: the proxies
// are driven through Go calls.
func NewServer() *Server {
	return &Server{api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// Close stops every proxy and closes the connections through them. A proxy
// that is wedged (see Proxy.Rebuilt) is left behind after a while.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.proxies {
		p.mu.Lock()
		old := p.p
		p.mu.Unlock()
		within(stopWait, old.Stop)
	}
	return nil
}

// Proxy is one listening address on 127.0.0.1 whose connections are
// relayed to one upstream, through the faults added to it.
type Proxy struct {
	s       *Server
	next    atomic.Int64
	rebuilt atomic.Int64

	mu sync.Mutex
	p  *toxiproxy.Proxy
}

// Proxy starts a proxy named name (unique in s) that relays to upstream
// (host:port).
func (s *Server) Proxy(name, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(s.api, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("start proxy %s to %s: %w", name, upstream, err)
	}
	px := &Proxy{s: s, p: p}
	s.mu.Lock()
	s.proxies = append(s.proxies, px)
	s.mu.Unlock()
	return px, nil
}

// Addr is where the proxy listens, host:port.
func (p *Proxy) Addr() string { return p.cur().Listen }

func (p *Proxy) cur() *toxiproxy.Proxy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p
}

// How long taking a toxic away may take before the proxy counts as wedged,
// and how long a wedged proxy is given to let go of its port.
const (
	removeWait = 5 * time.Second
	stopWait   = 5 * time.Second
)

// within runs fn and reports whether it returned within d; otherwise fn
// goes on in the background.
func within(d time.Duration, fn func()) bool {
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Toxiproxy (v2.12.0) can deadlock when a toxic is taken away from a link
// whose connection died while data was in flight: the toxic before it
// waits forever to hand on a chunk nobody reads, its collection stays
// locked, and the proxy accepts no connection any more. Rather than let
// that pass for the application's fault, such a proxy is replaced by a new
// one on the same address, without toxics, and Rebuilt counts it.
func (p *Proxy) unwedge(op func(*toxiproxy.Proxy) error) error {
	old := p.cur()
	var opErr error // read only once op has returned
	if within(removeWait, func() { opErr = op(old) }) {
		return opErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	go old.Stop() // closes the listener at once; the rest may never return
	fresh := toxiproxy.NewProxy(p.s.api, old.Name, old.Listen, old.Upstream)
	deadline := time.Now().Add(stopWait)
	for {
		err := fresh.Start()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replace wedged proxy %s: %w", old.Name, err)
		}
		fresh = toxiproxy.NewProxy(p.s.api, old.Name, old.Listen, old.Upstream)
		time.Sleep(50 * time.Millisecond)
	}
	p.p = fresh
	p.rebuilt.Add(1)
	return nil
}

// Rebuilt is how often the proxy was found wedged and replaced.
func (p *Proxy) Rebuilt() int { return int(p.rebuilt.Load()) }

// Rewrite returns rawURL (a postgres:// or redis:// URL) with its host and
// port replaced by the proxy's.
func (p *Proxy) Rewrite(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", rawURL, err)
	}
	u.Host = p.Addr()
	return u.String(), nil
}

// Direction says which way a fault hits: Upstream is what the process
// sends, Downstream what the server answers.
type Direction string

const (
	Upstream   Direction = "upstream"
	Downstream Direction = "downstream"
)

// Both is either way.
var Both = []Direction{Upstream, Downstream}

// Fault is a set of toxics in place on a proxy; Remove takes them away.
type Fault struct {
	p     *Proxy
	names []string
}

// Remove takes the fault's toxics off the proxy. Taking off a blackhole
// closes the connections that went through it (Toxiproxy's timeout toxic
// does so); the others leave the connections as they are.
func (f *Fault) Remove() error {
	return f.p.unwedge(func(p *toxiproxy.Proxy) error {
		var first error
		for _, name := range f.names {
			// Not found: the proxy was replaced meanwhile, without it.
			if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil && first == nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
				first = fmt.Errorf("remove toxic %s: %w", name, err)
			}
		}
		return first
	})
}

func (p *Proxy) add(kind string, attrs map[string]any, dirs []Direction) (*Fault, error) {
	f := &Fault{p: p}
	for _, d := range dirs {
		name := fmt.Sprintf("%s_%s_%d", kind, d, p.next.Add(1))
		body, err := json.Marshal(map[string]any{"name": name, "type": kind, "stream": d, "toxicity": 1.0, "attributes": attrs})
		if err != nil {
			return nil, err
		}
		if _, err := p.cur().Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
			return nil, errors.Join(fmt.Errorf("add %s toxic: %w", kind, err), f.Remove())
		}
		f.names = append(f.names, name)
	}
	return f, nil
}

// Latency delays every chunk of data by latency ± jitter, each way.
func (p *Proxy) Latency(latency, jitter time.Duration) (*Fault, error) {
	return p.add("latency", map[string]any{"latency": latency.Milliseconds(), "jitter": jitter.Milliseconds()}, Both)
}

// Reset cuts each connection with a TCP reset when data next flows after
// after: connections in use die mid-stream, and new ones die as soon as
// they are used, while the fault is in place.
func (p *Proxy) Reset(after time.Duration) (*Fault, error) {
	return p.add("reset_peer", map[string]any{"timeout": after.Milliseconds()}, []Direction{Downstream})
}

// Blackhole drops every byte sent in the given directions while it is in
// place, keeping the connections open: a partition that neither side is
// told about. New connections are accepted and go dark too.
func (p *Proxy) Blackhole(dirs ...Direction) (*Fault, error) {
	return p.add("timeout", map[string]any{"timeout": 0}, dirs)
}

// Bandwidth limits each connection to kbPerSecond KB/s each way.
func (p *Proxy) Bandwidth(kbPerSecond int) (*Fault, error) {
	return p.add("bandwidth", map[string]any{"rate": kbPerSecond}, Both)
}

// Clear removes every fault of the proxy.
func (p *Proxy) Clear() error {
	return p.unwedge(func(p *toxiproxy.Proxy) error { p.Toxics.ResetToxics(context.Background()); return nil })
}
