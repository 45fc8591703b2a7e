package main

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// maxExamples is how many violations of one kind are listed; the rest are
// counted.
const maxExamples = 8

// findings collects violations by kind, keeping a few examples of each. It
// is safe for concurrent use.
type findings struct {
	mu     sync.Mutex
	kinds  []string
	byKind map[string][]string
	count  map[string]int
}

func newFindings() *findings {
	return &findings{byKind: map[string][]string{}, count: map[string]int{}}
}

func (f *findings) add(kind, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count[kind] == 0 {
		f.kinds = append(f.kinds, kind)
	}
	f.count[kind]++
	if len(f.byKind[kind]) < maxExamples {
		f.byKind[kind] = append(f.byKind[kind], fmt.Sprintf(format, args...))
	}
}

// total is the number of violations found, kept or not.
func (f *findings) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.count {
		n += c
	}
	return n
}

// of is the number of violations of kind.
func (f *findings) of(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[kind]
}

// lines lists every violation kept, and for each kind how many were left out.
func (f *findings) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, k := range f.kinds {
		for _, v := range f.byKind[k] {
			out = append(out, k+": "+v)
		}
		if more := f.count[k] - len(f.byKind[k]); more > 0 {
			out = append(out, fmt.Sprintf("... and %d more: %s", more, k))
		}
	}
	return out
}

// tally counts the orders by outcome.
type tally struct {
	confirmed, rejected, cancelled, pending int
	overtaken                               int // cancellations the inventory handled before the placement
}

// checkDatabase checks the snapshot against what the harness sent and what
// the api answered (ids: the order id per plan index, "" if never accepted;
// cancels: the cancel's answer per plan index, 0 if not cancelled).
func checkDatabase(s *snapshot, p plan, ids []string, cancels []int, f *findings) tally {
	checkKeys(s, p, ids, cancels, f)
	t := checkStatuses(s, p, ids, cancels, f)
	checkStock(s, p, f)
	checkReservations(s, f)
	t.overtaken = checkEvents(s, t, f)
	return t
}

// checkEvents: one OrderPlaced per order and one OrderCancelled per
// cancelled order; one StockReserved or StockRejected per order whose
// placement the inventory handled before its cancellation, and one
// StockReleased per cancelled order; each handler's inbox holds one row per
// event it handled, however often anything was delivered.
// It returns how many placements the inventory handled after their
// cancellation.
func checkEvents(s *snapshot, t tally, f *findings) (overtaken int) {
	orders := len(s.orders)
	want := map[string]int{"OrderPlaced": orders, "OrderCancelled": t.cancelled, "StockReleased": t.cancelled}
	for typ, n := range want {
		if s.outbox[typ] != n {
			f.add("outbox", "outbox holds %d %s events, want %d", s.outbox[typ], typ, n)
		}
	}
	// A placement handled after its cancellation announces nothing.
	decided := s.outbox["StockReserved"] + s.outbox["StockRejected"]
	if overtaken = orders - decided; overtaken < 0 || overtaken > t.cancelled {
		f.add("outbox", "outbox holds %d StockReserved and StockRejected events for %d orders, %d of them cancelled",
			decided, orders, t.cancelled)
	}
	if n := s.inbox["inventory.reserve_stock"]; n != orders+t.cancelled {
		f.add("inbox", "inbox of inventory.reserve_stock holds %d messages for %d OrderPlaced and %d OrderCancelled",
			n, orders, t.cancelled)
	}
	if n := s.inbox["orders.settle"]; n != decided+t.cancelled {
		f.add("inbox", "inbox of orders.settle holds %d messages for %d StockReserved/StockRejected and %d StockReleased",
			n, decided, t.cancelled)
	}
	return overtaken
}

// checkKeys: every accepted key names exactly the order the api answered,
// with the items sent, and every order belongs to exactly one key.
func checkKeys(s *snapshot, p plan, ids []string, cancels []int, f *findings) {
	accepted := 0
	planned := make(map[string]bool, len(p.orders))
	refs := make(map[string]int, len(s.orders))
	for i, spec := range p.orders {
		planned[spec.Key] = true
		dbID, stored := s.keys[spec.Key]
		if stored {
			refs[dbID]++
		}
		id := ids[i]
		if id == "" {
			if stored {
				f.add("unaccepted", "key %s was never accepted by the api, yet names order %s", spec.Key, dbID)
			}
			continue
		}
		accepted++
		o, ok := s.orders[id]
		switch {
		case !stored:
			f.add("lost key", "key %s: accepted as order %s, but the key is not stored", spec.Key, id)
		case dbID != id:
			f.add("key mismatch", "key %s: api answered order %s, the database names order %s", spec.Key, id, dbID)
		}
		switch {
		case !ok:
			f.add("lost order", "order %s (key %s) was accepted but is not in the database", id, spec.Key)
		case !sameItems(spec.Items, o.items):
			f.add("items", "order %s (key %s) holds %s, sent %s", id, spec.Key, itemsString(o.items), itemsString(spec.Items))
		}
	}
	for i, spec := range p.orders {
		id, stored := s.cancelKeys[spec.Key+cancelKeySuffix]
		switch accepted := cancels[i] != 0 && cancels[i] != http.StatusConflict; {
		case accepted && id != ids[i]:
			f.add("cancel key", "the cancel of order %s (key %s) was accepted; its key names %q", ids[i], spec.Key, id)
		case !accepted && stored:
			f.add("cancel key", "the cancel of order %s (key %s) was not accepted, yet its key is stored", ids[i], spec.Key)
		}
	}
	for k := range s.keys {
		if !planned[k] {
			f.add("stray key", "the database holds idempotency key %q that the harness never sent", k)
		}
	}
	for id := range s.orders {
		if n := refs[id]; n != 1 {
			f.add("orphan order", "order %s is named by %d of the harness's keys, want 1 (a double or a stray order)", id, n)
		}
	}
	if len(s.orders) != accepted || len(s.keys) != accepted {
		f.add("count", "the database holds %d orders and %d keys; the api accepted %d", len(s.orders), len(s.keys), accepted)
	}
}

