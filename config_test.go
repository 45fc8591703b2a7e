package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfig_parkingAndSessionLimits(t *testing.T) {
	t.Parallel()
	load := func(vars map[string]string) (config, error) {
		return loadConfig(func(k string) string { return vars[k] })
	}
	c, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ParkBackoffInitial != time.Second || c.ParkBackoffMax != time.Minute || c.ParkSurfaceAfter != 5*time.Minute ||
		c.DBIdleInTransactionTimeout != 15*time.Second || c.DBLockTimeout != 100*time.Millisecond {
		t.Errorf("defaults = %+v", c)
	}
	for _, bad := range []map[string]string{
		{"PARK_BACKOFF_INITIAL": "10s", "PARK_BACKOFF_MAX": "5s"},
		{"PARK_SURFACE_AFTER": "0s"},
		{"DB_LOCK_TIMEOUT": "-1s"},
		{"DB_IDLE_IN_TRANSACTION_TIMEOUT": "soon"},
		// Four 5 s attempts, 18 s of backoff and a 5 s park: 43 s.
		{"STREAM_CLAIM_IDLE": "40s"},
	} {
		if _, err := load(bad); err == nil {
			t.Errorf("loadConfig(%v) accepted it", bad)
		}
	}
	if _, err := load(map[string]string{"STREAM_CLAIM_IDLE": "44s"}); err != nil {
		t.Errorf("STREAM_CLAIM_IDLE=44s: %v", err)
	} else if _, err := load(map[string]string{"STREAM_CLAIM_IDLE": "43s"}); err == nil || !strings.Contains(err.Error(), "STREAM_CLAIM_IDLE") {
		t.Errorf("STREAM_CLAIM_IDLE=43s: %v, want refused", err)
	}
}

// TestLoadConfig_pooler: behind PgBouncer, what needs a session of its own
// must have another URL; without a pooler it defaults to DATABASE_URL.
func TestLoadConfig_pooler(t *testing.T) {
	t.Parallel()
	const pooled, direct = "postgres://u@pgbouncer:6432/db", "postgres://u@postgres:5432/db"
	load := func(vars map[string]string) (config, error) {
		return loadConfig(func(k string) string { return vars[k] })
	}
	c, err := load(map[string]string{"DATABASE_URL": direct})
	if url, variable := c.sessionURL(); err != nil || url != direct || variable != "DATABASE_URL" {
		t.Errorf("without DATABASE_SESSION_URL: session %q of %s, %v; want DATABASE_URL's", url, variable, err)
	}
	c, err = load(map[string]string{"DATABASE_URL": pooled, "DATABASE_POOLER": "pgbouncer", "DATABASE_SESSION_URL": direct})
	if url, variable := c.sessionURL(); err != nil || url != direct || variable != "DATABASE_SESSION_URL" {
		t.Errorf("behind PgBouncer: session %q of %s, %v; want DATABASE_SESSION_URL's", url, variable, err)
	}
	for _, bad := range []map[string]string{
		{"DATABASE_URL": pooled, "DATABASE_POOLER": "pgbouncer"},
		{"DATABASE_URL": pooled, "DATABASE_POOLER": "pgbouncer", "DATABASE_SESSION_URL": pooled},
		{"DATABASE_URL": pooled, "DATABASE_POOLER": "pgpool", "DATABASE_SESSION_URL": direct},
	} {
		if _, err := load(bad); err == nil || !strings.Contains(err.Error(), "DATABASE_POOLER") {
			t.Errorf("loadConfig(%v) = %v, want DATABASE_POOLER refused", bad, err)
		}
	}
}
