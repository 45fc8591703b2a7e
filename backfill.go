package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

// listHandlers prints the handler groups: `orderstream handlers list`.
func listHandlers(stdout io.Writer, subs []worker.Subscription, asJSON bool) error {
	type entry struct {
		Name       string   `json:"name"`
		Stream     string   `json:"stream"`
		Group      string   `json:"group"`
		EventTypes []string `json:"event_types"`
	}
	entries := make([]entry, len(subs))
	for i, s := range subs {
		entries[i] = entry{s.Name, s.Stream, s.Group, s.EventTypes()}
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"handlers": entries})
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTREAM\tGROUP\tEVENT TYPES")
	for _, e := range entries {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Name, e.Stream, e.Group, strings.Join(e.EventTypes, ", "))
	}
	return w.Flush()
}

// backfillRetries is how often backfill tries an event that failed for a
// passing reason (a lock, a timeout, the database away) before it counts
// it as failed.
const backfillRetries = 5

// inboxMargin is how much younger than INBOX_RETENTION the oldest event a
// backfill handles must be: room for the clocks of the process and the
// database, and for a backfill that runs for a while.
const inboxMargin = time.Hour

// backfill runs the handler group name over the events retained for its
// stream, written at or after since: `orderstream handlers backfill`.
// Every event goes through the group's inbox, as in the worker, so an
// event handled already is skipped; an interrupted run leaves nothing
// half done, and the next run goes on where it stopped.
//
// The inbox remembers a message for INBOX_RETENTION only: an older event,
// which the stream or the outbox may still hold, could have been handled
// and forgotten, and would take effect again. So since is never earlier
// than INBOX_RETENTION (less inboxMargin) ago.
func (a *app) backfill(ctx context.Context, name string, since time.Time, stdout, stderr io.Writer) (err error) {
	if oldest := time.Now().Add(-a.cfg.InboxRetention + inboxMargin); since.Before(oldest) {
		if !since.IsZero() {
			fmt.Fprintf(stderr, "backfill: --since %s is before INBOX_RETENTION (%s) ago, whose handled events the inbox may have forgotten: starting at %s\n",
				since.Format(time.RFC3339), a.cfg.InboxRetention, oldest.Format(time.RFC3339))
		}
		since = oldest
	}
	// The handlers write with the worker's limits.
	db, err := a.handlersPool(ctx, "orderstream handlers backfill")
	if err != nil {
		return err
	}
	defer db.Close()
	a.orders, a.inventory = orders.NewService(db), inventory.NewService(db)
	sub, ok := worker.Lookup(a.subscriptions(), name)
	if !ok {
		var names []string
		for _, s := range a.subscriptions() {
			names = append(names, s.Name)
		}
		return fmt.Errorf("no handler group %q; there are %s", name, strings.Join(names, ", "))
	}
	var duplicates atomic.Int64
	run, err := worker.NewRunner(sub, worker.RunnerConfig{
		DB: db, Logger: a.logger, Timeout: a.cfg.HandlerTimeout,
		OnDuplicate: func(string) { duplicates.Add(1) },
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, run.Close()) }()

	ctx = postgres.WithOutboxShards(ctx, a.cfg.OutboxShards)
	progress := newProgress(stderr)
	var read, others, refused, failed int64
	types := sub.EventTypes()
	err = outbox.History(ctx, a.db, a.rdb, a.streams, sub.Stream, since, func(ev outbox.HistoryEvent) error {
		read++
		eventType := events.Marshaler{}.NameFromMessage(ev.Message)
		if !slices.Contains(types, eventType) {
			others++ // another group's event, or an undecodable one: the worker deals with those
			return nil
		}
		err := deliverWithRetries(ctx, run, ev)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, events.ErrMalformed):
			// The worker dead-lettered it; no run will handle it.
			refused++
			a.logger.WarnContext(ctx, "backfill: event refused as malformed", "handler", name, "message_uuid", ev.Message.UUID,
				"event_type", eventType, "err", err)
		default:
			failed++
			a.logger.ErrorContext(ctx, "backfill: event not handled", "handler", name, "message_uuid", ev.Message.UUID,
				"event_type", eventType, "err", err)
		}
		progress.show("%s: %d events read, %d skipped as handled, %d refused, %d failed, at %s",
			name, read, duplicates.Load(), refused, failed, ev.At.Format(time.RFC3339))
		return nil
	})
	progress.done()
	undecodable := errors.Is(err, outbox.ErrUndecodableEvents)
	if err != nil && !undecodable {
		return fmt.Errorf("backfill %s: %w (after %d events; run it again to go on)", name, err, read)
	}
	fmt.Fprintf(stdout, "%s: %d events read from %s since %s, %d of other types, %d handled now, %d handled before, %d refused as malformed, %d failed\n",
		name, read, sub.Stream, since.Format(time.RFC3339), others, read-others-duplicates.Load()-refused-failed, duplicates.Load(), refused, failed)
	switch {
	case failed > 0:
		return fmt.Errorf("backfill %s: %d events failed (logged above); run it again to retry them", name, failed)
	case undecodable:
		return fmt.Errorf("backfill %s: %w", name, err)
	}
	return nil
}

// deliverWithRetries delivers ev, again after a growing pause while it
// fails for a passing reason.
func deliverWithRetries(ctx context.Context, run *worker.Runner, ev outbox.HistoryEvent) error {
	wait := 100 * time.Millisecond
	for i := 0; ; i++ {
		err := run.Deliver(ctx, ev.Message)
		if err == nil || i == backfillRetries || !worker.Passing(err) {
			return err
		}
		select {
		case <-time.After(wait):
			wait *= 2
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// progress rewrites one line on a terminal, at most every 200 ms, and
// writes nothing elsewhere (the summary follows on stdout).
type progress struct {
	w    io.Writer
	on   bool
	last time.Time
	line string
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok {
		return &progress{w: w}
	}
	st, err := f.Stat()
	return &progress{w: w, on: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) show(format string, args ...any) {
	if !p.on {
		return
	}
	p.line = fmt.Sprintf(format, args...)
	if time.Since(p.last) >= 200*time.Millisecond {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line)
		p.last = time.Now()
	}
}

func (p *progress) done() {
	if p.on && p.line != "" {
		fmt.Fprintf(p.w, "\r\033[K%s\n", p.line)
	}
}
