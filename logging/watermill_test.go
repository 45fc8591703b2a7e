package logging_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/orderstream/orderstream/logging"
)

func TestWatermill(t *testing.T) {
	for _, c := range []struct {
		level string
		want  []string // lines written, in order
	}{
		{"info", []string{"level=ERROR msg=failed"}},
		{"debug", []string{"level=DEBUG msg=subscribing", "level=DEBUG msg=debug", "level=ERROR msg=failed"}},
	} {
		var out bytes.Buffer
		logger, err := logging.New(&out, "text", c.level)
		if err != nil {
			t.Fatal(err)
		}
		l := logging.Watermill(logger).With(watermill.LogFields{"topic": "t"})
		l.Info("subscribing", nil)
		l.Debug("debug", nil)
		l.Trace("trace", watermill.LogFields{"n": 1})
		l.Error("failed", nil, nil)

		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != len(c.want) {
			t.Fatalf("at %s, wrote %q, want %d lines", c.level, out.String(), len(c.want))
		}
		for i, want := range c.want {
			if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "topic=t") {
				t.Errorf("at %s, line %d = %q, want %q with topic=t", c.level, i, lines[i], want)
			}
		}
	}
}
