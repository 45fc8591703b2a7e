package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated means that Redis took an entry but fewer replicas than
// WaitReplicas confirmed it in time. The publish fails, so that its caller
// tries again (the forwarder leaves the outbox row unacked): a failover to
// a replica that lacks the entry would lose it, and with it the event.
var ErrNotReplicated = errors.New("stream entry not confirmed by enough replicas")

// replicatedClient is a publisher's client that waits, after each XADD,
// until replicas replicas have the entry (WAIT), and fails the XADD when
// fewer have it within timeout.
//
// The WAIT goes in one pipeline with its XADD, to the master of the
// stream's key: WAIT waits only for the writes of its own connection, so a
// WAIT sent once the publish had returned could go out on another
// connection of the pool, one that wrote nothing, and pass at once whatever
// the replicas have.
//
// A confirmed entry is in the replicas' memory (Redis 7.0 has no WAITAOF to
// wait for their disks), which survives a failover to one of them; an
// entry that fails may be on the stream anyway, and is then published
// twice, which the inbox absorbs.
type replicatedClient struct {
	redis.UniversalClient
	replicas int
	timeout  time.Duration
}

func (c replicatedClient) XAdd(ctx context.Context, a *redis.XAddArgs) *redis.StringCmd {
	add := redis.NewStringCmd(ctx)
	master, err := c.masterOf(ctx, a.Stream)
	if err != nil {
		add.SetErr(fmt.Errorf("find the master of %s: %w", a.Stream, err))
		return add
	}
	// (A pipeline has no Wait method: the command by hand.)
	wait := redis.NewIntCmd(ctx, "wait", c.replicas, c.timeout.Milliseconds())
	_, err = master.Pipelined(ctx, func(p redis.Pipeliner) error {
		add = p.XAdd(ctx, a)
		return p.Process(ctx, wait)
	})
	switch {
	case add.Err() != nil:
		c.reloadIfMoved(ctx, add.Err())
	case err != nil:
		add.SetErr(fmt.Errorf("wait for replicas: %w", err))
	case wait.Val() < int64(c.replicas):
		add.SetErr(fmt.Errorf("%w: entry %s of %s on %d of %d replicas after %s",
			ErrNotReplicated, add.Val(), a.Stream, wait.Val(), c.replicas, c.timeout))
	}
	return add
}

// masterOf returns the client of the server that takes writes to key: the
// Cluster node of key's slot; else the client itself, whose connections
// all go to its one server or to the master Sentinel names.
func (c replicatedClient) masterOf(ctx context.Context, key string) (redis.Cmdable, error) {
	if cc, ok := c.UniversalClient.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, key)
	}
	return c.UniversalClient, nil
}

// reloadIfMoved has a Cluster client read the slots again when a node
// said that key's slot is elsewhere: a node's own client follows no
// redirection, so the next publish must find the new master itself.
func (c replicatedClient) reloadIfMoved(ctx context.Context, err error) {
	cc, ok := c.UniversalClient.(*redis.ClusterClient)
	if !ok {
		return
	}
	_, moved := redis.IsMovedError(err)
	_, ask := redis.IsAskError(err)
	if moved || ask {
		cc.ReloadState(ctx)
	}
}
