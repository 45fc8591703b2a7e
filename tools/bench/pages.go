package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// pagesResult is what the live page costs the database: the transactions
// of an `orderstream all` with no traffic, with 0, 1 and 10 pages open.
type pagesResult struct {
	pages     []int
	perSecond []float64 // transactions a second, with pages[i] open
	snapshots []int64   // snapshots the pages received, with pages[i] open
	window    time.Duration
}

// livePages are the counts of open pages measured, in order.
var livePages = []int{0, 1, 10}

// measurePages counts the bench database's transactions while pages watch
// the live page (GET /events on the operations listener), as measureIdle
// does: first none, then one, then ten. A page is an event stream read to
// its end; each comes from a loopback address of its own (127.0.0.2, …),
// since one client may open only four. The figures are read once a second
// for every page, however many, so ten should cost what one does.
func measurePages(ctx context.Context, st *stage, rep *report) error {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return err
	}
	db.Close()
	prefix := st.streamPrefix("pages")
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	app, _, err := st.startAPI(ctx, "all", prefix)
	if err != nil {
		return err
	}
	defer func() { _ = app.stop() }()
	res := &pagesResult{window: st.opts.idleWindow}
	var received atomic.Int64
	pagesCtx, closePages := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		closePages()
		wg.Wait()
	}()
	open := 0
	for _, n := range livePages {
		for ; open < n; open++ {
			i := open
			wg.Go(func() { watchPage(pagesCtx, app.ops, i, &received) })
		}
		// The statistics of the change, and of the start-up, come in
		// before the window opens.
		if err := sleep(ctx, idleSettle); err != nil {
			return err
		}
		before, err := st.transactions(ctx)
		if err != nil {
			return err
		}
		seen := received.Load()
		began := time.Now()
		if err := sleep(ctx, st.opts.idleWindow); err != nil {
			return err
		}
		after, err := st.transactions(ctx)
		if err != nil {
			return err
		}
		res.pages = append(res.pages, n)
		res.perSecond = append(res.perSecond, float64(after-before)/time.Since(began).Seconds())
		res.snapshots = append(res.snapshots, received.Load()-seen)
	}
	rep.pages = res
	return nil
}

// watchPage reads the live page's event stream from 127.0.0.(2+i) until
// ctx ends, counting the snapshots; a stream that ends is opened again,
// as the page's EventSource does.
func watchPage(ctx context.Context, ops string, i int, received *atomic.Int64) {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, DisableCompression: true}}
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ops+"/events", nil)
		if err != nil {
			return
		}
		if resp, err := client.Do(req); err == nil {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					received.Add(1)
				}
			}
			resp.Body.Close()
		}
		_ = sleep(ctx, time.Second)
	}
}

// pagesRow is the raw figures of the pages measurement.
func (x *pagesResult) row() string {
	var parts []string
	for i, n := range x.pages {
		parts = append(parts, fmt.Sprintf("%d open: %.2f transactions/s (%d snapshots received)", n, x.perSecond[i], x.snapshots[i]))
	}
	return strings.Join(parts, "; ")
}

// tenOverOne is the database cost of ten pages over that of one, less
// that of none: what the pages themselves add.
func (x *pagesResult) tenOverOne() (float64, bool) {
	if len(x.perSecond) != 3 || x.perSecond[1]-x.perSecond[0] <= 0 {
		return 0, false
	}
	return (x.perSecond[2] - x.perSecond[0]) / (x.perSecond[1] - x.perSecond[0]), true
}
