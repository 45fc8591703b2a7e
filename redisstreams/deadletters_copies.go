package redisstreams

import (
	"math"
	"slices"
	"strings"
)

// A message can be dead-lettered more than once: the dead-letter middleware
// writes the dead letter, then the original entry is acked, and a worker that
// dies between the two leaves the entry to be delivered again, to fail again
// and be written again, with the same UUID. The dead letters are therefore
// read by message, not by entry: the copies of a message are the entries of
// one UUID from one stream, the newest speaks for them (its failure is the
// latest), and a replay puts the message back once and deletes them all.

// Copies is how many entries of the dead-letter stream hold d's message.
func (d DeadLetter) Copies() int { return 1 + len(d.Earlier) }

// IDs returns the entry IDs of every copy of d's message, oldest first
// (d.ID last).
func (d DeadLetter) IDs() []string { return append(slices.Clip(d.Earlier), d.ID) }

// Holds reports whether id is the entry ID of one of the copies of d's
// message.
func (d DeadLetter) Holds(id string) bool { return id == d.ID || slices.Contains(d.Earlier, id) }

// copyKey says which entries are copies of one message: the same UUID from
// the same stream. An entry without a UUID is a message of its own.
type copyKey struct{ stream, uuid, entry string }

func copyKeyOf(d DeadLetter) copyKey {
	if d.Message.UUID == "" {
		return copyKey{stream: d.Stream, entry: d.ID}
	}
	return copyKey{stream: d.Stream, uuid: d.Message.UUID}
}

// letterSet gathers dead-letter entries, read in any order, into one
// DeadLetter per message, in the order their messages were first met.
type letterSet struct {
	letters []DeadLetter
	index   map[copyKey]int
}

// add adds the entry d: to the copies of its message when the set holds
// it, else as a new message unless onlyKnown.
func (l *letterSet) add(d DeadLetter, onlyKnown bool) {
	k := copyKeyOf(d)
	i, ok := l.index[k]
	switch {
	case !ok && onlyKnown:
	case !ok:
		if l.index == nil {
			l.index = map[copyKey]int{}
		}
		l.index[k] = len(l.letters)
		l.letters = append(l.letters, d)
	case compareIDs(l.letters[i].ID, d.ID) < 0: // d is newer: it speaks for the message now
		d.Earlier = insertID(l.letters[i].Earlier, l.letters[i].ID)
		l.letters[i] = d
	default:
		l.letters[i].Earlier = insertID(l.letters[i].Earlier, d.ID)
	}
}

// insertID inserts id into ids, kept oldest first.
func insertID(ids []string, id string) []string {
	i, found := slices.BinarySearchFunc(ids, id, compareIDs)
	if found {
		return ids
	}
	return slices.Insert(ids, i, id)
}

// compareIDs orders stream entry IDs by time, then sequence (not as text:
// "9-0" is older than "10-0").
func compareIDs(a, b string) int {
	x, errA := parseID(a)
	y, errB := parseID(b)
	switch {
	case errA != nil || errB != nil: // not from Redis; never the case
		return strings.Compare(a, b)
	case x.less(y):
		return -1
	case y.less(x):
		return 1
	}
	return 0
}

// before returns the entry ID just before id, for a range that ends
// below it, and false when id is the lowest one.
func before(id string) (string, bool) {
	e, err := parseID(id)
	switch {
	case err != nil:
		return "", false
	case e.seq > 0:
		e.seq--
	case e.ms > 0:
		e = entryID{ms: e.ms - 1, seq: math.MaxUint64}
	default:
		return "", false
	}
	return e.String(), true
}
