package lockmgr

import (
	"errors"
	"fmt"
)

// Sentinel errors. Check them with errors.Is; every error lockmgr returns
// wraps one of these or a database error.
var (
	// ErrLocked reports that the name is held by someone else (django-lockmgr's
	// Locked). A wait that ran out, or whose context ended, also matches it.
	ErrLocked = errors.New("lockmgr: lock is held")
	// ErrLockNotFound reports a renew-by-name of an absent or expired lock
	// without Create (django-lockmgr's LockNotFound).
	ErrLockNotFound = errors.New("lockmgr: lock not found")
	// ErrNotHeld reports an owner-checked call (Release, Renew, a scope's
	// own unlock) on a lock whose token no longer holds the name: it was
	// unlocked, cleaned, reset, or expired and taken over by someone else.
	ErrNotHeld = errors.New("lockmgr: lock not held")
	// ErrLockLost is the context.Cause of a scope whose main lock was lost.
	ErrLockLost = errors.New("lockmgr: lock lost")
	// ErrScopeClosed reports a call on a Scope after Close.
	ErrScopeClosed = errors.New("lockmgr: scope closed")
	// ErrInvalidName reports a name that is empty, longer than 255 bytes,
	// not valid UTF-8, or contains NUL. No SQL runs for such a name.
	ErrInvalidName = errors.New("lockmgr: invalid lock name")
	// ErrInvalidOption reports a bad option, such as a negative duration.
	// No SQL runs when an option is invalid.
	ErrInvalidOption = errors.New("lockmgr: invalid option")
	// ErrSchema reports a lock table lockmgr cannot use and could not
	// complete: it does not exist, or lacks a column, side table or trigger
	// lockmgr needs, or its name column is not byte-exact (MySQL/MariaDB).
	// The message says what is wrong and how to fix it.
	ErrSchema = errors.New("lockmgr: lock table not usable")
	// ErrUnsupportedEngine reports a database engine that speaks a supported
	// protocol but on which lockmgr cannot keep its guarantees (see
	// docs/distributed-sql.md); the error says why. New returns it.
	ErrUnsupportedEngine = errors.New("lockmgr: unsupported database engine")
	// ErrSemaphoreSize reports a semaphore whose marker row records another
	// number of slots than the caller's (docs/semaphores.md).
	ErrSemaphoreSize = errors.New("lockmgr: semaphore size mismatch")
)

// LockFail is returned by SetLock with Fail() when one of the names is
// held: everything the call did was rolled back. Lock is the holder's lock.
// errors.Is(err, ErrLocked) is true for it too (django-lockmgr's LockFail).
type LockFail struct {
	// Lock is the holder's lock on the first held name (as read in the
	// rolled-back transaction).
	Lock *Lock
}

// Error describes the held name, as django-lockmgr's LockFail does.
func (e *LockFail) Error() string {
	if e == nil || e.Lock == nil {
		return "lockmgr: a lock already existed, aborting"
	}
	return fmt.Sprintf("lockmgr: lock %q already existed, aborting", e.Lock.Name)
}

// Unwrap makes errors.Is(err, ErrLocked) true for a *LockFail.
func (e *LockFail) Unwrap() error { return ErrLocked }

func heldError(name string) error {
	return fmt.Errorf("%w: %q", ErrLocked, name)
}

func notHeldError(name string) error {
	return fmt.Errorf("%w: %q", ErrNotHeld, name)
}
