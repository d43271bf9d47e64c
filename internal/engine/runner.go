package engine

import (
	"context"
	"database/sql"
	"time"

	"gorm.io/gorm"
)

// Stmt names one of an engine's statements (a field of Statements), for a
// Runner to run or Forms to give other texts of.
type Stmt int

// The statements an engine's steps run.
const (
	StAcquire Stmt = iota
	StAcquireExec
	StReadBack
	StFenceBump
	StFenceBumpBounded
	StNoWait
	StRenewMax
	StRenewAdd
	StReadUntil
	StCasUntil
	// Each release is followed by its Notify and Watched forms.
	StRelease
	StReleaseNotify
	StReleaseWatched
	StUnlock
	StUnlockNotify
	StUnlockWatched
	StLiveFlag
	StIsLocked
	StGet
	StList
	StListAfter
	StClean
	StReset
	StReleaseHold
	StSemaphore
	StSemaphoreFree
	StGuard
	StGuardMiss
	NumStmts
)

// Announcing is the release s (StRelease or StUnlock) that also sends a
// NOTIFY of the name: always, or only when watched (a Watcher waits for
// it).
func Announcing(s Stmt, watched bool) Stmt {
	if watched {
		return s + 2 // StReleaseWatched, StUnlockWatched
	}
	return s + 1 // StReleaseNotify, StUnlockNotify
}

// Runner runs an engine's statements for package lockmgr, with the values
// of one call bound: each run checks the table first and is repeated while
// the database rolls it back (Retryable), as lockmgr runs every statement.
type Runner interface {
	Conn
	// Query runs s and scans its first row into dest; found is false when
	// it returned no row.
	Query(ctx context.Context, s Stmt, dest ...any) (found bool, err error)
	// Exec runs s and returns how many rows it changed.
	Exec(ctx context.Context, s Stmt) (int64, error)
	// Result runs s and returns the driver's result.
	Result(ctx context.Context, s Stmt) (sql.Result, error)
	// Set sets a value the next statements bind.
	Set(a Arg, v any)
	// Tx runs fn in one transaction (a savepoint inside the caller's),
	// repeated whole when the database rolls it back; tx runs on it, and
	// Bounded reports whether its lock waits are bounded.
	Tx(ctx context.Context, fn func(tx Runner) error) error
	// Bounded reports statements that give up lock waits after the bound.
	Bounded() bool
}

// Conn is the session of lockmgr's *gorm.DB for one call.
type Conn interface {
	Conn(ctx context.Context) *gorm.DB
}

// Times are the values of an acquisition or renewal that depend on whose
// clock judges expiry, and the times a client clock passed.
type Times struct {
	Micros, Until, Now, Fence any // ArgMicros, ArgUntil, ArgNow, ArgFence
	// ClientNow and ClientUntil are the times passed (SQLite): now, and
	// now+expires (zero for no expiry), to the microsecond as stored.
	ClientNow, ClientUntil time.Time
}

// Acquired is the row an acquisition returned: its token (the caller's if
// it won), fence, and its expiry and acquisition time as the database or
// the client gave them (an int64 of microseconds, text, a time.Time, or
// nil for no expiry).
type Acquired struct {
	Token          string
	Fence          int64
	Until, Created any
}

// serverTimes is Times for an engine whose database judges expiry by its
// own clock: only the expiry, in microseconds.
func serverTimes(expires time.Duration) Times {
	if expires > 0 {
		return Times{Micros: Micros(expires)}
	}
	return Times{}
}

// Micros is d in whole microseconds, rounded up so a tiny expiry still expires.
func Micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	if d%time.Microsecond != 0 {
		us++
	}
	return us
}

// AddExpires is t+d rounded up to a whole microsecond, as the databases
// store it.
func AddExpires(t time.Time, d time.Duration) time.Time {
	u := t.Add(d)
	if r := u.Nanosecond() % 1000; r != 0 {
		u = u.Add(time.Duration(1000 - r))
	}
	return u
}

// acquireReturning is an acquisition in one statement that returns the row.
func acquireReturning(ctx context.Context, r Runner) (Acquired, bool, error) {
	var a Acquired
	found, err := r.Query(ctx, StAcquire, &a.Token, &a.Fence, &a.Until, &a.Created)
	return a, found, err
}

// acquireThenRead is an acquisition whose statement s returns nothing: an
// unchanged row (0 affected) means the name is held; else the row is read
// back by token.
func acquireThenRead(ctx context.Context, r Runner, s Stmt) (Acquired, bool, error) {
	var a Acquired
	n, err := r.Exec(ctx, s)
	if err != nil || n == 0 {
		return a, false, err
	}
	found, err := r.Query(ctx, StReadBack, &a.Token, &a.Fence, &a.Until, &a.Created)
	return a, found, err
}

// renewReturning is a renewal whose statement returns the new expiry.
func renewReturning(ctx context.Context, r Runner, addTime bool) (until any, found bool, err error) {
	s := StRenewMax
	if addTime {
		s = StRenewAdd
	}
	found, err = r.Query(ctx, s, &until)
	return until, found, err
}
