package worker

import (
	"testing"
	"time"

	"github.com/orderstream/orderstream/parked"
)

func TestMessagesConfig_withDefaults(t *testing.T) {
	t.Parallel()
	t.Run("fills_in_what_is_zero", func(t *testing.T) {
		got := MessagesConfig{}.withDefaults()
		if got.Tracer == nil {
			t.Error("no tracer provider, want the no-op one")
		}
		want := parked.Backoff{Initial: time.Second, Max: time.Minute}
		if got.RetryInitial != 100*time.Millisecond || got.ParkBackoff != want || got.SurfaceAfter != 5*time.Minute {
			t.Errorf("retry %s, park %+v, surface after %s; want 100ms, %+v, 5m0s", got.RetryInitial, got.ParkBackoff, got.SurfaceAfter, want)
		}
	})
	t.Run("keeps_what_is_set", func(t *testing.T) {
		set := MessagesConfig{
			RetryInitial: time.Millisecond,
			ParkBackoff:  parked.Backoff{Initial: 2 * time.Millisecond, Max: 2 * time.Millisecond},
			SurfaceAfter: 3 * time.Millisecond,
		}
		if got := set.withDefaults(); got.RetryInitial != set.RetryInitial || got.ParkBackoff != set.ParkBackoff || got.SurfaceAfter != set.SurfaceAfter {
			t.Errorf("withDefaults() = retry %s, park %+v, surface after %s; want those set", got.RetryInitial, got.ParkBackoff, got.SurfaceAfter)
		}
	})
	t.Run("raises_a_max_below_initial", func(t *testing.T) {
		for _, tc := range []struct{ initial, max, want time.Duration }{
			{time.Second, time.Millisecond, time.Minute},
			{2 * time.Minute, time.Second, 2 * time.Minute},
		} {
			got := MessagesConfig{ParkBackoff: parked.Backoff{Initial: tc.initial, Max: tc.max}}.withDefaults()
			if got.ParkBackoff.Max != tc.want {
				t.Errorf("Initial %s, Max %s: Max became %s, want %s", tc.initial, tc.max, got.ParkBackoff.Max, tc.want)
			}
		}
	})
}
