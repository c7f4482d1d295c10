package ports

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors with a written contract. Adapters wrap them (fmt.Errorf
// with %w) so callers can branch with errors.Is.
var (
	// ErrNotFound: the thing asked for does not exist (a device model the
	// store has no file for, an unknown URN at the cloud). Nothing changed.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the cloud refused the credentials even after the one
	// token refresh an adapter may do. Retrying with the same credentials will
	// not help.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrOutboxFull: the outbox is at its byte bound and the message class
	// may not be dropped (GUARANTEED_DELIVERY). Nothing was added.
	ErrOutboxFull = errors.New("outbox full")
	// ErrClosed: the adapter was closed by its owner.
	ErrClosed = errors.New("closed")
)

// CloudError is what a cloud transport returns when the cloud answered, or
// could not be reached. The dispatcher decides on retries from it alone
// (adapters never retry): Permanent errors are not retried; others are,
// after RetryAfter when the cloud gave one.
type CloudError struct {
	Op         string        // e.g. "send messages", "activate"
	Status     int           // HTTP status, 0 when there was no answer
	Permanent  bool          // retrying the same call cannot succeed
	RetryAfter time.Duration // from a Retry-After header, 0 if none
	// Index is the message index the cloud named in a rejected batch, or -1.
	Index int
	Err   error
}

func (e *CloudError) Error() string {
	switch {
	case e.Status != 0 && e.Index >= 0:
		return fmt.Sprintf("%s: cloud answered %d for message %d: %v", e.Op, e.Status, e.Index, e.Err)
	case e.Status != 0:
		return fmt.Sprintf("%s: cloud answered %d: %v", e.Op, e.Status, e.Err)
	default:
		return fmt.Sprintf("%s: %v", e.Op, e.Err)
	}
}

func (e *CloudError) Unwrap() error { return e.Err }

// IsPermanent reports whether err (or an error it wraps) is a CloudError
// marked permanent, or ErrUnauthorized. Everything else is worth a retry.
func IsPermanent(err error) bool {
	if errors.Is(err, ErrUnauthorized) {
		return true
	}
	var ce *CloudError
	return errors.As(err, &ce) && ce.Permanent
}
