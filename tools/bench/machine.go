package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine is what the figures were measured on and with.
type machine struct {
	nproc    int
	cpuModel string
	memory   string
	kernel   string
	load1    float64 // load average at the start
	busy     float64 // share of the machine busy over a second before the start

	goVersion string // of the binary measured
	commit    string // its VCS revision, "+ local changes" when it was built from a modified tree
	postgres  string
	pgConfig  string // the settings that move these figures most
	redis     string
	knobs     []string // application settings from the environment, when not the defaults
}

// appKnobs are the application's tuning variables that, when set in the
// environment, pass through to the processes measured.
var appKnobs = []string{"DB_MAX_CONNS", "HTTP_REQUEST_TIMEOUT", "OUTBOX_POLL_INTERVAL", "OUTBOX_BATCH_SIZE",
	"WORKER_CONCURRENCY", "HANDLER_TIMEOUT", "HANDLER_MAX_RETRIES", "STREAM_CLAIM_IDLE", "SHUTDOWN_TIMEOUT",
	"STARTUP_TIMEOUT", "CLEANUP_INTERVAL", "OUTBOX_RETENTION", "INBOX_RETENTION", "STREAM_RETENTION",
	"METRICS_INTERVAL", "LOG_LEVEL", "GOMAXPROCS", "GOGC", "GOMEMLIMIT"}

func describeMachine(ctx context.Context, st *stage) machine {
	m := machine{nproc: runtime.NumCPU(), cpuModel: "unknown", memory: "unknown", kernel: "unknown"}
	if v := firstMatch("/proc/cpuinfo", "model name"); v != "" {
		m.cpuModel = v
	}
	if v := firstMatch("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.load1, _ = strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	}
	// The load average counts processes waiting on the disk too, and
	// lags by minutes; what the CPUs do right now says more.
	before := sampleCPU(nil)
	if sleep(ctx, time.Second) == nil {
		m.busy = sampleCPU(nil).usageSince(before).machine
	}

	m.goVersion, m.commit = binaryVersion(st.opts.bin)
	m.postgres = "unknown"
	var version string
	if err := st.admin.QueryRowContext(ctx, `SHOW server_version`).Scan(&version); err == nil {
		m.postgres = "PostgreSQL " + version
	}
	var settings []string
	for _, name := range []string{"shared_buffers", "synchronous_commit", "fsync", "autovacuum", "max_connections"} {
		var v string
		if err := st.admin.QueryRowContext(ctx, `SELECT current_setting($1)`, name).Scan(&v); err == nil {
			settings = append(settings, name+"="+v)
		}
	}
	m.pgConfig = strings.Join(settings, ", ")
	m.redis = "unknown"
	if info, err := st.rdb.InfoMap(ctx, "server", "persistence").Result(); err == nil {
		m.redis = "Redis " + info["Server"]["redis_version"]
		if aof := info["Persistence"]["aof_enabled"]; aof != "" {
			m.redis += ", appendonly=" + map[string]string{"0": "no", "1": "yes"}[aof]
		}
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(appKnobs, k) {
			m.knobs = append(m.knobs, kv)
		}
	}
	slices.Sort(m.knobs)
	return m
}

// binaryVersion reads the Go version and the VCS revision the binary was
// built from; without a revision stamped in it, the checkout's HEAD.
func binaryVersion(bin string) (goVersion, commit string) {
	goVersion, commit = runtime.Version()+" (the bench's; the binary's is unreadable)", "unknown"
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return goVersion, commit
	}
	goVersion = info.GoVersion
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	where := ""
	if rev == "" {
		// A binary built without VCS stamping (-buildvcs=false, or by a
		// test): the best guess is the checkout it lies in.
		out, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			return goVersion, commit
		}
		rev, where = strings.TrimSpace(string(out)), " (HEAD of the checkout; the binary has no VCS stamp)"
		if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(out) > 0 {
			modified = "true"
		}
	}
	commit = rev[:min(len(rev), 12)]
	if modified == "true" {
		commit += " + local changes"
	}
	return goVersion, commit + where
}

// firstMatch returns the value of the first "key: value" line of file
// whose key is key.
func firstMatch(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
