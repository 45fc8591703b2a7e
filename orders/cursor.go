package orders

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
)

// A cursor is where a page of a listing ended: the (created_at, id) of its
// last order, the key the listing is sorted by. The next page starts after
// it, so an order placed meanwhile neither shifts nor repeats the pages.
//
// A client sees it as an opaque string: base64url (no padding) of
//
//	version (1 byte, cursorVersion)
//	created_at, microseconds since the Unix epoch (8 bytes, big endian)
//	id (16 bytes)
//	tag (8 bytes)
//
// The tag is a hash of the rest and of the listing's filters. It ties a
// cursor to the filters it was returned for (the same position under other
// filters would be a page of another listing, which a client asking for
// "the next page" did not mean) and makes a cursor that was cut, mangled or
// edited by hand an error instead of a page from somewhere else. It is no
// secret: a listing shows only the orders its caller may see (the API
// filters a customer's to their own), so a cursor made up with a valid tag
// reveals nothing; it is checked like any other input.
type cursor struct {
	createdAt time.Time
	id        uuid.UUID
}

const (
	cursorVersion = 1
	cursorTagLen  = 8
	cursorLen     = 1 + 8 + 16 + cursorTagLen
)

var cursorEncoding = base64.RawURLEncoding.Strict()

// encode returns c as the cursor of a listing filtered by f.
func (c cursor) encode(f listFilter) string {
	b := make([]byte, 0, cursorLen)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.createdAt.UnixMicro()))
	b = append(b, c.id[:]...)
	b = append(b, cursorTag(b, f)...)
	return cursorEncoding.EncodeToString(b)
}

// decodeCursor returns the cursor s encodes, or false when s is not a
// cursor that a listing filtered by f returned.
func decodeCursor(s string, f listFilter) (cursor, bool) {
	if cursorEncoding.EncodedLen(cursorLen) != len(s) {
		return cursor{}, false
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) != cursorLen || b[0] != cursorVersion {
		return cursor{}, false
	}
	body, tag := b[:cursorLen-cursorTagLen], b[cursorLen-cursorTagLen:]
	if subtle.ConstantTimeCompare(tag, cursorTag(body, f)) != 1 {
		return cursor{}, false
	}
	c := cursor{createdAt: time.UnixMicro(int64(binary.BigEndian.Uint64(body[1:9]))).UTC()}
	copy(c.id[:], body[9:])
	// An order's created_at has four digits of year, as RFC 3339 writes
	// them; a time beyond is made up, and one PostgreSQL may refuse.
	if y := c.createdAt.Year(); y < 1 || y > 9999 {
		return cursor{}, false
	}
	return c, true
}

// cursorTag is the tag of a cursor whose other bytes are body, for a
// listing filtered by f. A customer id holds no NUL (checkCustomerID), so
// the NUL separators make the filters' encoding unambiguous.
func cursorTag(body []byte, f listFilter) []byte {
	h := sha256.New()
	h.Write([]byte("orderstream orders cursor\x00"))
	h.Write(body)
	h.Write([]byte("\x00" + f.customerID + "\x00" + f.status))
	return h.Sum(nil)[:cursorTagLen]
}
