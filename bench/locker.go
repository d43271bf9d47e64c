package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// errHeld reports that a name is held by someone else: the normal "not
// obtained" outcome of every locker, never counted as an error.
var errHeld = errors.New("bench: held by someone else")

// errNoWait reports that a locker has no way to wait for a name.
var errNoWait = errors.New("bench: locker cannot wait")

// Locker labels, as they appear in the results.
const (
	lkLockmgr = "lockmgr"
	lkNotify  = "lockmgr+pgnotify"
	lkFloor   = "floor"
	lkNative  = "native"
	lkDjango  = "django-algo"
	lkRedis   = "redislock"
)

// allLockers is every locker, in the order the results list them.
var allLockers = []string{lkLockmgr, lkNotify, lkFloor, lkNative, lkDjango, lkRedis}

// lockerTitle describes each locker in the results' legend.
var lockerTitle = map[string]string{
	lkLockmgr: "lockmgr (this module, through GORM), as configured by default",
	lkNotify:  "lockmgr with pgnotify's LISTEN/NOTIFY Listener (PostgreSQL only): releases announce themselves, waiters in other processes wake at once",
	lkFloor:   "the floor: the same single statements through database/sql, each prepared once",
	lkNative:  "the database's own session locks (pg_try_advisory_lock / GET_LOCK; no expiry)",
	lkDjango:  "django-lockmgr 2.0's algorithm re-implemented in Go (clean expired, count, transaction, insert; 5 s polling)",
	lkRedis:   "github.com/bsm/redislock on the local Redis",
}

// locker is one way of taking named locks, bound to one database (or Redis).
type locker interface {
	// label is the locker's name in the results.
	label() string
	// session returns a handle for one goroutine. Lockers whose locks belong
	// to a database session pin a connection per handle.
	session(ctx context.Context) (session, error)
	close() error
}

// session takes and releases locks for one goroutine.
type session interface {
	// lock takes name for ttl. wait 0 tries once; wait > 0 retries the way
	// the locker's own library does until wait elapses. It returns errHeld
	// when the name stays held, errNoWait when wait > 0 is unsupported.
	lock(ctx context.Context, name string, ttl, wait time.Duration) (any, error)
	// unlock releases what lock returned.
	unlock(ctx context.Context, held any) error
	close() error
}

// setLocker is implemented by lockers that can take many names at once, the
// way lockmgr's SetLock and django's set_lock do (create or extend each).
type setLocker interface {
	setLock(ctx context.Context, names []string, ttl time.Duration) error
	// clear deletes every row of the locker's table between measurements.
	clear(ctx context.Context) error
}

// sharedSession is a session for lockers whose handles are goroutine-safe,
// so every goroutine can use the locker itself.
type sharedSession struct{ locker sessionFuncs }

type sessionFuncs interface {
	lock(ctx context.Context, name string, ttl, wait time.Duration) (any, error)
	unlock(ctx context.Context, held any) error
}

func (s sharedSession) lock(ctx context.Context, name string, ttl, wait time.Duration) (any, error) {
	return s.locker.lock(ctx, name, ttl, wait)
}

func (s sharedSession) unlock(ctx context.Context, held any) error {
	return s.locker.unlock(ctx, held)
}

func (s sharedSession) close() error { return nil }

// newToken returns a random owner token, as lockmgr and redislock make one.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux (Go ≥ 1.24 panics instead)
	return hex.EncodeToString(b[:])
}

// pollWait retries try every interval until it succeeds, fails with
// something other than errHeld, wait elapses or ctx ends. With a 5 s
// interval it is django-lockmgr's wait: tries at 0, 5, 10 … s.
func pollWait(ctx context.Context, wait, interval time.Duration, try func() (any, error)) (any, error) {
	deadline := time.Now().Add(wait)
	for {
		held, err := try()
		if !errors.Is(err, errHeld) {
			return held, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, errHeld
		}
		t := time.NewTimer(min(interval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(errHeld, ctx.Err())
		case <-t.C:
		}
	}
}

// describe formats an unexpected error with the locker that produced it.
// It returns nil for a nil error.
func describe(label string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", label, err)
}
