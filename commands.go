package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// A command is one of orderstream's subcommands.
type command struct {
	name    string // as typed: "worker", "outbox status"
	args    string // its arguments, for the usage line
	summary string // for the list of commands; lines after the first are indented
	detail  string // for its --help
	serve   bool   // runs until stopped; the others do one thing and exit
	json    bool   // takes --json
}

// commands are orderstream's subcommands, in the order the usage lists them.
func commands() []command {
	return []command{
		{name: "all", serve: true, summary: "the API, the forwarder and the worker in one process (default)"},
		{name: "api", serve: true, summary: "the HTTP API"},
		{name: "forwarder", serve: true, summary: "moves events from the outbox to Redis Streams"},
		{name: "worker", serve: true, summary: "the message handlers (inventory and orders)"},
		{name: "migrate", summary: "applies the database migrations and exits",
			detail: "Creates the database when the server has none of that name, then applies the\n" +
				"pending migrations under an advisory lock. The servers do the same at start."},
		{name: "migrate status", json: true, summary: "the migrations applied to the database and those pending",
			detail: "Reads only: it creates no database and applies nothing."},
		{name: "outbox status", json: true, summary: "what the forwarder has not moved yet, and where\n" +
			"each consumer group is in each stream",
			detail: "Reads only: it creates no database and applies no migration, and fails when\n" +
				"the database does not exist or its schema is missing or behind."},
		{name: "outbox realign", summary: "after a pg_dump/restore or logical copy into\n" +
			"another cluster: makes the copied outbox\nreadable by the forwarder again",
			detail: "Changes the outbox of an existing database whose schema is up to date; it\n" +
				"creates no database and applies no migration (run `orderstream migrate` first)."},
		{name: "orders trace", args: "ID", json: true, summary: "one order's story: its steps in time order, from\n" +
			"its placement through the outbox, its streams and\nits handlers, and what is missing when unsettled",
			detail: "Reads only: the database (the order, its outbox rows, the inbox, parked\n" +
				"messages, re-drives, its reservation and release) and Redis (its events'\n" +
				"stream entries, the dead letters, the consumer groups). It creates no\n" +
				"database and applies no migration, and fails when the database does not\n" +
				"exist or its schema is missing or behind."},
		{name: "deadletters list", json: true, summary: "the messages that could not be handled",
			detail: "Reads only the dead-letter stream in Redis; it opens no database."},
		{name: "deadletters replay", args: "ID... | --all", summary: "puts dead letters back on their stream (same\n" +
			"UUID: the inbox still deduplicates)",
			detail: "Writes only to Redis; it opens no database."},
		{name: "handlers list", json: true, summary: "the message handlers: each group's name, stream,\nconsumer group and event types",
			detail: "Reads the list the worker registers (handlers.go); needs neither the\nenvironment nor the services."},
		{name: "handlers backfill", args: "NAME [--since DURATION|TIME]", summary: "runs one handler group over the events its stream\nand the outbox still hold (all, or since a time)",
			detail: "For a handler added to an existing stream: it handles the events written\n" +
				"before it was registered, from the stream's entries and the outbox rows\n" +
				"that clean-up has not deleted (STREAM_RETENTION, OUTBOX_RETENTION). Each\n" +
				"event goes through the handler's inbox, so an event handled already, by the\n" +
				"worker or an earlier run, is skipped: it is safe while the worker runs, and\n" +
				"safe to interrupt and run again. --since takes a duration back from now\n" +
				"(2h, 30m) or an RFC 3339 time; without it, everything retained. It goes back\n" +
				"no further than INBOX_RETENTION less an hour: the inbox may have forgotten\n" +
				"an older event, which would take effect again. An event the handler refuses\n" +
				"as malformed is counted and passed over (the worker dead-lettered it)."},
		{name: "token", args: "SUBJECT [--admin] [--ttl DURATION]", summary: "development only: mints a JWT for customer\nSUBJECT (an administrator's with --admin)",
			detail: "Signs with AUTH_JWT_SECRET, and only with ORDERSTREAM_DEV=true: in\n" +
				"production your identity provider issues the tokens. Prints the token alone,\n" +
				"to send as 'Authorization: Bearer <token>'."},
		{name: "version", json: true, summary: "the module version and VCS revision of this binary",
			detail: "Reads the build information the Go toolchain recorded in the binary; needs\n" +
				"neither the environment nor the services. Without a VCS stamp (go run, a build\n" +
				"outside a git checkout) the revision, time and modified fields are unknown."},
	}
}

