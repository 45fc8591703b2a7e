package outbox

import (
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/postgres"
)

// waker is a shard's waker whose own schedule would wait an hour: only a
// wake-up or an announced commit moves it. Its shard holds rows past the
// group's position while beyond is true.
func waker(beyond bool) (*outboxWaker, chan struct{}, *signal) {
	wake, commits := make(chan struct{}, 1), &signal{}
	w := &outboxWaker{wake: wake, done: make(chan struct{}), fallback: time.Second, spacing: time.Hour, commits: commits,
		beyond: func() bool { return beyond }}
	return w, wake, commits
}

// wokenAndEmpty has w's loop woken, and its wake-up poll find nothing: the
// rechecks begin, their schedule an hour apart.
func wokenAndEmpty(w *outboxWaker, wake chan struct{}) {
	wake <- struct{}{}
	w.HandleError(nil, true, nil) // waits for the wake-up, then polls
	w.recheckIn = time.Hour
}

// emptyPoll tells w that a poll found nothing, and closes the channel it
// returns once w lets the next poll go.
func emptyPoll(w *outboxWaker) <-chan struct{} {
	returned := make(chan struct{})
	go func() {
		w.HandleError(nil, true, nil)
		close(returned)
	}()
	return returned
}

// A commit announced to any shard, after the poll that found nothing
// began, rechecks at once: it may have ended the transaction that hid the
// rows, and it woke only its own shard's loop.
func TestOutboxWaker_rechecksOnceACommitIsAnnounced(t *testing.T) {
	t.Parallel()
	w, wake, commits := waker(true)
	wokenAndEmpty(w, wake)
	returned := emptyPoll(w)
	commits.fire()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("an announced commit did not bring the recheck")
	}
}

// A wake-up whose rows a poll had already taken costs at most the
// rechecks the schedule fits in a fallback interval, however many commits
// are announced meanwhile; then the loop waits for its next wake-up.
func TestOutboxWaker_rechecksAreBounded(t *testing.T) {
	t.Parallel()
	w, wake, commits := waker(true)
	wokenAndEmpty(w, wake)
	steps := recheckSteps(w.fallback)
	if steps != 15 { // 2, 4, … 64 ms, then 100 ms: 15 waits reach 1 s
		t.Errorf("recheckSteps(1s) = %d, want 15", steps)
	}
	for range steps {
		commits.fire()
		w.HandleError(nil, true, nil)
	}
	if w.rechecks != 0 {
		t.Fatalf("%d rechecks left after %d", w.rechecks, steps)
	}
	waitsForItsWakeUp(t, w, wake, commits)
}

// A wake-up whose poll finds nothing, when the shard holds no rows past
// the group's position, is one for rows a poll had already taken: nothing
// is hidden, and nothing is rechecked.
func TestOutboxWaker_rechecksNothingWhenNoRowIsHidden(t *testing.T) {
	t.Parallel()
	w, wake, commits := waker(false)
	wokenAndEmpty(w, wake)
	waitsForItsWakeUp(t, w, wake, commits)
}

// After a poll that found rows, the spacing that lets the next batch
// gather ends at a wake-up: the commit that woke the loop is one the next
// poll is for. A poll after it that finds nothing is a woken one, whose
// hidden rows are rechecked.
func TestOutboxWaker_aWakeUpEndsTheSpacingAfterABatch(t *testing.T) {
	t.Parallel()
	w, wake, commits := waker(true)
	returned := make(chan struct{})
	go func() {
		w.HandleError(nil, false, nil) // a poll found rows; the spacing is an hour
		close(returned)
	}()
	commits.fire()
	select {
	case <-returned:
		t.Fatal("a commit to another shard ended the spacing")
	case <-time.After(100 * time.Millisecond):
	}
	wake <- struct{}{}
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("a wake-up did not end the spacing after a batch")
	}
	w.recheckIn = time.Hour
	rechecked := emptyPoll(w)
	commits.fire()
	select {
	case <-rechecked:
	case <-time.After(10 * time.Second):
		t.Fatal("the poll after the wake-up found nothing and was not rechecked at the next commit")
	}
}

// waitsForItsWakeUp checks that w's next wait ends with its own wake-up,
// not with a commit announced to another shard.
func waitsForItsWakeUp(t *testing.T, w *outboxWaker, wake chan struct{}, commits *signal) {
	t.Helper()
	returned := emptyPoll(w)
	commits.fire()
	select {
	case <-returned:
		t.Fatal("a commit to another shard brought a poll")
	case <-time.After(100 * time.Millisecond):
	}
	wake <- struct{}{}
	<-returned
}

// A notification wakes the loops of the shards it names, all of them when
// it names none, and none of the forwarder whose own notifier sent it: that
// notifier woke them as each commit happened.
func TestWakeFor(t *testing.T) {
	t.Parallel()
	own := "own"
	for _, tc := range []struct {
		name, payload string
		woken         []int
	}{
		{"named_shards", notification("other", 1<<3|1<<5), []int{3, 5}},
		{"no_shard_named", notification("other", 0), allShards()},
		{"without_origin", "3,5", []int{3, 5}},
		{"empty", "", allShards()},
		{"unreadable", "other/x", allShards()},
		{"own", notification(own, 1<<3), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &Forwarder{}
			for shard := range f.wakes {
				f.wakes[shard] = make(chan struct{}, 1)
			}
			f.ownNotifications.Store(&own)
			wakeFor(f, tc.payload)
			var woken []int
			for shard, c := range f.wakes {
				if len(c) > 0 {
					woken = append(woken, shard)
				}
			}
			if !slices.Equal(woken, tc.woken) {
				t.Errorf("wakeFor(%q) woke %v, want %v", tc.payload, woken, tc.woken)
			}
		})
	}
}

func allShards() []int {
	var all []int
	for shard := range postgres.MaxOutboxShards {
		all = append(all, shard)
	}
	return all
}
