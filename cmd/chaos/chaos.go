package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// monkey does the damage while the load runs: a SIGKILL of a random
// application process every killEvery (±1/3), one PostgreSQL restart about
// a third of the way through the orders and one Redis restart about two
// thirds of the way.
type monkey struct {
	cluster   *cluster
	pg        *pgServer
	redis     *redisServer
	killEvery time.Duration
	logger    *slog.Logger

	mu            sync.Mutex
	kills         int
	pgRestarts    int
	redisRestarts int
	problems      []string
}

// killUntil kills processes until ctx is done.
func (m *monkey) killUntil(ctx context.Context, rng *rand.Rand) {
	if m.killEvery <= 0 {
		return
	}
	for {
		third := int64(m.killEvery / 3)
		gap := m.killEvery - time.Duration(third) + time.Duration(rng.Int64N(2*third+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		p := m.cluster.procs[rng.IntN(len(m.cluster.procs))]
		if pid, ok := p.kill(); ok {
			m.mu.Lock()
			m.kills++
			m.mu.Unlock()
			m.logger.Info("chaos: SIGKILL", "process", p.name, "pid", pid)
		}
	}
}

// restartServers restarts PostgreSQL once progress() passes 1/3 and Redis
// once it passes 2/3. It returns when both are done or ctx is done; the
// load reaches 1 by itself, so both happen in every complete run.
func (m *monkey) restartServers(ctx context.Context, progress func() float64) {
	steps := []struct {
		at      float64
		name    string
		restart func(context.Context) (time.Duration, error)
		count   *int
	}{
		{1.0 / 3, "postgres", m.pg.restart, &m.pgRestarts},
		{2.0 / 3, "redis", m.redis.restart, &m.redisRestarts},
	}
	for _, s := range steps {
		for progress() < s.at {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		m.logger.Info("chaos: restarting", "server", s.name, "progress", fmt.Sprintf("%.0f%%", 100*progress()))
		took, err := s.restart(ctx)
		m.mu.Lock()
		if err != nil {
			m.problems = append(m.problems, fmt.Sprintf("restart %s: %v", s.name, err))
		} else {
			*s.count++
		}
		m.mu.Unlock()
		if err != nil {
			m.logger.Error("chaos: restart failed", "server", s.name, "err", err)
			continue
		}
		m.logger.Info("chaos: restarted", "server", s.name, "took", took.Round(time.Millisecond))
	}
}

// counts returns what the monkey did.
func (m *monkey) counts() (kills, pgRestarts, redisRestarts int, problems []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kills, m.pgRestarts, m.redisRestarts, append([]string(nil), m.problems...)
}