// usage is the program's usage: its commands and where configuration comes from.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: orderstream [command] [flags]\n\ncommands:\n")
	for _, c := range commands() {
		name := c.name
		if c.args != "" {
			name += " " + c.args
		}
		for i, line := range strings.Split(c.summary, "\n") {
			if i > 0 {
				name = ""
			}
			fmt.Fprintf(&b, "  %-34s %s\n", name, line)
		}
	}
	b.WriteString("\nRun `orderstream COMMAND --help` for one command's flags.\n\n" +
		"Configuration comes from the environment (DATABASE_URL, REDIS_URL, HTTP_ADDR,\n" +
		"ADMIN_TOKEN, LOG_LEVEL, LOG_FORMAT, ...); see docs/operating.md for the full list.")
	return b.String()
}

// usage is the command's own usage, for its --help.
func (c command) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: orderstream %s", c.name)
	if c.args != "" {
		b.WriteString(" " + c.args)
	}
	if c.json {
		b.WriteString(" [--json]")
	}
	fmt.Fprintf(&b, "\n\n%s.\n", strings.ReplaceAll(c.summary, "\n", " "))
	if c.detail != "" {
		fmt.Fprintf(&b, "%s\n", c.detail)
	}
	b.WriteString("\nflags:\n")
	if c.json {
		b.WriteString("  --json     one JSON document instead of the text (its shape is in docs/operating.md)\n")
	}
	switch c.name {
	case "deadletters replay":
		b.WriteString("  --all      every dead letter, instead of the IDs given\n")
	case "handlers backfill":
		b.WriteString("  --since    a duration back from now (2h) or an RFC 3339 time\n")
	case "token":
		b.WriteString("  --admin    an administrator's token (roles: [admin])\n")
		b.WriteString("  --ttl      how long it is valid (default 24h)\n")
	}
	b.WriteString("  -h, --help this help")
	return b.String()
}

// invocation is a parsed command line.
type invocation struct {
	cmd  command
	args []string // the positional arguments: the IDs of deadletters replay, the order of orders trace
	json bool
	all  bool // deadletters replay --all
	// since is handlers backfill's --since: the events written at or
	// after it; the zero time for all.
	since time.Time
	help  bool // print the usage (cmd's, when cmd is set) and exit
	// admin and ttl are token's --admin and --ttl.
	admin bool
	ttl   time.Duration
}

// usageError is a command line that names no command, or gives a command
// flags or arguments it does not take. main exits with status 2 for it.
type usageError struct {
	problem string
	usage   string
}

func (e *usageError) Error() string { return e.problem + "\n\n" + e.usage }

