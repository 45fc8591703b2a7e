package httpapi_test

import (
	"net"
	"testing"
	"time"

	"github.com/orderstream/orderstream/httpapi"
)

// connsEnv is a limited listener on loopback whose accepted connections
// arrive on accepted.
type connsEnv struct {
	addr     string
	accepted chan net.Conn
}

func newConnsEnv(t *testing.T, total, perClient int, trusted []*net.IPNet) *connsEnv {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limited := httpapi.LimitConnections(l, total, perClient, trusted)
	t.Cleanup(func() { limited.Close() })
	env := &connsEnv{addr: l.Addr().String(), accepted: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := limited.Accept()
			if err != nil {
				return
			}
			env.accepted <- c
		}
	}()
	return env
}

// dial connects from the loopback address from (any of 127.0.0.0/8 is
// this host's) and returns the client's end and, when the listener kept
// the connection, the server's; nil when it closed it at once.
func (e *connsEnv) dial(t *testing.T, from string) (client, server net.Conn) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	client, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	// A kept connection arrives on accepted; a closed one ends at once on
	// the client's side. Which happens first tells them apart: the
	// listener accepts in order, so nothing else can arrive meanwhile.
	closed := make(chan struct{})
	go func() {
		var b [1]byte
		if _, err := client.Read(b[:]); err != nil { // EOF, or a reset
			close(closed)
		}
	}()
	select {
	case s := <-e.accepted:
		if s.RemoteAddr().String() != client.LocalAddr().String() {
			t.Fatalf("accepted %s, dialled from %s", s.RemoteAddr(), client.LocalAddr())
		}
		t.Cleanup(func() { s.Close() })
		return client, s
	case <-closed:
		return client, nil
	case <-time.After(10 * time.Second):
		t.Fatalf("a connection from %s was neither accepted nor closed", from)
		return nil, nil
	}
}

func (e *connsEnv) wantKept(t *testing.T, from string) net.Conn {
	t.Helper()
	_, s := e.dial(t, from)
	if s == nil {
		t.Fatalf("a connection from %s was closed, want it kept", from)
	}
	return s
}

func (e *connsEnv) wantClosed(t *testing.T, from string) {
	t.Helper()
	if _, s := e.dial(t, from); s != nil {
		t.Fatalf("a connection from %s was kept, want it closed", from)
	}
}

// TestLimitConnections: the listener closes a connection beyond perClient
// open ones from its address, or beyond total open ones; a trusted
// proxy's address has no per-client bound; a connection closed gives its
// place back, once.
func TestLimitConnections(t *testing.T) {
	t.Parallel()
	t.Run("bounds_each_address_and_all", func(t *testing.T) {
		t.Parallel()
		e := newConnsEnv(t, 3, 2, nil)
		first := e.wantKept(t, "127.0.0.1")
		e.wantKept(t, "127.0.0.1")
		e.wantClosed(t, "127.0.0.1") // a third from one address
		e.wantKept(t, "127.0.0.2")
		e.wantClosed(t, "127.0.0.3") // a fourth in all

		// Closed, the first gives its place back to its address and to
		// the total; closed again, it gives back nothing more.
		first.Close()
		first.Close()
		e.wantKept(t, "127.0.0.1")
		e.wantClosed(t, "127.0.0.1")
		e.wantClosed(t, "127.0.0.3")
	})
	t.Run("leaves_trusted_proxies_to_the_total", func(t *testing.T) {
		t.Parallel()
		proxy := []*net.IPNet{{IP: net.IPv4(127, 0, 0, 5).To4(), Mask: net.CIDRMask(32, 32)}}
		e := newConnsEnv(t, 4, 1, proxy)
		e.wantKept(t, "127.0.0.5")
		e.wantKept(t, "127.0.0.5")
		e.wantKept(t, "127.0.0.5")
		e.wantKept(t, "127.0.0.1")
		e.wantClosed(t, "127.0.0.5") // the total, even for a proxy
	})
}
