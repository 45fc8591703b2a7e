package redisstreams

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
)

// Config makes Watermill publishers and subscribers for the Redis streams.
type Config struct {
	// Redis says which Redis: one server, a master that Sentinels watch,
	// or a Cluster (see ParseURL).
	Redis *redis.UniversalOptions
	// Prefix is put before every stream name, so that several environments
	// (or tests) can share one Redis.
	Prefix string
	// Consumed are the streams that consumer groups read, as the handler
	// registrations name them: the ones trimmed once every group has
	// acknowledged their entries, reported by Status, and to which a dead
	// letter can be replayed.
	Consumed []string
	// ClaimIdle is how long an entry stays pending with a consumer that
	// neither acks nor nacks it before another consumer claims it. It must
	// outlast the longest a handler can take, retries included.
	ClaimIdle time.Duration
	// NackResend is how long a subscriber waits before redelivering an entry
	// that its handler nacked.
	NackResend time.Duration
	// Consumers is how many entries a Subscriber holds at once: how many
	// messages a handler works on at once.
	Consumers int
	Logger    watermill.LoggerAdapter
	// StopTimeout is how long a graceful stop may take (SHUTDOWN_TIMEOUT):
	// a closing Subscriber lets the messages in hand finish for most of it
	// (DrainTimeout) before it cancels them.
	StopTimeout time.Duration
	// WaitReplicas, when above zero, makes a publish wait until that many
	// replicas have each entry (WAIT), and fail when fewer have it within
	// WaitTimeout: what a failover can lose is then only what no publish
	// reported written (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT).
	WaitReplicas int
	WaitTimeout  time.Duration
}

// Name is the Redis key of stream.
func (s Config) Name(stream string) string { return s.Prefix + stream }

// NewClient returns a new Redis client of the kind s.Redis names: of one
// server, of the master that the Sentinels name (following it through a
// failover), or of a Cluster. With WaitReplicas set, each XADD it sends
// waits for the replicas (see replicatedClient): it is what publishers,
// replays and the parked messages' republisher write with. Its other
// commands are as usual. watermill-redisstream closes the client of a
// publisher or subscriber with it, so each gets its own.
func (s Config) NewClient() redis.UniversalClient {
	opts := *s.Redis // the client may fill in defaults; s is shared
	if s.WaitReplicas <= 0 {
		return redis.NewUniversalClient(&opts)
	}
	timeout := s.WaitTimeout
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	// A pipeline reads its replies within the client's ReadTimeout (5 s
	// when 0, none when negative), not the WAIT's own: it must outlast the
	// wait.
	if read := cmp.Or(opts.ReadTimeout, 5*time.Second); read > 0 && read < timeout+time.Second {
		opts.ReadTimeout = timeout + time.Second
	}
	return replicatedClient{redis.NewUniversalClient(&opts), s.WaitReplicas, timeout}
}

// DefaultWaitTimeout is how long a write waits for its replicas when
// WaitReplicas is set and WaitTimeout is not (REDIS_WAIT_TIMEOUT's default).
const DefaultWaitTimeout = time.Second

// Publisher publishes to the streams named by topic, prefix added. With
// WaitReplicas set, a publish returns once that many replicas have its
// entries, and fails with ErrNotReplicated when fewer have them in time.
// Its Close waits for the publishes under way and fails those that come
// after it (ErrPublisherClosed).
func (s Config) Publisher() (message.Publisher, error) {
	client := s.NewClient()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}, s.Logger)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create stream publisher: %w", err), client.Close())
	}
	return &prefixedPublisher{Publisher: pub, prefix: s.Prefix}, nil
}

// Subscriber reads streams as one consumer of the consumer group group,
// with s.Consumers entries in hand at once. Subscribe to s.Name(stream).
// Its Close is graceful: see groupSubscriber.
func (s Config) Subscriber(group string) (message.Subscriber, error) {
	opts := *s.Redis
	// A connection for each stream's reads and one for its acks, with
	// room to spare (of a Cluster, per node: a stream is on one).
	if opts.PoolSize == 0 {
		opts.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	opts.PoolSize = max(opts.PoolSize, s.slots()+2)
	// patientSubscriber: creating the group at Subscribe needs Redis.
	return patientSubscriber{s.subscriber(group, redis.NewUniversalClient(&opts)), s.Logger}, nil
}

// slots is how many entries a subscriber holds in hand at once.
func (s Config) slots() int { return max(s.Consumers, 1) }

// subscriber is Subscriber's group subscriber, on client.
func (s Config) subscriber(group string, client redis.UniversalClient) *groupSubscriber {
	host, _ := os.Hostname()
	return &groupSubscriber{
		client: client,
		group:  group,
		// A name of its own per process start: what a stopped process held
		// is told apart from what a new one holds.
		name:       fmt.Sprintf("%s-%d-%s", host, os.Getpid(), watermill.NewShortUUID()),
		slots:      s.slots(),
		claimIdle:  s.ClaimIdle,
		nackResend: s.NackResend,
		drain:      DrainTimeout(s.StopTimeout),
		// watermill-redisstream's entry format, read tolerantly.
		unmarshaller: tolerantUnmarshaller{},
		logger:       s.Logger,
		stopping:     make(chan struct{}),
	}
}

// DrainTimeout is how long a stop that may take stop lets the messages in
// hand finish: most of it, so that what it then gives up is given up
// cleanly before the stop's time is out.
func DrainTimeout(stop time.Duration) time.Duration {
	if stop <= 0 {
		stop = DefaultStopTimeout
	}
	return stop - stop/10
}

// DefaultStopTimeout is the time of a stop when none is set (SHUTDOWN_TIMEOUT's default).
const DefaultStopTimeout = 30 * time.Second

// prefixedPublisher adds the prefix to each topic, and closes only between
// publishes: watermill-redisstream's publisher must not be closed while it
// publishes (the two race on its closed flag), and Watermill's router can
// hand a handler a message while it closes (the handler is counted after
// the router's wait for the running ones began), so a forwarder's Close of
// its publisher after the router's may come during that handler's publish.
type prefixedPublisher struct {
	message.Publisher
	prefix string

	mu     sync.RWMutex
	closed bool
}

// ErrPublisherClosed is the error of a publish after the publisher's Close.
var ErrPublisherClosed = errors.New("stream publisher closed")

func (p *prefixedPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrPublisherClosed
	}
	return p.Publisher.Publish(p.prefix+topic, msgs...)
}

func (p *prefixedPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.Publisher.Close()
}

// tolerantUnmarshaller turns a stream entry that cannot be read into a
// message marked events.MetadataUndecodable instead of failing: watermill-redisstream
// stops its consume loop on an unmarshal error, so one bad entry would stop
// the consumer for good.
type tolerantUnmarshaller struct {
	redisstream.DefaultMarshallerUnmarshaller
}

func (u tolerantUnmarshaller) Unmarshal(values map[string]any) (*message.Message, error) {
	msg, err := u.DefaultMarshallerUnmarshaller.Unmarshal(values)
	if err == nil {
		return msg, nil
	}
	uuid, _ := values[redisstream.UUIDHeaderKey].(string)
	if uuid == "" {
		// Named after the entry's content, not random: each redelivery
		// of the entry is then the same message (one inbox key, one
		// dead letter's identity), not a new one.
		uuid = contentUUID(values)
	}
	raw, _ := json.Marshal(values)
	msg = message.NewMessage(uuid, raw)
	msg.Metadata.Set(events.MetadataUndecodable, err.Error())
	return msg, nil
}
