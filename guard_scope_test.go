package lockmgr_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// TestScopeTransactionOutlivesExpiry: a guarded transaction that runs 3×
// the lock's expiry neither costs the scope its lock nor is cancelled;
// meanwhile a contender gets ErrLocked promptly, a Wait keeps waiting
// until its own deadline, and once the transaction commits the keep-alive
// goes on.
func TestScopeTransactionOutlivesExpiry(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		const expires = time.Second
		notes := e.notes()
		s, err := e.m.Acquire(e.ctx, "long", lockmgr.Expires(expires))
		require.NoError(t, err)
		defer s.Close()
		err = s.Transaction(e.ctx, func(tx *gorm.DB) error {
			if err := tx.Table(notes).Create(&guardNote{Note: "long"}).Error; err != nil {
				return err
			}
			e.contend(t, "long", 3*expires)
			return s.Context().Err()
		})
		require.NoError(t, err)
		require.NoError(t, s.Context().Err(), "the scope's context survived")
		require.EqualValues(t, 1, e.noteCount(notes, "long"))
		time.Sleep(expires + expires/2)
		require.NoError(t, s.Context().Err(), "kept alive after the transaction")
		_, err = e.m.GetLock(e.ctx, "long")
		require.ErrorIs(t, err, lockmgr.ErrLocked, "still the scope's")
		require.NoError(t, s.Close(), "no lock lost")
	})
}

// contend tries name for d while a guarded transaction holds it: each
// GetLock answers ErrLocked promptly, and a Wait of d/2 waits about d/2.
func (e *env) contend(t *testing.T, name string, d time.Duration) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		_, err := e.m.GetLock(e.ctx, name, lockmgr.Wait(d/2))
		assert := assert.New(t) // not require: this is not the test's goroutine
		assert.ErrorIs(err, lockmgr.ErrLocked, "Wait")
		took := time.Since(start)
		assert.GreaterOrEqual(took, d/2-50*time.Millisecond, "Wait gave up early")
		assert.Less(took, d/2+promptly, "Wait overran its deadline")
	}()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		within(t, promptly, func() {
			_, err := e.m.GetLock(e.ctx, name)
			require.ErrorIs(t, err, lockmgr.ErrLocked)
		})
	}
	wg.Wait()
}

// TestScopeTransaction: fn's error rolls back and is returned, the lock
// kept; a lost main lock gives ErrNotHeld without running fn and cancels
// the scope's context; bad input and a closed scope are refused.
func TestScopeTransaction(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		notes := e.notes()
		s, err := e.m.Acquire(e.ctx, "scoped")
		require.NoError(t, err)
		boom := errors.New("boom")
		err = s.Transaction(e.ctx, func(tx *gorm.DB) error {
			require.NoError(t, tx.Table(notes).Create(&guardNote{Note: "rolled back"}).Error)
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Zero(t, e.noteCount(notes, "rolled back"))
		require.NoError(t, s.Context().Err())
		require.ErrorIs(t, s.Transaction(e.ctx, nil), lockmgr.ErrInvalidOption)

		e.expire("scoped")
		_, err = e.m.GetLock(e.ctx, "scoped", lockmgr.LockedBy("usurper"))
		require.NoError(t, err)
		ran := false
		err = s.Transaction(e.ctx, func(tx *gorm.DB) error { ran = true; return nil })
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		require.ErrorContains(t, err, "usurper")
		require.False(t, ran, "fn ran without the lock")
		require.ErrorIs(t, context.Cause(s.Context()), lockmgr.ErrLockLost)
		require.ErrorIs(t, s.Transaction(e.ctx, func(*gorm.DB) error { return nil }), lockmgr.ErrNotHeld)
		require.ErrorIs(t, s.Close(), lockmgr.ErrLockLost)
		require.ErrorIs(t, s.Transaction(e.ctx, func(*gorm.DB) error { return nil }), lockmgr.ErrScopeClosed)
	})
}

// TestScopeTransactionRollbackAfterDueRenewal: a long guarded transaction
// that rolls back renews the lock from outside; the scope keeps it.
func TestScopeTransactionRollbackAfterDueRenewal(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "rollback", lockmgr.Expires(time.Second))
		require.NoError(t, err)
		boom := errors.New("boom")
		err = s.Transaction(e.ctx, func(*gorm.DB) error { time.Sleep(2 * time.Second); return boom })
		require.ErrorIs(t, err, boom)
		time.Sleep(500 * time.Millisecond)
		require.NoError(t, s.Context().Err())
		left, ok := s.Main().ExpiresIn()
		require.True(t, ok)
		require.Greater(t, left, 300*time.Millisecond, "renewed after the rollback")
		require.NoError(t, s.Close())
	})
}

// TestScopeTransactionConcurrent: goroutines sharing a scope run guarded
// transactions at once; they take the lock row in turn and all commit.
func TestScopeTransactionConcurrent(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		notes := e.notes()
		s, err := e.m.Acquire(e.ctx, "shared")
		require.NoError(t, err)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 5 {
					assert.NoError(t, s.Transaction(e.ctx, func(tx *gorm.DB) error {
						return tx.Table(notes).Create(&guardNote{Note: "shared"}).Error
					}))
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 20, e.noteCount(notes, "shared"))
		require.NoError(t, s.Close())
	})
}
