package redisstreams

import "testing"

// entryID.less orders stream entry IDs as Redis does: by milliseconds, then
// by sequence within one millisecond; an ID is not less than itself.
func TestEntryID_less(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b entryID
		want bool
	}{
		{entryID{1, 9}, entryID{2, 0}, true},
		{entryID{2, 0}, entryID{1, 9}, false},
		{entryID{1, 2}, entryID{1, 3}, true},
		{entryID{1, 3}, entryID{1, 2}, false},
		{entryID{1, 2}, entryID{1, 2}, false},
	} {
		if got := tc.a.less(tc.b); got != tc.want {
			t.Errorf("%s.less(%s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