// checkStatuses: nothing pending or cancelling, rejected exactly when a
// reason is set, cancelled exactly the orders the harness cancelled (but
// for those rejected first), unknown_sku exactly for the orders naming a
// SKU without stock, and an insufficient_stock rejection only where stock
// really ran short.
func checkStatuses(s *snapshot, p plan, ids []string, cancels []int, f *findings) tally {
	var t tally
	for _, o := range s.orders {
		switch o.status {
		case "pending", "cancelling":
			t.pending++
		case "confirmed":
			t.confirmed++
		case "rejected":
			t.rejected++
		case "cancelled":
			t.cancelled++
		default:
			f.add("status", "an order has status %q", o.status)
		}
		if (o.status == "rejected") != (o.reason != "") {
			f.add("reason", "an order has status %q with reason %q", o.status, o.reason)
		}
	}
	if t.pending > 0 {
		f.add("pending", "%d orders are still pending or cancelling", t.pending)
	}
	// The most a cancellation can have given back of each SKU.
	releasable := map[string]int{}
	for i, spec := range p.orders {
		if cancels[i] != 0 {
			for _, it := range spec.Items {
				releasable[it.SKU] += it.Quantity
			}
		}
	}
	for i, spec := range p.orders {
		o, ok := s.orders[ids[i]]
		if !ok || o.status == "pending" || o.status == "cancelling" {
			continue
		}
		switch cancelled := o.status == "cancelled"; {
		case cancels[i] == 0 && cancelled:
			f.add("cancel", "order %s is cancelled, which the harness never asked", ids[i])
		case cancels[i] == http.StatusConflict && o.status != "rejected":
			f.add("cancel", "order %s: its cancel was refused as of a rejected order, yet it is %s", ids[i], o.status)
		case cancels[i] != 0 && cancels[i] != http.StatusConflict && !cancelled:
			f.add("cancel", "order %s: cancelled (%d), yet it is %s", ids[i], cancels[i], o.status)
		}
		if !spec.unknownSKU && o.reason == "unknown_sku" || spec.unknownSKU && o.status != "cancelled" && o.reason != "unknown_sku" {
			f.add("unknown sku", "order %s (%s) is %s %s", ids[i], itemsString(spec.Items), o.status, o.reason)
		}
		// No stock is added during the run; only cancellations give some
		// back. A SKU short when the order was decided is still short now,
		// but for what cancellations may have given back since.
		if o.reason == "insufficient_stock" && !slices.ContainsFunc(spec.Items, func(it item) bool {
			st, ok := s.stock[it.SKU]
			return ok && st.available-releasable[it.SKU] < it.Quantity
		}) {
			f.add("wrong rejection", "order %s (%s) was rejected for insufficient_stock, yet every SKU still has enough", ids[i], itemsString(spec.Items))
		}
	}
	return t
}

// checkStock: per SKU, reserved is what confirmed orders hold and
// available + reserved is what the harness set; nothing below zero.
func checkStock(s *snapshot, p plan, f *findings) {
	held := map[string]int{}
	for _, o := range s.orders {
		if o.status == "confirmed" {
			for _, it := range o.items {
				held[it.SKU] += it.Quantity
			}
		}
	}
	for _, sku := range p.skus {
		st, ok := s.stock[sku]
		switch {
		case !ok:
			f.add("stock", "%s has no stock row", sku)
			continue
		case st.available < 0 || st.reserved < 0:
			f.add("stock", "%s is below zero: available=%d reserved=%d", sku, st.available, st.reserved)
		}
		if st.reserved != held[sku] {
			f.add("stock", "%s: reserved=%d, but confirmed orders hold %d", sku, st.reserved, held[sku])
		}
		if st.available+st.reserved != p.stock[sku] {
			f.add("stock", "%s: available+reserved=%d+%d=%d, set %d", sku, st.available, st.reserved, st.available+st.reserved, p.stock[sku])
		}
	}
	for sku := range s.stock {
		if _, ok := p.stock[sku]; !ok {
			f.add("stock", "a stock row for %s appeared, which the harness never set", sku)
		}
	}
}

// checkReservations: the reservations are exactly the confirmed orders'
// items, and none belongs to another order.
func checkReservations(s *snapshot, f *findings) {
	var rows, units, wantRows, wantUnits int
	for id, items := range s.reservations {
		for _, it := range items {
			rows, units = rows+1, units+it.Quantity
		}
		o, ok := s.orders[id]
		switch {
		case !ok:
			f.add("reservations", "reservations %s for order %s, which does not exist", itemsString(items), id)
		case o.status != "confirmed":
			f.add("reservations", "reservations %s for order %s, which is %s %s", itemsString(items), id, o.status, o.reason)
		case !sameItems(o.items, items):
			f.add("reservations", "order %s reserved %s, ordered %s", id, itemsString(items), itemsString(o.items))
		}
	}
	for id, o := range s.orders {
		if o.status != "confirmed" {
			continue
		}
		for _, it := range o.items {
			wantRows, wantUnits = wantRows+1, wantUnits+it.Quantity
		}
		if _, ok := s.reservations[id]; !ok {
			f.add("reservations", "confirmed order %s has no reservations", id)
		}
	}
	if rows != wantRows || units != wantUnits {
		f.add("reservations", "reservations: %d rows of %d units; confirmed orders: %d items of %d units", rows, units, wantRows, wantUnits)
	}
}
