package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// MetadataUndecodable is set on a message built from a stream entry that
// could not be read; its value says why. Such a message is dead-lettered.
const MetadataUndecodable = "undecodable"

// Streams makes Watermill publishers and subscribers for the Redis streams.
type Streams struct {
	Redis *redis.Options
	// Prefix is put before every stream name, so that several environments
	// (or tests) can share one Redis.
	Prefix string
	// ClaimIdle is how long an entry stays pending with a consumer that
	// neither acks nor nacks it before another consumer claims it. It must
	// outlast the longest a handler can take, retries included.
	ClaimIdle time.Duration
	// NackResend is how long a subscriber waits before redelivering an entry
	// that its handler nacked.
	NackResend time.Duration
	// Consumers is how many consumers of its group a Subscriber runs; each
	// holds one entry at a time, so it is how many entries a handler works
	// on at once.
	Consumers int
	Logger    watermill.LoggerAdapter
}

// Name is the Redis key of stream.
func (s Streams) Name(stream string) string { return s.Prefix + stream }

// Client returns a new Redis client. watermill-redisstream closes the client
// of a publisher or subscriber with it, so each gets its own.
func (s Streams) Client() *redis.Client { return redis.NewClient(s.Redis) }

// Publisher publishes to the streams named by topic, prefix added.
func (s Streams) Publisher() (message.Publisher, error) {
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: s.Client()}, s.Logger)
	if err != nil {
		return nil, fmt.Errorf("create stream publisher: %w", err)
	}
	return prefixedPublisher{pub, s.Prefix}, nil
}

// Subscriber reads streams as s.Consumers consumers of the consumer group
// group. Subscribe to s.Name(stream).
func (s Streams) Subscriber(group string) (message.Subscriber, error) {
	n := max(s.Consumers, 1)
	subs := make([]message.Subscriber, 0, n)
	for range n {
		sub, err := s.consumer(group)
		if err != nil {
			return nil, errors.Join(err, (&fanIn{subs: subs}).Close())
		}
		subs = append(subs, sub)
	}
	if n == 1 {
		return subs[0], nil
	}
	return &fanIn{subs: subs, closing: make(chan struct{})}, nil
}

func (s Streams) consumer(group string) (message.Subscriber, error) {
	host, _ := os.Hostname()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        s.Client(),
		Unmarshaller:  tolerantUnmarshaller{},
		ConsumerGroup: group,
		Consumer:      fmt.Sprintf("%s-%d-%s", host, os.Getpid(), watermill.NewShortUUID()),
		// The default NoSleep redelivers a nacked entry at once, in a loop.
		NackResendSleep: s.NackResend,
		MaxIdleTime:     s.ClaimIdle,
		ClaimInterval:   s.ClaimIdle / 4,
		// Without it the first read blocks forever and outlives Close.
		DisableIndefiniteInitialBlock: true,
	}, s.Logger)
	if err != nil {
		return nil, fmt.Errorf("create stream subscriber: %w", err)
	}
	return patientSubscriber{sub, s.Logger}, nil
}

// fanIn merges the messages of several consumers into one channel. The
// Watermill router runs a handler for each message it receives as it
// receives it, and each consumer waits for its message's ack before it
// reads the next: so n consumers, n messages in flight.
type fanIn struct {
	subs    []message.Subscriber
	closing chan struct{}
	once    sync.Once
}

func (f *fanIn) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	var wg sync.WaitGroup
	for _, sub := range f.subs {
		in, err := sub.Subscribe(ctx, topic)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range in {
				select {
				case out <- msg:
				case <-f.closing: // unacked: it stays pending, to be claimed
				}
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	return out, nil
}

func (f *fanIn) Close() error {
	if f.closing != nil {
		f.once.Do(func() { close(f.closing) })
	}
	var errs []error
	for _, sub := range f.subs {
		errs = append(errs, sub.Close())
	}
	return errors.Join(errs...)
}

type prefixedPublisher struct {
	message.Publisher
	prefix string
}

func (p prefixedPublisher) Publish(topic string, msgs ...*message.Message) error {
	return p.Publisher.Publish(p.prefix+topic, msgs...)
}

// tolerantUnmarshaller turns a stream entry that cannot be read into a
// message marked MetadataUndecodable instead of failing: watermill-redisstream
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
		uuid = watermill.NewUUID()
	}
	raw, _ := json.Marshal(values)
	msg = message.NewMessage(uuid, raw)
	msg.Metadata.Set(MetadataUndecodable, err.Error())
	return msg, nil
}
