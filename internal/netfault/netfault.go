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
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Server holds the proxies. Its zero value is not usable: call NewServer.
type Server struct {
	api *toxiproxy.ApiServer
}

// NewServer returns a Toxiproxy server without its HTTP API: the proxies
// are driven through Go calls.
func NewServer() *Server {
	return &Server{api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// Close stops every proxy and closes the connections through them.
func (s *Server) Close() error { return s.api.Collection.Clear() }

// Proxy is one listening address on 127.0.0.1 whose connections are
// relayed to one upstream, through the faults added to it.
type Proxy struct {
	p    *toxiproxy.Proxy
	next atomic.Int64
}

// Proxy starts a proxy named name (unique in s) that relays to upstream
// (host:port).
func (s *Server) Proxy(name, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(s.api, name, "127.0.0.1:0", upstream)
	if err := s.api.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("start proxy %s to %s: %w", name, upstream, err)
	}
	return &Proxy{p: p}, nil
}

// Addr is where the proxy listens, host:port.
func (p *Proxy) Addr() string { return p.p.Listen }

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
	var first error
	for _, name := range f.names {
		if err := f.p.p.Toxics.RemoveToxic(context.Background(), name); err != nil && first == nil {
			first = fmt.Errorf("remove toxic %s: %w", name, err)
		}
	}
	return first
}

func (p *Proxy) add(kind string, attrs map[string]any, dirs []Direction) (*Fault, error) {
	f := &Fault{p: p}
	for _, d := range dirs {
		name := fmt.Sprintf("%s_%s_%d", kind, d, p.next.Add(1))
		body, err := json.Marshal(map[string]any{"name": name, "type": kind, "stream": d, "toxicity": 1.0, "attributes": attrs})
		if err != nil {
			return nil, err
		}
		if _, err := p.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
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
func (p *Proxy) Clear() { p.p.Toxics.ResetToxics(context.Background()) }
