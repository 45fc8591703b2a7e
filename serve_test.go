package main

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/metrics"
)

// TestServeOps_endsEventStreams: an open live page (its event stream is a
// request that never ends by itself) must not hold the HTTP shutdown until
// SHUTDOWN_TIMEOUT; the stream ends, and the shutdown is clean.
func TestServeOps_endsEventStreams(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	a := app{
		cfg:     config{OpsAddr: addr, RequestTimeout: 10 * time.Second, ShutdownTimeout: 10 * time.Second},
		logger:  testenv.Logger(t),
		metrics: metrics.New(),
		live:    live.New(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.serveOps(ctx, true) }()

	reqCtx, cancelReq := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelReq()
	var resp *http.Response
	for {
		req, _ := http.NewRequestWithContext(reqCtx, "GET", "http://"+addr+"/events", nil)
		var err error
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		if reqCtx.Err() != nil {
			t.Fatalf("GET /events: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // not listening yet
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events = %d", resp.StatusCode)
	}
	<-a.live.Joined()

	cancel() // the process is told to stop
	if err := <-done; err != nil {
		t.Fatalf("serve = %v, want a clean shutdown: the open event stream held it", err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("the event stream did not end cleanly: %v", err)
	}
}
