package redisstreams_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

// With WaitReplicas, a publish returns once the replica has the entry, and
// fails with ErrNotReplicated when the replica does not get it: the
// forwarder then keeps the outbox row, and a failover cannot lose an event
// it has acked.
func TestPublisher_waitsForReplicas(t *testing.T) {
	t.Parallel()
	servers := testenv.StartReplicated(t, 1)
	streams := redisstreams.Config{
		Redis:        &redis.UniversalOptions{Addrs: servers[:1]},
		WaitReplicas: 1,
		WaitTimeout:  time.Second, // long, for a loaded machine: the failing wait below takes it whole
	}
	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	replica := redis.NewClient(&redis.Options{Addr: servers[1]})
	defer replica.Close()
	ctx := context.Background()

	if err := pub.Publish("replicated", message.NewMessage(watermill.NewUUID(), []byte("a"))); err != nil {
		t.Fatalf("publish with the replica attached = %v", err)
	}
	// WAIT counts a replica once it has processed the entry: it is there
	// to read, not on its way.
	if n, err := replica.XLen(ctx, "replicated").Result(); err != nil || n != 1 {
		t.Errorf("the replica holds %d entries (%v) once the publish returned, want 1", n, err)
	}

	if err := replica.ReplicaOf(ctx, "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForInfo(t, servers[0], "replication", "connected_slaves:0")
	err = pub.Publish("replicated", message.NewMessage(watermill.NewUUID(), []byte("b")))
	if !errors.Is(err, redisstreams.ErrNotReplicated) {
		t.Errorf("publish without a replica = %v, want ErrNotReplicated", err)
	}
}

// On a Cluster the WAIT goes to the master of the stream's slot, with its
// XADD: streams of every master take entries, and a wait for a replica
// that no master has fails as not replicated, not as a redirection.
func TestPublisher_waitsOnTheMasterOfTheSlot(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t)
	opts, err := redisstreams.ParseURL(cluster.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(opts.Cluster())
	defer rdb.Close()
	ctx := context.Background()
	// A stream on each master.
	onMaster := map[string]string{}
	for i := 0; len(onMaster) < len(cluster.Masters); i++ {
		key := fmt.Sprintf("stream-%d", i)
		m, err := rdb.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := onMaster[m.Options().Addr]; !ok {
			onMaster[m.Options().Addr] = key
		}
	}
	for wait, want := range map[int]error{0: nil, 1: redisstreams.ErrNotReplicated} {
		pub, err := redisstreams.Config{Redis: opts, WaitReplicas: wait, WaitTimeout: 50 * time.Millisecond}.Publisher()
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		for master, key := range onMaster {
			err := pub.Publish(key, message.NewMessage(watermill.NewUUID(), []byte("x")))
			if !errors.Is(err, want) {
				t.Errorf("publish to %s on %s, waiting for %d replicas = %v, want %v", key, master, wait, err, want)
			}
		}
	}
	for master, key := range onMaster {
		if n, err := rdb.XLen(ctx, key).Result(); err != nil || n != 2 {
			t.Errorf("%s on %s holds %d entries (%v), want 2: a failed wait leaves the entry", key, master, n, err)
		}
	}
}

// BenchmarkPublisher_replicaWait measures what waiting for a replica adds
// to one publish (one entry, as the forwarder publishes): go test -run '^$'
// -bench Publisher_replicaWait ./redisstreams/
func BenchmarkPublisher_replicaWait(b *testing.B) {
	servers := testenv.StartReplicated(b, 1)
	for _, wait := range []int{0, 1} {
		b.Run(fmt.Sprintf("replicas=%d", wait), func(b *testing.B) {
			pub, err := redisstreams.Config{Redis: &redis.UniversalOptions{Addrs: servers[:1]}, WaitReplicas: wait}.Publisher()
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			for b.Loop() {
				if err := pub.Publish("bench", message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"x"}`))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
