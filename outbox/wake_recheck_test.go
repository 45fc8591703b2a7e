package outbox_test

import (
	"testing"

	"github.com/orderstream/orderstream/events"
)

// TestForwarder_rechecksUntilTheHiddenRowsShow: after a wake-up whose poll
// finds nothing, the forwarder keeps looking again (outboxWaker), not just
// once: here the older transaction that hides the committed row is still
// open through the wake-up poll and the first two rechecks, and the row is
// forwarded by a later recheck, long before the fallback.
func TestForwarder_rechecksUntilTheHiddenRowsShow(t *testing.T) {
	t.Parallel()
	w := untilEmptyPolls(t, "hidden-longer", 4) // the first poll, the wake-up poll, two rechecks
	w.endOlder(false)                           // which notifies nobody

	entries(t, w.rdb, w.streams.Name(events.StreamOrdersPlaced), 1)
}
