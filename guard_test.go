package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// guardNote is the row a guarded transaction writes in the tests.
type guardNote struct {
	ID   uint `gorm:"primaryKey"`
	Note string
}

// notes makes a fresh table of guardNote rows on e's database.
func (e *env) notes() string {
	e.t.Helper()
	name := e.table + "_notes"
	require.NoError(e.t, e.db.Table(name).AutoMigrate(&guardNote{}))
	e.t.Cleanup(func() { _ = e.db.Migrator().DropTable(name) })
	return name
}

// noteCount counts the committed rows of notes that say what.
func (e *env) noteCount(notes, what string) int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.db.Table(notes).Where("note = ?", what).Count(&n).Error)
	return n
}

// guardedWrite runs, in a transaction on db, Guard of l and then the
// caller's write of note; it returns the transaction's error.
func (e *env) guardedWrite(db *gorm.DB, m *lockmgr.Manager, notes string, l *lockmgr.Lock, note string) error {
	return db.Transaction(func(tx *gorm.DB) error {
		if err := m.Guard(e.ctx, tx, l); err != nil {
			return err
		}
		return tx.Table(notes).Create(&guardNote{Note: note}).Error
	})
}

// TestGuardNotHeld: Guard of a lock its token no longer holds gives
// ErrNotHeld, saying what became of it, and the caller's write does not
// commit; of a held one, it commits.
func TestGuardNotHeld(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		notes := e.notes()
		held := e.lock("held")
		require.NoError(t, e.guardedWrite(e.db, e.m, notes, held, "held"))
		require.EqualValues(t, 1, e.noteCount(notes, "held"))

		wrong := *held
		wrong.Token = "not-the-token"
		released := e.lock("released")
		require.NoError(t, e.m.Release(e.ctx, released))
		expired := e.lock("expired")
		e.expire("expired")
		taken := e.lock("taken")
		e.expire("taken")
		other, err := e.m.GetLock(e.ctx, "taken", lockmgr.LockedBy("the-other"))
		require.NoError(t, err)
		require.NotEqual(t, taken.Token, other.Token)
		never := &lockmgr.Lock{Name: "never", Token: "never-issued"}
		for _, c := range []struct {
			what string
			l    *lockmgr.Lock
			says string
		}{
			{"wrong token", &wrong, "taken over"}, {"released", released, "gone"},
			{"expired", expired, "expired"}, {"taken over", taken, `taken over by "the-other"`},
			{"never held", never, "gone"}, {"no token", &lockmgr.Lock{Name: "held"}, "no token"},
		} {
			err := e.guardedWrite(e.db, e.m, notes, c.l, c.what)
			require.ErrorIs(t, err, lockmgr.ErrNotHeld, c.what)
			require.ErrorContains(t, err, c.says, c.what)
			require.Zero(t, e.noteCount(notes, c.what), "%s: the caller's write committed", c.what)
		}
		require.True(t, e.isLocked("held"), "a failed guard of the name left the holder's lock alone")
	})
}

// TestGuardBadInput: a nil lock, a nil transaction or a handle that is not
// a transaction are refused before any SQL.
func TestGuardBadInput(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("bad-input")
		err := e.db.Transaction(func(tx *gorm.DB) error { return e.m.Guard(e.ctx, tx, nil) })
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		require.ErrorContains(t, err, "nil *Lock")
		require.ErrorIs(t, e.m.Guard(e.ctx, nil, l), lockmgr.ErrInvalidOption)
		err = e.m.Guard(e.ctx, e.db, l)
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		require.ErrorContains(t, err, "not in a transaction")
		//nolint:staticcheck // a nil context is the point
		require.ErrorIs(t, e.m.Guard(nil, e.db, l), lockmgr.ErrInvalidOption) //lint:ignore SA1012 the bad input under test
	})
}

// TestGuardHoldsTheRow: while a guarded transaction is open, a contender
// answers ErrLocked promptly even after the lock's expiry, and after the
// commit the stale holder's next guard fails.
func TestGuardHoldsTheRow(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		notes := e.notes()
		l := e.lock("row", lockmgr.Expires(time.Second))
		tx := e.db.Begin()
		require.NoError(t, tx.Error)
		defer tx.Rollback()
		require.NoError(t, e.m.Guard(e.ctx, tx, l))
		require.NoError(t, tx.Table(notes).Create(&guardNote{Note: "row"}).Error)
		sleepPast(l)
		within(t, promptly, func() {
			_, err := e.m.GetLock(e.ctx, "row")
			require.ErrorIs(t, err, lockmgr.ErrLocked, "a takeover while the guard holds the row")
		})
		require.NoError(t, tx.Commit().Error)
		require.EqualValues(t, 1, e.noteCount(notes, "row"))
		_, err := e.m.GetLock(e.ctx, "row")
		require.NoError(t, err, "expired, and no longer guarded: taken")
		require.ErrorIs(t, e.guardedWrite(e.db, e.m, notes, l, "stale"), lockmgr.ErrNotHeld)
	})
}

