package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/orderstream/orderstream/story"
)

// storySources are what an order's story is read from: the database and
// Redis of this process, and the handler list (handlers.go).
func (a *app) storySources() story.Sources {
	var handlers []story.Handler
	for _, s := range a.subscriptions() {
		handlers = append(handlers, story.Handler{Name: s.Name, Stream: s.Stream, Group: s.Group, EventTypes: s.EventTypes()})
	}
	return story.Sources{
		DB: a.db, Redis: a.rdb, Streams: a.streams, Handlers: handlers,
		SettleTimeout: a.cfg.OrderSettleTimeout, OutboxRetention: a.cfg.OutboxRetention, StreamRetention: a.cfg.StreamRetention,
	}
}

// readStory is the story of the order id: GET /orders/{id}/story on the
// operations listener.
func (a *app) readStory(ctx context.Context, id string) (story.Story, error) {
	return story.Read(ctx, a.storySources(), id)
}

// traceOrder prints the story of the order id: `orderstream orders trace`.
func (a *app) traceOrder(ctx context.Context, id string, stdout io.Writer, asJSON bool) error {
	st, err := a.readStory(ctx, id)
	switch {
	case errors.Is(err, story.ErrBadID):
		return fmt.Errorf("%q is not an order id: an order id is a UUID, as POST /orders answers it", id)
	case errors.Is(err, story.ErrNotFound):
		return fmt.Errorf("no order has the id %s in this database (is DATABASE_URL right?)", id)
	case err != nil:
		return err
	}
	if asJSON {
		return writeJSON(stdout, st)
	}
	return printStory(stdout, st)
}

// printStory writes st as text: the order, a line per step (its time, the
// delay since the step before, its kind, name and details), the
// correlation id, and for an order not settled what is missing.
func printStory(w io.Writer, st story.Story) error {
	o := st.Order
	fmt.Fprintf(w, "order %s: %s", o.ID, o.Status)
	if o.Reason != "" {
		fmt.Fprintf(w, " (%s)", o.Reason)
	}
	fmt.Fprintf(w, ", customer %s\n", o.CustomerID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range st.Steps {
		fmt.Fprintf(tw, "%s\t+%s\t%s\t%s\t%s\n", s.At.UTC().Format("2006-01-02T15:04:05.000000Z"), story.Round(s.Delay),
			s.Kind, s.Name, s.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	correlation := st.CorrelationID
	if correlation == "" {
		correlation = "none recorded"
	}
	fmt.Fprintf(w, "correlation id: %s\n", correlation)
	switch {
	case st.Settled:
	case len(st.Missing) == 0:
		fmt.Fprintln(w, "missing: nothing so far; each step until now has happened, and the next is on its way")
	default:
		for _, m := range st.Missing {
			fmt.Fprintf(w, "missing: %s\n", m)
		}
	}
	return nil
}
