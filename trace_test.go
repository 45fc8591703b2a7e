package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestRun_ordersTrace: `orderstream orders trace ID` tells a settled
// order's story as text and as JSON, and the operations listener answers
// it to an administrator; an unknown or malformed id is an error that says
// so.
func TestRun_ordersTrace(t *testing.T) {
	t.Parallel()
	addr, opsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	getenv := with(env(t, addr), map[string]string{"OPS_ADDR": opsAddr})
	start(t, getenv)
	c := client{t, "http://" + addr}
	c.waitHealthy()
	sku := testenv.Unique("SKU")
	if code := c.do("PUT", "/inventory/"+sku, `{"available":1}`, nil); code != http.StatusOK {
		t.Fatalf("PUT /inventory = %d", code)
	}
	o := c.place(`{"customer_id":"c-1","items":[{"sku":"` + sku + `","quantity":1}]}`)
	if got := c.settled(o.ID); got.Status != "confirmed" {
		t.Fatalf("order = %+v, want it confirmed", got)
	}

	t.Run("text", func(t *testing.T) {
		out, err := cli(getenv, "orders", "trace", o.ID)
		if err != nil {
			t.Fatalf("orders trace = %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.HasPrefix(lines[0], "order "+o.ID+": confirmed, customer c-1") {
			t.Errorf("first line %q, want the order", lines[0])
		}
		for _, want := range []string{" +0s ", "placed", "written", "OrderPlaced", "on_stream", "handled",
			"inventory.reserve_stock", "orders.settle", "settled", "confirmed", "correlation id: "} {
			if !strings.Contains(out, want) {
				t.Errorf("orders trace printed\n%s\nwant %q in it", out, want)
			}
		}
		if strings.Contains(out, "missing:") || strings.Contains(out, "correlation id: none") {
			t.Errorf("orders trace printed\n%s\nwant a correlation id and nothing missing", out)
		}
	})

	t.Run("json", func(t *testing.T) {
		out, err := cli(getenv, "orders", "trace", "--json", o.ID)
		if err != nil {
			t.Fatalf("orders trace --json = %v\n%s", err, out)
		}
		var doc struct {
			Order struct {
				ID, Status string
			}
			CorrelationID string `json:"correlation_id"`
			Settled       bool
			Steps         []struct {
				Kind, Name string
				DelayMS    *float64 `json:"delay_ms"`
			}
			Missing []string
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("orders trace --json printed %s: %v", out, err)
		}
		if doc.Order.ID != o.ID || doc.Order.Status != "confirmed" || !doc.Settled || doc.CorrelationID == "" ||
			doc.Missing == nil || len(doc.Missing) != 0 || len(doc.Steps) < 10 || doc.Steps[0].Kind != "placed" {
			t.Errorf("orders trace --json = %+v", doc)
		}
		for _, s := range doc.Steps {
			if s.DelayMS == nil || *s.DelayMS < 0 {
				t.Errorf("step %+v: want a delay_ms, not negative", s)
			}
		}
	})

	t.Run("route", func(t *testing.T) {
		get := func(id, token string) (int, []byte) {
			req, _ := http.NewRequest("GET", "http://"+opsAddr+"/orders/"+id+"/story", nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, b
		}
		code, body := get(o.ID, mint(t, "ops-1", true))
		var doc struct {
			Order struct{ ID string }
			Steps []struct{ Kind string }
		}
		if err := json.Unmarshal(body, &doc); code != http.StatusOK || err != nil || doc.Order.ID != o.ID || len(doc.Steps) < 10 {
			t.Errorf("GET /orders/{id}/story as an administrator = %d %s", code, body)
		}
		if code, body := get(o.ID, testAdminToken); code != http.StatusOK {
			t.Errorf("GET /orders/{id}/story with ADMIN_TOKEN = %d %s", code, body)
		}
		for _, c := range []struct {
			id, token string
			status    int
		}{
			{o.ID, "", http.StatusUnauthorized},
			{o.ID, mint(t, "c-1", false), http.StatusForbidden},
			{uuid.NewString(), mint(t, "ops-1", true), http.StatusNotFound},
			{"nope", mint(t, "ops-1", true), http.StatusBadRequest},
		} {
			if code, body := get(c.id, c.token); code != c.status || !strings.Contains(string(body), `"status":`) {
				t.Errorf("GET /orders/%s/story = %d %s, want %d problem details", c.id, code, body, c.status)
			}
		}
	})

	t.Run("unknown_and_malformed_ids", func(t *testing.T) {
		unknown := uuid.NewString()
		for id, want := range map[string]string{
			unknown: "no order has the id " + unknown + " in this database (is DATABASE_URL right?)",
			"nope":  `"nope" is not an order id: an order id is a UUID`,
		} {
			out, err := cli(getenv, "orders", "trace", id)
			if err == nil || !strings.Contains(err.Error(), want) || exitStatus(err) != 1 || out != "" {
				t.Errorf("orders trace %s = %v (exit status %d), printed %q; want %q, status 1, nothing printed",
					id, err, exitStatus(err), out, want)
			}
		}
	})
}

// TestRun_ordersTraceUsage: orders trace takes one id; without one, or
// with two, it is a usage error.
func TestRun_ordersTraceUsage(t *testing.T) {
	t.Parallel()
	nothing := func(string) string { return "" }
	for _, args := range [][]string{{"orders", "trace"}, {"orders", "trace", "a", "b"}, {"orders", "trace", "a", "--all"}} {
		err := run(context.Background(), args, nothing, io.Discard, io.Discard)
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "usage: orderstream orders trace ID [--json]") {
			t.Errorf("%q = %v, want a usage error with the usage", args, err)
		}
	}
}

// TestRun_ordersTraceCreatesNoDatabase: with DATABASE_URL naming a
// database the server does not have, orders trace fails naming it and
// leaves the server without it.
func TestRun_ordersTraceCreatesNoDatabase(t *testing.T) {
	t.Parallel()
	name, dsn := otherDatabase(t)
	_, err := cli(envOn(t, dsn), "orders", "trace", uuid.NewString())
	if !errors.Is(err, postgres.ErrNoDatabase) || !strings.Contains(err.Error(), name) || exitStatus(err) != 1 {
		t.Errorf("orders trace = %v, want an error naming database %s, exit status 1", err, name)
	}
	if databaseExists(t, name) {
		t.Errorf("orders trace created the database %s", name)
	}
}

// TestMain_ordersTraceExitStatus: as a process, an unknown order exits 1
// with one line on stderr, no stack trace, nothing on stdout.
func TestMain_ordersTraceExitStatus(t *testing.T) {
	t.Parallel()
	id := uuid.NewString()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), asProcessEnv+"=orders trace "+id, "DATABASE_URL="+testenv.DatabaseURL(t),
		"REDIS_URL="+testenv.RedisURL(t), "STREAM_PREFIX="+testenv.StreamPrefix(t))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || stdout.Len() > 0 ||
		stderr.String() != "orderstream: no order has the id "+id+" in this database (is DATABASE_URL right?)\n" {
		t.Errorf("orderstream orders trace %s: %v, stdout %q, stderr %q; want exit status 1 and one line on stderr",
			id, err, stdout.String(), stderr.String())
	}
}
