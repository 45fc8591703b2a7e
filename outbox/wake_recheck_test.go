package outbox_test

import (
	"testing"

	"github.com/orderstream/orderstream/events"
)

// TestForwarder_rechecksUntilTheHiddenRowsShow: after a wake-up whose poll
// finds nothing, the forwarder keeps looking again (outboxWaker), not just
// once: here the older transaction that hides the committed row is still
// open through the wake-up poll and the first recheck, and the row is
// forwarded by a later recheck, long before the fallback poll.
//
// As in TestForwarder_rechecksAWakeUpWhoseRowsAreStillHidden, table locks
// queued behind a poll hold the next poll, with its snapshot taken: lock2
// holds the wake-up poll, and lock3, queued behind that poll, holds the
// first recheck while the older transaction ends.
func TestForwarder_rechecksUntilTheHiddenRowsShow(t *testing.T) {
	t.Parallel()
	w := untilWakeUpPoll(t, "hidden-longer")
	lock3, pid3 := session(t, w.db)
	locked3 := lockOutboxAsync(lock3)
	waitBlocked(t, w.db, pid3) // behind lock2, and behind the wake-up poll queued first
	w.lock.Rollback()          // the wake-up poll finds nothing: the older transaction is open
	if err := <-locked3; err != nil {
		t.Fatal(err)
	}
	waitPollBlockedBy(t, w.db, pid3) // the first recheck, with its snapshot taken
	w.endOlder(false)                // which notifies nobody
	lock3.Rollback()                 // the first recheck finds nothing either

	entries(t, w.rdb, w.streams.Name(events.StreamOrdersPlaced), 1)
}
