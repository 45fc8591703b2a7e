package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuSample is the CPU time spent so far by the machine and by each party
// to a measurement. Postgres, Redis and the application share two cores
// with the load generator, so where the time goes says what limits a
// figure.
type cpuSample struct {
	at       time.Time
	busy     time.Duration // the whole machine, every core
	app      time.Duration // the orderstream process measured
	postgres time.Duration // every PostgreSQL process, exited backends included
	redis    time.Duration
	bench    time.Duration // this program and the children it waited for (pgbench)
}

// cpuUsage is the CPU each party used between two samples, as a share of
// the machine (1 = every core busy all along).
type cpuUsage struct {
	machine, app, postgres, redis, bench, other float64
}

// sampleCPU reads the CPU times now; apps are the orderstream processes
// (nil counts none).
func sampleCPU(apps ...*proc) cpuSample {
	s := cpuSample{at: time.Now(), busy: machineBusy()}
	for _, app := range apps {
		if app != nil && app.running() {
			t, _, _ := procTimes(strconv.Itoa(app.pid()))
			s.app += t
		}
	}
	own, children, _ := procTimes("self")
	s.bench = own + children
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid := filepath.Base(dir)
		comm, err := os.ReadFile(dir + "/comm")
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "postgres":
			own, children, err := procTimes(pid)
			if err != nil {
				continue
			}
			// The postmaster reaps every backend, so its children's
			// times hold the backends that exited in between (pgbench's
			// connections, for one).
			s.postgres += own + children
		case "redis-server":
			own, _, _ := procTimes(pid)
			s.redis += own
		}
	}
	return s
}

// usageSince is the CPU used from before to s.
func (s cpuSample) usageSince(before cpuSample) cpuUsage {
	capacity := float64(s.at.Sub(before.at)) * float64(cores())
	if capacity <= 0 {
		return cpuUsage{}
	}
	share := func(d time.Duration) float64 { return max(float64(d), 0) / capacity }
	u := cpuUsage{
		machine:  share(s.busy - before.busy),
		app:      share(s.app - before.app),
		postgres: share(s.postgres - before.postgres),
		redis:    share(s.redis - before.redis),
		bench:    share(s.bench - before.bench),
	}
	u.other = max(u.machine-u.app-u.postgres-u.redis-u.bench, 0)
	return u
}

func (u cpuUsage) String() string {
	if u.machine == 0 {
		return "not measured"
	}
	pct := func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }
	return fmt.Sprintf("machine %s: orderstream %s, postgres %s, redis %s, load generator %s, other %s",
		pct(u.machine), pct(u.app), pct(u.postgres), pct(u.redis), pct(u.bench), pct(u.other))
}

// procTimes returns the user+system CPU time of process pid ("self" for
// this one) and of its children it has waited for.
func procTimes(pid string) (own, children time.Duration, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields that
	// count come after its closing parenthesis, starting with the state.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 15 {
		return 0, 0, fmt.Errorf("read /proc/%s/stat: too few fields", pid)
	}
	ticks := func(i int) time.Duration {
		n, _ := strconv.ParseInt(fields[i], 10, 64)
		return time.Duration(n) * clockTick
	}
	// utime, stime, cutime, cstime are fields 14 to 17 of proc(5).
	return ticks(11) + ticks(12), ticks(13) + ticks(14), nil
}

// machineBusy is the CPU time every core has spent not idle since boot.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, f := range fields[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i == 3 || i == 4 || i >= 7 { // idle, iowait, steal; guest times are already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// cores is the number of CPUs of the machine, as /proc/stat counts them.
func cores() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "cpu") && len(line) > 3 && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
}
