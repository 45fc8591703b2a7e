package testenv

import (
	"database/sql"
	"encoding/json"
	"testing"

	"github.com/orderstream/orderstream/outbox"
)

// DecodePayload reads the payload of the event e into v.
func DecodePayload(t testing.TB, e outbox.Envelope, v any) {
	t.Helper()
	if err := json.Unmarshal(e.Payload, v); err != nil {
		t.Fatalf("decode outbox event %s: %v", e.UUID, err)
	}
}

// OutboxEvents returns the events of every outbox shard whose payload has the string
// field equal to value, in the order they were written.
func OutboxEvents(t testing.TB, db *sql.DB, field, value string) []outbox.Envelope {
	t.Helper()
	rows, err := db.Query(`SELECT payload FROM ` + outbox.AllRows + ` AS o ORDER BY transaction_id, "offset"`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var out []outbox.Envelope
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		var e outbox.Envelope
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("outbox row is not an envelope: %v: %s", err, raw)
		}
		var p map[string]any
		_ = json.Unmarshal(e.Payload, &p)
		if p[field] == value {
			out = append(out, e)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}
