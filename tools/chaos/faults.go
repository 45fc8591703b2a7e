package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// The faults the summary line counts, each under its name there. A new kind
// of fault adds its name to faultKinds and counts each
// time it strikes with faults.add; the summary then prints it, 0 included.
const (
	faultSIGKILL  = "sigkill"        // an application process killed with SIGKILL
	faultRedis    = "redis_sigkill"  // redis-server killed with SIGKILL, then started on its data
	faultPostgres = "pg_immediate"   // pg_ctl stop -m immediate, then crash recovery at start
	faultRowLock  = "row_lock"       // a session holds one SKU's stock row FOR UPDATE
	faultIdleTx   = "idle_tx"        // a session sits idle in a transaction that holds an xid
	faultSIGTERM  = "sigterm"        // an application process stopped with SIGTERM, then started again
	faultRewind   = "redis_rewind"   // redis-server killed with SIGKILL, then started on an older copy of its data
	faultFailover = "redis_failover" // a Redis master SIGKILLed and its replica promoted by the Sentinels

	// The network faults (toxiproxy.go), each on one process's link to one
	// server, in place for a while and then taken away.
	faultLatency   = "net_latency"   // 50-300 ms, jitter up to half of it, each way, for 5-15 s
	faultReset     = "net_reset"     // every connection reset (TCP RST) once data flows, for 1-3 s
	faultBlackhole = "net_blackhole" // nothing gets through one way or both, for 10-30 s
	faultBandwidth = "net_bandwidth" // 20-200 KB/s each way, for 5-15 s
)

// netFaultKinds are the network faults, taken in turns.
var netFaultKinds = []string{faultLatency, faultReset, faultBlackhole, faultBandwidth}

// faultKinds is the order of the counts in the summary.
var faultKinds = append([]string{faultSIGKILL, faultRedis, faultPostgres}, append(netFaultKinds, faultRowLock, faultIdleTx, faultSIGTERM, faultRewind, faultFailover)...)

// faults counts the faults done, by kind. It is safe for concurrent use.
type faults struct {
	mu    sync.Mutex
	kinds []string
	n     map[string]int
}

func newFaults(kinds ...string) *faults {
	return &faults{kinds: append([]string(nil), kinds...), n: map[string]int{}}
}

func (f *faults) add(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.n[kind]; !ok && !slices.Contains(f.kinds, kind) {
		f.kinds = append(f.kinds, kind) // unregistered: still counted
	}
	f.n[kind]++
}

func (f *faults) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[kind]
}

// String is "sigkill=27 redis_sigkill=3 ...", every kind in order.
func (f *faults) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := make([]string, len(f.kinds))
	for i, k := range f.kinds {
		parts[i] = fmt.Sprintf("%s=%d", k, f.n[k])
	}
	return strings.Join(parts, " ")
}