// exitStatus is the exit status for run's error: 2 for a usage error, 1 for
// any other failure.
func exitStatus(err error) int {
	var u *usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// parseArgs reads a command line: a command of one or two words, such as
// "worker" or "outbox status", then its flags and arguments, in any order.
// No command is "all"; "help", "-h" and "--help", alone or before a
// command, ask for the usage.
func parseArgs(args []string) (invocation, error) {
	if len(args) == 0 {
		return invocation{cmd: lookup("all")}, nil
	}
	if slices.Contains([]string{"help", "-h", "-help", "--help"}, args[0]) {
		if len(args) == 1 {
			return invocation{help: true}, nil
		}
		cmd, rest := findCommand(args[1:])
		if cmd.name == "" || len(rest) > 0 {
			return invocation{}, &usageError{fmt.Sprintf("no help for %q: not a command", strings.Join(args[1:], " ")), usage()}
		}
		return invocation{cmd: cmd, help: true}, nil
	}
	cmd, rest := findCommand(args)
	if cmd.name == "" {
		return invocation{}, &usageError{fmt.Sprintf("unknown command %q", strings.Join(args, " ")), usage()}
	}

	inv := invocation{cmd: cmd}
	fs := flag.NewFlagSet("orderstream "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.json {
		fs.BoolVar(&inv.json, "json", false, "")
	}
	if cmd.name == "deadletters replay" {
		fs.BoolVar(&inv.all, "all", false, "")
	}
	var since string
	switch cmd.name {
	case "handlers backfill":
		fs.StringVar(&since, "since", "", "")
	case "token":
		fs.BoolVar(&inv.admin, "admin", false, "")
		fs.DurationVar(&inv.ttl, "ttl", 24*time.Hour, "")
	}
	// flag stops at the first argument that is not a flag: parse again
	// after each one, so that flags may follow arguments.
	for {
		err := fs.Parse(rest)
		if errors.Is(err, flag.ErrHelp) {
			return invocation{cmd: cmd, help: true}, nil
		}
		if err != nil {
			return invocation{}, &usageError{err.Error(), cmd.usage()}
		}
		if fs.NArg() == 0 {
			break
		}
		inv.args, rest = append(inv.args, fs.Arg(0)), fs.Args()[1:]
	}
	switch {
	case cmd.name == "deadletters replay" && len(inv.args) == 0 && !inv.all:
		return invocation{}, &usageError{"deadletters replay needs dead-letter IDs or --all", cmd.usage()}
	case cmd.name == "deadletters replay" && len(inv.args) > 0 && inv.all:
		return invocation{}, &usageError{"deadletters replay takes IDs or --all, not both", cmd.usage()}
	case cmd.name == "handlers backfill" && len(inv.args) != 1:
		return invocation{}, &usageError{"handlers backfill needs the name of one handler group (orderstream handlers list)", cmd.usage()}
	case cmd.name == "orders trace" && len(inv.args) != 1:
		return invocation{}, &usageError{"orders trace needs the id of one order", cmd.usage()}
	case cmd.name == "token" && len(inv.args) != 1:
		return invocation{}, &usageError{"token needs the customer id to sign for, once", cmd.usage()}
	case cmd.name == "token" && inv.ttl <= 0:
		return invocation{}, &usageError{fmt.Sprintf("--ttl %s: give a positive duration", inv.ttl), cmd.usage()}
	case !slices.Contains([]string{"deadletters replay", "handlers backfill", "orders trace", "token"}, cmd.name) && len(inv.args) > 0:
		return invocation{}, &usageError{fmt.Sprintf("orderstream %s takes no arguments, got %q", cmd.name, strings.Join(inv.args, " ")), cmd.usage()}
	}
	if since != "" {
		t, err := parseSince(since, time.Now())
		if err != nil {
			return invocation{}, &usageError{err.Error(), cmd.usage()}
		}
		inv.since = t
	}
	return inv, nil
}

// parseSince reads --since: a positive duration back from now, or an RFC
// 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--since %s: give a positive duration back from now", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: neither a duration (2h, 30m) nor an RFC 3339 time (2026-12-07T10:00:00Z)", s)
	}
	return t, nil
}

// findCommand returns the command that args begin with, of two words or
// one, and the arguments after it; the zero command when there is none.
func findCommand(args []string) (command, []string) {
	if len(args) >= 2 {
		if c := lookup(args[0] + " " + args[1]); c.name != "" {
			return c, args[2:]
		}
	}
	if len(args) >= 1 {
		if c := lookup(args[0]); c.name != "" {
			return c, args[1:]
		}
	}
	return command{}, args
}

// lookup returns the command of that name; the zero command when none.
func lookup(name string) command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return command{}
}
