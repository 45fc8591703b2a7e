package redisstreams

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/events"
)

// FuzzDecodeMessage feeds arbitrary stream entries to the consumer's
// decoding: the unmarshaller always yields a message (never an error, which
// would stop the consume loop), and decoding it as an event either succeeds
// or says events.ErrMalformed.
func FuzzDecodeMessage(f *testing.F) {
	good, _ := redisstream.DefaultMarshallerUnmarshaller{}.Marshal("", func() *message.Message {
		m := message.NewMessage("b7a1c6b0-6d58-4c11-9a3c-5f4f2f0f8b11", []byte(`{"order_id":"o","items":[{"sku":"A","quantity":1}]}`))
		m.Metadata.Set(events.MetadataEventType, "OrderPlaced")
		return m
	}())
	f.Add(good[redisstream.UUIDHeaderKey].(string), string(good["payload"].([]byte)), string(good["metadata"].([]byte)), true)
	f.Add("", "not json", "\x81\xa1a", false)
	f.Add("u", `{"order_id":1}`, "\xde\xad\xbe\xef", true)
	f.Fuzz(func(t *testing.T, uuid, payload, metadata string, withUUID bool) {
		values := map[string]any{"payload": payload, "metadata": metadata}
		if withUUID {
			values[redisstream.UUIDHeaderKey] = uuid
		}
		msg, err := tolerantUnmarshaller{}.Unmarshal(values)
		if err != nil || msg == nil {
			t.Fatalf("Unmarshal(%v) = %v, %v", values, msg, err)
		}
		if _, err := events.Decode[events.OrderPlaced](msg); err != nil && !errors.Is(err, events.ErrMalformed) {
			t.Fatalf("Decode() = %v, want nil or events.ErrMalformed", err)
		}
	})
}
