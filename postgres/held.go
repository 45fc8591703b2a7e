package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// IsLockTimeout reports whether err is a statement that waited for a lock
// longer than its lock_timeout (SQLSTATE 55P03): the lock is held
// elsewhere, and trying again at once would wait for the same holder.
func IsLockTimeout(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "55P03"
}

// heldError is a lock wait that ran out, with the keys of what was being
// locked.
type heldError struct {
	err  error
	keys []string
}

func (e *heldError) Error() string { return fmt.Sprintf("%v (waiting for %q)", e.err, e.keys) }
func (e *heldError) Unwrap() error { return e.err }

// Held names what a statement that failed with err was locking: keys the
// handler chooses, such as the SKUs of the stock rows it locks, the same
// for every message that locks the same rows. A message whose attempt
// failed with a lock wait that ran out (IsLockTimeout) is parked with its
// keys: one message of those waiting for the same keys is tried again
// every ParkBackoff.Initial, the others wait until it succeeds, and its
// success puts back every message waiting for keys it locked. Any other
// err (nil included) is returned as it is.
func Held(err error, keys ...string) error {
	if !IsLockTimeout(err) || len(keys) == 0 {
		return err
	}
	return &heldError{err: err, keys: keys}
}

// HeldKeys returns the keys Held gave err, or nil when it has none.
func HeldKeys(err error) []string {
	var h *heldError
	if errors.As(err, &h) {
		return h.keys
	}
	return nil
}

type lockWaitKey struct{}

// WithLockWait returns ctx whose transactions (InTx's, the inbox's) wait
// at most d for a lock, instead of the pool's lock_timeout: for an attempt
// that only finds out whether a lock held elsewhere is gone (a parked
// message's probe). A transaction that may write the outbox holds back the
// forwarder while it waits, whatever it waits for, so such a wait must be
// short.
func WithLockWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, lockWaitKey{}, d)
}

// lockWait returns the lock wait WithLockWait gave ctx, if any.
func lockWait(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Value(lockWaitKey{}).(time.Duration)
	return d, ok
}