// TestGuardWithTx: inside the caller's transaction, a lock taken outside
// guards what WithTx and the caller write, savepoints rolled back to
// included; a guard rolled back to a savepoint still reports not held.
func TestGuardWithTx(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		notes := e.notes()
		l := e.lock("outer")
		err := e.db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.SavePoint("before_guard").Error)
			require.NoError(t, e.m.Guard(e.ctx, tx, l))
			require.NoError(t, tx.RollbackTo("before_guard").Error)
			require.NoError(t, e.m.Guard(e.ctx, tx, l), "guarded again after a rollback to a savepoint")
			require.NoError(t, tx.SavePoint("after_guard").Error)
			require.NoError(t, tx.Table(notes).Create(&guardNote{Note: "undone"}).Error)
			require.NoError(t, tx.RollbackTo("after_guard").Error)
			_, err := e.m.WithTx(tx).GetLock(e.ctx, "inner")
			require.NoError(t, err)
			require.NoError(t, e.m.Guard(e.ctx, tx, l), "Guard twice in one transaction")
			return tx.Table(notes).Create(&guardNote{Note: "kept"}).Error
		})
		require.NoError(t, err)
		require.EqualValues(t, 1, e.noteCount(notes, "kept"))
		require.Zero(t, e.noteCount(notes, "undone"))
		require.True(t, e.isLocked("inner"))
		require.ErrorIs(t, e.m.Guard(e.ctx, nil, l), lockmgr.ErrInvalidOption)
	})
}

// TestGuardPrepareStmt: Guard and Scope.Transaction on a *gorm.DB with
// GORM's PrepareStmt.
func TestGuardPrepareStmt(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		notes := e.notes()
		// A TTL this long starts no eviction goroutine, which GORM never stops.
		db, err := gorm.Open(e.db.Dialector, &gorm.Config{PrepareStmt: true, PrepareStmtTTL: 10 * 365 * 24 * time.Hour,
			Logger: e.db.Logger})
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := db.DB(); err == nil {
				_ = s.Close()
			}
		})
		m := e.managerOn(db)
		l, err := m.GetLock(e.ctx, "prepared")
		require.NoError(t, err)
		for i := range 3 {
			require.NoError(t, e.guardedWrite(db, m, notes, l, "prepared"), "run %d", i)
		}
		require.NoError(t, m.Release(e.ctx, l))
		require.ErrorIs(t, e.guardedWrite(db, m, notes, l, "released"), lockmgr.ErrNotHeld)
		require.EqualValues(t, 3, e.noteCount(notes, "prepared"))
		require.Zero(t, e.noteCount(notes, "released"))
		err = m.Do(e.ctx, "prepared-scope", func(ctx context.Context, s *lockmgr.Scope) error {
			return s.Transaction(ctx, func(tx *gorm.DB) error {
				return tx.Table(notes).Create(&guardNote{Note: "scope"}).Error
			})
		})
		require.NoError(t, err)
		require.EqualValues(t, 1, e.noteCount(notes, "scope"))
	})
}

// TestGuardErrorsSayWhat: the error names the lock.
func TestGuardErrorsSayWhat(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		err := e.db.Transaction(func(tx *gorm.DB) error {
			return e.m.Guard(e.ctx, tx, &lockmgr.Lock{Name: "named", Token: "x"})
		})
		require.True(t, errors.Is(err, lockmgr.ErrNotHeld))
		require.Contains(t, err.Error(), fmt.Sprintf("%q", "named"))
	})
}

// promptly is how soon a contender of a guarded lock must answer, on a
// shared machine (lock waits are bounded at 50 ms).
const promptly = 1500 * time.Millisecond

// sleepPast sleeps until l has expired, with a margin.
func sleepPast(l *lockmgr.Lock) {
	if d, ok := l.ExpiresIn(); ok {
		time.Sleep(d + 200*time.Millisecond)
	}
}

// within runs fn and fails t if it took longer than d.
func within(t *testing.T, d time.Duration, fn func()) {
	t.Helper()
	start := time.Now()
	fn()
	require.Less(t, time.Since(start), d, "took too long")
}
