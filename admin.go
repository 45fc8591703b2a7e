package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/migrations"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/worker"
)

// operate runs the one-off operator commands. Each opens only what it
// reads or changes, and none creates a database or applies a migration: on
// a mistyped DATABASE_URL, a command that reported on a database made for
// the occasion would say that all is well (nothing pending, the forwarder
// never ran) when nothing is. Only `migrate` and the servers create and
// migrate.
func operate(ctx context.Context, inv invocation, cfg config, logger *slog.Logger, redisOpts *redis.UniversalOptions, stdout, stderr io.Writer) error {
	a := &app{cfg: cfg, logger: logger}
	a.streams = newStreams(cfg, redisOpts, logger, worker.ConsumedStreams(a.subscriptions()))
	cmd := inv.cmd.name
	switch cmd {
	case "outbox status", "migrate status", "outbox realign", "handlers backfill", "orders trace":
		opts := []postgres.Option{
			postgres.IdleInTransactionTimeout(cfg.DBIdleInTransactionTimeout), postgres.ApplicationName("orderstream " + cmd),
		}
		if cmd != "outbox realign" && cmd != "handlers backfill" {
			// The server refuses every write of a reading command's
			// sessions, whatever the code below would do.
			opts = append(opts, postgres.ReadOnly())
		}
		// At once, not waiting as a starting server does: an operator at
		// a prompt wants the answer, and a database that cannot be reached
		// is one. On a session of its own, which a read-only one must be.
		dsn, variable := cfg.sessionURL()
		db, err := postgres.OpenExisting(ctx, dsn, cfg.DBMaxConns, opts...)
		switch {
		case errors.Is(err, postgres.ErrNoDatabase):
			return fmt.Errorf("%w: is %s right? If it is, `orderstream migrate` creates the database", err, variable)
		case errors.Is(err, postgres.ErrParameterRefused):
			return refused(cfg, variable, err)
		case postgres.IsUnavailable(err):
			return fmt.Errorf("the database cannot be reached (is %s right, and the server up?): %w", variable, err)
		case err != nil:
			return err
		}
		defer db.Close()
		a.db = db
		// outbox realign changes the outbox, but only of a database that
		// exists and is migrated: it follows a restore into an existing
		// database, and realigning one created for the occasion would
		// only report that nothing needs doing. It does not migrate
		// either: its SQL is written for the current schema, and a
		// restored database from an older release is brought up to it by
		// `orderstream migrate`, a step of its own the operator takes
		// knowingly, not as a side effect of this one.
		if cmd != "migrate status" {
			if err := migrations.Check(ctx, db); err != nil {
				return err
			}
		}
	}
	// deadletters list and replay read and write only Redis: they open no
	// database at all.
	if cmd != "migrate status" {
		a.rdb = a.streams.NewClient()
		defer a.rdb.Close()
	}
	switch cmd {
	case "outbox status":
		return a.outboxStatus(ctx, stdout, inv.json)
	case "outbox realign":
		return a.realignOutbox(ctx, stdout)
	case "migrate status":
		return a.migrateStatus(ctx, stdout, inv.json)
	case "deadletters list":
		return a.listDeadLetters(ctx, stdout, inv.json)
	case "deadletters replay":
		return a.replayDeadLetters(ctx, inv.args, inv.all, stdout)
	case "handlers backfill":
		return a.backfill(ctx, inv.args[0], inv.since, stdout, stderr)
	case "orders trace":
		return a.traceOrder(ctx, inv.args[0], stdout, inv.json)
	}
	return fmt.Errorf("run %s: not an operator command", cmd)
}

// outboxStatusJSON is the document `outbox status --json` prints.
type outboxStatusJSON struct {
	Outbox struct {
		Pending          int64   `json:"pending"`
		OldestAgeSeconds float64 `json:"oldest_pending_age_seconds"`
		Forwarded        bool    `json:"forwarded"`    // false until the forwarder first ran
		Transaction      string  `json:"transaction"`  // the forwarder's position in shard 0; "" when it never ran
		OffsetAcked      int64   `json:"offset_acked"` // within that transaction
		Misalignment     *string `json:"misalignment"` // null unless the outbox was copied from another cluster
		// Shards lists the shards that hold pending rows or were forwarded.
		Shards []shardStatusJSON `json:"shards"`
	} `json:"outbox"`
	Streams []redisstreams.StreamStatus `json:"streams"`
}

type shardStatusJSON struct {
	Shard            int     `json:"shard"`
	Pending          int64   `json:"pending"`
	OldestAgeSeconds float64 `json:"oldest_pending_age_seconds"`
	Transaction      string  `json:"transaction"`
	OffsetAcked      int64   `json:"offset_acked"`
}

// usedShards are the shards that hold pending rows or were forwarded.
func usedShards(st outbox.OutboxStatus) []outbox.ShardStatus {
	var used []outbox.ShardStatus
	for _, sh := range st.Shards {
		if sh.Pending > 0 || sh.HasForwarded {
			used = append(used, sh)
		}
	}
	return used
}

