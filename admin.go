package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orderstream/orderstream/events"
)

// admin runs the one-off operator commands.
func (a *app) admin(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	switch cmd {
	case "outbox status":
		return a.outboxStatus(ctx, stdout)
	case "outbox realign":
		return a.realignOutbox(ctx, stdout)
	case "deadletters list":
		return a.listDeadLetters(ctx, stdout)
	case "deadletters replay":
		return a.replayDeadLetters(ctx, args, stdout)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func (a *app) outboxStatus(ctx context.Context, stdout io.Writer) error {
	outbox, err := events.Outbox(ctx, a.db)
	if err != nil {
		return err
	}
	streams, err := a.streams.Status(ctx, a.rdb)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "outbox\tpending %d\toldest %s\t", outbox.Pending, roundAge(outbox.OldestAge))
	if outbox.HasForwarded {
		fmt.Fprintf(w, "forwarder at transaction %s, offset %d\n", outbox.Transaction, outbox.OffsetAcked)
	} else {
		fmt.Fprintln(w, "the forwarder has not run yet")
	}
	for _, st := range streams {
		fmt.Fprintf(w, "stream %s\tlength %d\t\t\n", st.Stream, st.Length)
		for _, g := range st.Groups {
			fmt.Fprintf(w, "  group %s\tlag %d\tpending %d\tlast delivered %s\n", g.Name, g.Lag, g.Pending, g.LastDelivered)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if outbox.Misalignment != nil {
		// The pending count leaves out the rows written here: they sort
		// before the position.
		fmt.Fprintf(stdout, "\nWARNING: %s\n", outbox.Misalignment)
	}
	return nil
}

// realignOutbox makes an outbox copied from another cluster readable by the
// forwarder again (events.RealignOutbox).
func (a *app) realignOutbox(ctx context.Context, stdout io.Writer) error {
	r, err := events.RealignOutbox(ctx, a.db)
	if err != nil {
		return err
	}
	if r.Misalignment == nil {
		fmt.Fprintln(stdout, "the outbox is aligned with the database's transaction ids: nothing to do")
		return nil
	}
	fmt.Fprintf(stdout, "found: %s\n", r.Misalignment.Summary())
	fmt.Fprintf(stdout, "realigned the outbox:\n"+
		"  %d rows from the old cluster that the forwarder had passed: kept as forwarded (transaction 1)\n"+
		"  %d rows from the old cluster that it had not: forwarded first (transaction 2)\n"+
		"  %d rows written in this database: forwarded after them\n"+
		"the forwarder resumes at transaction 2, offset 0; start it\n", r.Passed, r.Pending, r.Local)
	return nil
}

func roundAge(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

func (a *app) listDeadLetters(ctx context.Context, stdout io.Writer) error {
	letters, err := a.streams.DeadLetters(ctx, a.rdb)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tAT\tSTREAM\tHANDLER\tUUID\tEVENT\tREASON")
	for _, d := range letters {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.At.Format(time.RFC3339), d.Stream, d.Handler,
			d.Message.UUID, d.Message.Metadata.Get(events.MetadataEventType), oneLine(d.Reason))
	}
	fmt.Fprintf(w, "%d dead letters\n", len(letters))
	return w.Flush()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func (a *app) replayDeadLetters(ctx context.Context, ids []string, stdout io.Writer) error {
	all := slices.Equal(ids, []string{"--all"})
	if len(ids) == 0 || slices.Contains(ids, "--all") && !all {
		return errors.New("usage: orderstream deadletters replay ID... | --all")
	}
	letters, err := a.streams.DeadLetters(ctx, a.rdb)
	if err != nil {
		return err
	}
	var errs []error
	replayed := 0
	for _, d := range letters {
		if !all && !slices.Contains(ids, d.ID) {
			continue
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return id == d.ID })
		if err := a.streams.Replay(ctx, a.rdb, d); err != nil {
			errs = append(errs, err)
			continue
		}
		replayed++
		fmt.Fprintf(stdout, "replayed %s to %s (uuid %s)\n", d.ID, d.Stream, d.Message.UUID)
	}
	if !all {
		for _, id := range ids {
			errs = append(errs, fmt.Errorf("no dead letter %s", id))
		}
	}
	fmt.Fprintf(stdout, "%d replayed\n", replayed)
	return errors.Join(errs...)
}
