package lockmgrtest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// Owner is the LockedBy of the locks Steal takes.
const Owner = "lockmgrtest"

// stealAttempts bounds Steal's retries when the holder renews the lock
// between Steal's expiring it and taking it over.
const stealAttempts = 20

// New returns a Manager with opts on a new SQLite database in t.TempDir(),
// its lock table migrated. At cleanup the database's connections are
// closed and the directory removed. It fails the test if any of this fails
// (a bad option, a missing cgo toolchain for the SQLite driver).
func New(t testing.TB, opts ...lockmgr.Option) *lockmgr.Manager {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "locks.db") + "?_busy_timeout=10000&_journal_mode=WAL"
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("lockmgrtest: open SQLite: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatalf("lockmgrtest: open SQLite: %v", err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	m, err := lockmgr.New(db, opts...)
	if err != nil {
		t.Fatalf("lockmgrtest: New: %v", err)
	}
	if err := m.AutoMigrate(context.Background()); err != nil {
		t.Fatalf("lockmgrtest: AutoMigrate: %v", err)
	}
	return m
}

// Steal gives the lock name of m's table to another holder, as a process
// that took it over once it expired would: a new token and fence, LockedBy
// Owner, never expiring. The old holder's Renew and Release then return
// ErrNotHeld, its scope's context is cancelled at its next keep-alive
// renewal, and GetLock returns ErrLocked until the test releases the lock
// Steal returns (or Unlock). It fails the test if name is not held.
func Steal(t testing.TB, m *lockmgr.Manager, name string) *lockmgr.Lock {
	t.Helper()
	ctx := context.Background()
	thief := other(t, m, "Steal")
	for range stealAttempts {
		expire(t, m, held(t, m, "Steal", name))
		// The takeover of an expired row, one statement; ErrLocked if the
		// holder's renewal revived it meanwhile: try again.
		l, err := thief.GetLock(ctx, name, lockmgr.Expires(0))
		if err == nil {
			return l
		}
		if !errors.Is(err, lockmgr.ErrLocked) {
			t.Fatalf("lockmgrtest: Steal %q: %v", name, err)
		}
	}
	t.Fatalf("lockmgrtest: Steal %q: the holder renewed it each of %d times it was expired", name, stealAttempts)
	return nil
}

// Expire makes the lock name of m's table lose its holder the way a holder
// paused past its expiry does when the lock is cleaned up meanwhile: its
// expiry is set to its acquisition time, passed by the database's clock,
// and the expired row is removed (by its token, as CleanLocks would), so
// the name is free. The holder's Renew and Release then return ErrNotHeld
// and its scope's context is cancelled at its next keep-alive renewal;
// anyone, the old holder too, can take the name again. (An expired row
// that is left in place is no loss: a renewal by its token revives it.) It
// fails the test if name is not held.
func Expire(t testing.TB, m *lockmgr.Manager, name string) {
	t.Helper()
	l := held(t, m, "Expire", name)
	expire(t, m, l)
	// By the token, whatever the holder did meanwhile (a renewal that
	// revived the row does not save it).
	err := other(t, m, "Expire").Release(context.Background(), l)
	if err != nil && !errors.Is(err, lockmgr.ErrNotHeld) {
		t.Fatalf("lockmgrtest: Expire %q: %v", name, err)
	}
}

// held returns the live lock holding name, or fails the test.
func held(t testing.TB, m *lockmgr.Manager, call, name string) *lockmgr.Lock {
	t.Helper()
	if m == nil {
		t.Fatalf("lockmgrtest: %s %q: nil Manager", call, name)
	}
	l, err := m.Get(context.Background(), name)
	switch {
	case errors.Is(err, lockmgr.ErrLockNotFound):
		t.Fatalf("lockmgrtest: %s %q: the lock is not held (table %s): take it before making it lost", call, name, m.Table())
	case err != nil:
		t.Fatalf("lockmgrtest: %s %q: %v", call, name, err)
	}
	return l
}

// expire sets l's expiry to its acquisition time if its token still holds
// the name (a database that stores no fractions of a second makes it the
// second the lock was taken in: passed all the same).
func expire(t testing.TB, m *lockmgr.Manager, l *lockmgr.Lock) {
	t.Helper()
	err := m.DB().WithContext(context.Background()).Table(m.Table()).
		Where("name = ? AND token = ?", l.Name, l.Token).
		Update("locked_until", gorm.Expr("created_at")).Error
	if err != nil {
		t.Fatalf("lockmgrtest: expire %q: %v", l.Name, err)
	}
}

// other is a Manager on m's table with none of m's hooks, so that what
// Steal and Expire do is not reported as the code under test's doing.
func other(t testing.TB, m *lockmgr.Manager, call string) *lockmgr.Manager {
	t.Helper()
	o, err := lockmgr.New(m.DB(), lockmgr.WithTable(m.Table()), lockmgr.WithOwner(Owner))
	if err != nil {
		t.Fatalf("lockmgrtest: %s: %v", call, err)
	}
	return o
}
