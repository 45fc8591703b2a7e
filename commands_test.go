package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/auth"
)

// TestRun_usageErrors: a command line that names no command, or gives a
// command a flag or argument it does not take, is a usage error, with the
// usage in it; a failure of the program itself is not.
func TestRun_usageErrors(t *testing.T) {
	t.Parallel()
	nothing := func(string) string { return "" }
	for _, args := range [][]string{
		{"launch"}, {"outbox"}, {"outbox", "stats"}, {"outbox", "status", "extra"}, {"outbox", "status", "--jsn"},
		{"migrate", "--json"}, {"api", "now"}, {"deadletters", "replay"}, {"deadletters", "replay", "1-0", "--all"},
		{"deadletters", "list", "--all"}, {"version", "--verbose"}, {"help", "launch"},
		{"token"}, {"token", "a", "b"}, {"token", "a", "--ttl", "-1h"}, {"token", "a", "--ttl", "soon"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), args, nothing, &out, &out)
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "usage: orderstream") {
			t.Errorf("%q = %v, want a usage error with the usage", args, err)
		}
		if got := exitStatus(err); got != 2 {
			t.Errorf("%q: exit status %d, want 2", args, got)
		}
		if out.Len() != 0 {
			t.Errorf("%q printed %q, want nothing but the error", args, out.String())
		}
	}
	bad := func(k string) string {
		if k == "OUTBOX_POLL_INTERVAL" {
			return "soon"
		}
		return ""
	}
	if err := run(context.Background(), []string{"outbox", "status"}, bad, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || exitStatus(err) != 1 {
		t.Errorf("bad configuration = %v, exit status %d, want a failure with status 1", err, exitStatus(err))
	}
}

// TestRun_help: each command's --help (and -h, and help before it) prints
// that command's usage on stdout and does nothing else, whatever the
// environment says.
func TestRun_help(t *testing.T) {
	t.Parallel()
	// Every other command would fail on this configuration.
	bad := func(k string) string {
		if k == "OUTBOX_POLL_INTERVAL" {
			return "soon"
		}
		return ""
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		for _, args := range [][]string{append(words, "--help"), append(words, "-h"), append([]string{"help"}, words...)} {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), args, bad, &out, &errOut); err != nil {
				t.Errorf("%q = %v", args, err)
				continue
			}
			if !strings.HasPrefix(out.String(), "usage: orderstream "+c.name) || !strings.Contains(out.String(), "--help") {
				t.Errorf("%q printed\n%s\nwant the usage of %s", args, out.String(), c.name)
			}
			if c.json != strings.Contains(out.String(), "--json") {
				t.Errorf("%q: the usage mentions --json: %v, want %v", args, !c.json, c.json)
			}
			if errOut.Len() != 0 {
				t.Errorf("%q wrote to stderr: %s", args, errOut.String())
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, bad, &out, &out); err != nil || !strings.Contains(out.String(), "outbox status") ||
			!strings.Contains(out.String(), "migrate status") || !strings.Contains(out.String(), "version") {
			t.Errorf("%q = %v\n%s\nwant the list of commands", args, err, out.String())
		}
	}
}

// TestRun_token: orderstream token mints a token the API verifies, on a
// developer's machine only.
func TestRun_token(t *testing.T) {
	t.Parallel()
	dev := func(k string) string {
		return map[string]string{"ORDERSTREAM_DEV": "true", "AUTH_JWT_SECRET": testJWTSecret}[k]
	}
	verifier, err := auth.New(context.Background(), auth.Config{Secret: []byte(testJWTSecret)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want auth.Principal
	}{
		{[]string{"token", "c-42"}, auth.Principal{Subject: "c-42"}},
		{[]string{"token", "--admin", "ops-1", "--ttl", "5m"}, auth.Principal{Subject: "ops-1", Admin: true}},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), tt.args, dev, &out, io.Discard); err != nil {
			t.Fatalf("%q = %v", tt.args, err)
		}
		if p, err := verifier.Verify(strings.TrimSpace(out.String())); err != nil || p != tt.want {
			t.Errorf("%q minted %+v (%v), want %+v", tt.args, p, err, tt.want)
		}
	}
	for name, getenv := range map[string]func(string) string{
		"outside development": func(k string) string { return map[string]string{"AUTH_JWT_SECRET": testJWTSecret}[k] },
		"without a secret":    func(k string) string { return map[string]string{"ORDERSTREAM_DEV": "true"}[k] },
	} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"token", "c-42"}, getenv, &out, io.Discard); err == nil || out.Len() != 0 {
			t.Errorf("%s: token = %v, printed %q; want a refusal and nothing printed", name, err, out.String())
		}
	}
}

// TestMain_exitStatus runs the program as a process of its own: a usage
// error exits 2 with the usage on stderr, a failure exits 1, a command's
// --help exits 0 with its usage on stdout.
func TestMain_exitStatus(t *testing.T) {
	t.Parallel()
	_, dsn := otherDatabase(t)
	for _, c := range []struct {
		args             string
		status           int
		stdout, stderr   string
		noStdout, noErrs bool
	}{
		{args: "launch", status: 2, stderr: "usage: orderstream [command]", noStdout: true},
		{args: "outbox status --jsn", status: 2, stderr: "usage: orderstream outbox status", noStdout: true},
		{args: "outbox status", status: 1, stderr: "orderstream migrate", noStdout: true},
		{args: "outbox status --help", status: 0, stdout: "usage: orderstream outbox status", noErrs: true},
		{args: "version", status: 0, stdout: "revision", noErrs: true},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), asProcessEnv+"="+c.args, "DATABASE_URL="+dsn, "STARTUP_TIMEOUT=1s")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		status := 0
		if errors.As(err, &exit) {
			status = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("run %q: %v", c.args, err)
		}
		if status != c.status || !strings.Contains(stdout.String(), c.stdout) || !strings.Contains(stderr.String(), c.stderr) ||
			c.noStdout && stdout.Len() > 0 || c.noErrs && stderr.Len() > 0 {
			t.Errorf("orderstream %s: exit status %d, stdout\n%s\nstderr\n%s\nwant status %d, %q on stdout, %q on stderr",
				c.args, status, stdout.String(), stderr.String(), c.status, c.stdout, c.stderr)
		}
	}
}
