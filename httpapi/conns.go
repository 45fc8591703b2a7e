package httpapi

import (
	"net"
	"sync"
)

// LimitConnections returns l, closing at once each connection accepted
// beyond total open ones, or beyond perClient open ones from one address:
// idle keep-alive connections of one client cannot take the server's
// file descriptors and goroutines from the others. The trusted proxies'
// addresses have no per-client bound (every client behind them shares
// them); total bounds them too.
func LimitConnections(l net.Listener, total, perClient int, trusted []*net.IPNet) net.Listener {
	return &connLimiter{Listener: l, total: total, perClient: perClient, trusted: trusted, open: map[string]int{}}
}

type connLimiter struct {
	net.Listener
	total, perClient int
	trusted          []*net.IPNet

	mu    sync.Mutex
	count int
	open  map[string]int // per address
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := hostOf(c.RemoteAddr().String())
		if l.take(addr) {
			return &limitedConn{Conn: c, release: func() { l.release(addr) }}, nil
		}
		c.Close()
	}
}

func (l *connLimiter) take(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count >= l.total || (l.open[addr] >= l.perClient && !trusted(l.trusted, addr)) {
		return false
	}
	l.count++
	l.open[addr]++
	return true
}

func (l *connLimiter) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count--
	if l.open[addr]--; l.open[addr] <= 0 {
		delete(l.open, addr)
	}
}

// trusted reports whether host, an address without its port, is in one
// of nets: a trusted proxy's.
func trusted(nets []*net.IPNet, host string) bool {
	ip := net.ParseIP(host)
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// hostOf is addr without its port.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