func (a *app) outboxStatus(ctx context.Context, stdout io.Writer, asJSON bool) error {
	backlog, err := outbox.Outbox(ctx, a.db)
	if err != nil {
		return err
	}
	streams, err := a.streams.Status(ctx, a.rdb)
	if err != nil {
		return err
	}
	if asJSON {
		var doc outboxStatusJSON
		doc.Outbox.Pending = backlog.Pending
		doc.Outbox.OldestAgeSeconds = backlog.OldestAge.Seconds()
		doc.Outbox.Forwarded = backlog.HasForwarded
		doc.Outbox.Shards = []shardStatusJSON{}
		for _, sh := range usedShards(backlog) {
			if sh.Shard == 0 {
				doc.Outbox.Transaction, doc.Outbox.OffsetAcked = sh.Transaction, sh.OffsetAcked
			}
			doc.Outbox.Shards = append(doc.Outbox.Shards, shardStatusJSON{
				Shard: sh.Shard, Pending: sh.Pending, OldestAgeSeconds: sh.OldestAge.Seconds(),
				Transaction: sh.Transaction, OffsetAcked: sh.OffsetAcked,
			})
		}
		if backlog.Misalignment != nil {
			m := backlog.Misalignment.Error()
			doc.Outbox.Misalignment = &m
		}
		doc.Streams = streams
		for i := range doc.Streams {
			if doc.Streams[i].Groups == nil {
				doc.Streams[i].Groups = []redisstreams.GroupStatus{}
			}
		}
		return writeJSON(stdout, doc)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "outbox\tpending %d\toldest %s\t", backlog.Pending, roundAge(backlog.OldestAge))
	if !backlog.HasForwarded {
		fmt.Fprintln(w, "the forwarder has not run yet")
	} else {
		fmt.Fprintln(w)
	}
	for _, sh := range usedShards(backlog) {
		fmt.Fprintf(w, "  shard %d\tpending %d\toldest %s\t", sh.Shard, sh.Pending, roundAge(sh.OldestAge))
		if sh.HasForwarded {
			fmt.Fprintf(w, "forwarder at transaction %s, offset %d\n", sh.Transaction, sh.OffsetAcked)
		} else {
			fmt.Fprintln(w, "not forwarded yet")
		}
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
	if backlog.Misalignment != nil {
		// The pending count leaves out the rows written here: they sort
		// before the position.
		fmt.Fprintf(stdout, "\nWARNING: %s\n", backlog.Misalignment)
	}
	return nil
}

// realignOutbox makes an outbox copied from another cluster readable by the
// forwarder again (outbox.RealignOutbox).
func (a *app) realignOutbox(ctx context.Context, stdout io.Writer) error {
	r, err := outbox.RealignOutbox(ctx, a.db)
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

// deadLetterJSON is one dead letter in `deadletters list --json`: what the
// live page lists, with the whole message and how many entries of the
// dead-letter stream hold it (the id is the newest of them).
type deadLetterJSON struct {
	live.DeadLetter
	Copies   int               `json:"copies"`
	Metadata map[string]string `json:"metadata"`
	Payload  string            `json:"payload"` // as text; bytes that are not UTF-8 become U+FFFD
}

func (a *app) listDeadLetters(ctx context.Context, stdout io.Writer, asJSON bool) error {
	letters, err := a.streams.DeadLetters(ctx, a.rdb)
	if err != nil {
		return err
	}
	if asJSON {
		doc := struct {
			Count       int              `json:"count"`
			DeadLetters []deadLetterJSON `json:"dead_letters"`
		}{Count: len(letters), DeadLetters: []deadLetterJSON{}}
		for _, d := range letters {
			md := map[string]string{}
			for k, v := range d.Message.Metadata {
				md[k] = v
			}
			doc.DeadLetters = append(doc.DeadLetters, deadLetterJSON{
				DeadLetter: live.DeadLetterOf(d), Copies: d.Copies(), Metadata: md, Payload: string(d.Message.Payload),
			})
		}
		return writeJSON(stdout, doc)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tAT\tSTREAM\tHANDLER\tUUID\tEVENT\tCOPIES\tREASON")
	for _, d := range letters {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.At.Format(time.RFC3339), d.Stream, d.Handler,
			d.Message.UUID, d.Message.Metadata.Get(events.MetadataEventType), d.Copies(), oneLine(d.Reason))
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

func (a *app) replayDeadLetters(ctx context.Context, ids []string, all bool, stdout io.Writer) error {
	letters, err := a.streams.DeadLetters(ctx, a.rdb)
	if err != nil {
		return err
	}
	var errs []error
	replayed := 0
	// Each message once: an ID of any of its copies names it, and its
	// replay deletes them all.
	for _, d := range letters {
		if !all && !slices.ContainsFunc(ids, d.Holds) {
			continue
		}
		ids = slices.DeleteFunc(ids, d.Holds)
		if err := a.streams.Replay(ctx, a.rdb, d); err != nil {
			errs = append(errs, err)
			continue
		}
		replayed++
		fmt.Fprintf(stdout, "replayed %s to %s (uuid %s", d.ID, d.Stream, d.Message.UUID)
		if d.Copies() > 1 {
			fmt.Fprintf(stdout, ", %d copies deleted", d.Copies())
		}
		fmt.Fprintln(stdout, ")")
	}
	if !all {
		for _, id := range ids {
			errs = append(errs, fmt.Errorf("no dead letter %s", id))
		}
	}
	fmt.Fprintf(stdout, "%d replayed\n", replayed)
	return errors.Join(errs...)
}

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
