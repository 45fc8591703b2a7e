package orders

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/validate"
)

func TestCursor(t *testing.T) {
	t.Parallel()
	f := listFilter{customerID: "c-1", status: StatusPending}
	c := cursor{createdAt: time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC), id: uuid.New()}

	t.Run("round_trips_with_its_filters", func(t *testing.T) {
		t.Parallel()
		got, ok := decodeCursor(c.encode(f), f)
		if !ok || !got.createdAt.Equal(c.createdAt) || got.id != c.id {
			t.Errorf("decodeCursor(encode(%+v)) = %+v, %v", c, got, ok)
		}
	})

	t.Run("refuses_every_one_character_change", func(t *testing.T) {
		t.Parallel()
		s := c.encode(f)
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		for i := range len(s) {
			for _, r := range alphabet {
				if byte(r) == s[i] {
					continue
				}
				changed := s[:i] + string(r) + s[i+1:]
				if _, ok := decodeCursor(changed, f); ok {
					t.Fatalf("decodeCursor accepted %q, %q with character %d changed", changed, s, i)
				}
			}
		}
		for _, cut := range []string{s[:len(s)-1], s + "A", "", "=" + s[1:]} {
			if _, ok := decodeCursor(cut, f); ok {
				t.Errorf("decodeCursor accepted %q", cut)
			}
		}
	})

	t.Run("takes_the_first_and_the_last_year_RFC_3339_writes", func(t *testing.T) {
		t.Parallel()
		for _, at := range []time.Time{
			time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		} {
			got, ok := decodeCursor(cursor{createdAt: at, id: c.id}.encode(f), f)
			if !ok || !got.createdAt.Equal(at) {
				t.Errorf("a cursor at %v decodes as %v, %v; want it back", at, got.createdAt, ok)
			}
		}
	})

	t.Run("refuses_a_made_up_time_even_with_a_valid_tag", func(t *testing.T) {
		t.Parallel()
		s := NewService(testenv.DB(t))
		for _, micros := range []int64{math.MinInt64, -62135596800000001, 253402300800000000, math.MaxInt64} {
			after := cursor{createdAt: time.UnixMicro(micros), id: c.id}.encode(listFilter{})
			// PostgreSQL refuses most of these times: it must be the
			// request's fault (422), not a failed query.
			_, err := s.List(context.Background(), ListRequest{Limit: 1, After: after})
			var verrs validate.Errors
			if !errors.As(err, &verrs) || len(verrs) != 1 || verrs[0].Field != "after" {
				t.Errorf("List after %d µs = %v, want an error on after", micros, err)
			}
		}
	})
}
