package lockmgr_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// django-lockmgr's tests 1-6 and 11-18, as behaviours, on every database.

func TestLockTwiceFails(t *testing.T) { // django 1
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("a")
		_, err := e.m.GetLock(e.ctx, "a")
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		assert.Contains(t, err.Error(), `"a"`)
	})
}

func TestIsLocked(t *testing.T) { // django 2
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("held")
		assert.True(t, e.isLocked("held"))
		assert.False(t, e.isLocked("never-locked"))
	})
}

func TestUnlockThenLockAgain(t *testing.T) { // django 3
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("x")
		require.NoError(t, e.m.Unlock(e.ctx, "x"))
		assert.False(t, e.isLocked("x"))
		l := e.lock("x")
		require.NoError(t, e.m.Release(e.ctx, l))
		assert.False(t, e.isLocked("x"))
		require.NoError(t, e.m.Unlock(e.ctx, "absent"), "unlocking an absent name is no error")
	})
}

func TestExpiredLockIsAbsentAndTakenOver(t *testing.T) { // django 4
	eachDB(t, func(t *testing.T, e *env) {
		old := e.lock("x", lockmgr.Expires(600*time.Second))
		assert.True(t, e.isLocked("x"))
		e.expire("x")
		assert.False(t, e.isLocked("x"))
		locks, err := e.m.List(e.ctx)
		require.NoError(t, err)
		assert.Empty(t, locks, "List shows live locks only")
		nl := e.lock("x")
		assert.NotEqual(t, old.Token, nl.Token)
		assert.Greater(t, nl.Fence, old.Fence)
		require.ErrorIs(t, e.m.Release(e.ctx, old), lockmgr.ErrNotHeld, "stale release after takeover")
		assert.True(t, e.isLocked("x"), "the new holder is untouched")
	})
}

func TestNeverExpiring(t *testing.T) { // django 5 and 6
	for name, opt := range map[string]lockmgr.LockOption{"NoExpiry": lockmgr.NoExpiry(), "Expires(0)": lockmgr.Expires(0)} {
		t.Run(name, func(t *testing.T) {
			eachDB(t, func(t *testing.T, e *env) {
				l := e.lock("forever", opt)
				assert.False(t, l.Expired())
				_, ok := l.ExpiresIn()
				assert.False(t, ok)
				_, ok = l.ExpiresSeconds()
				assert.False(t, ok)
				assert.Nil(t, l.LockedUntil)
				n, err := e.m.CleanLocks(e.ctx)
				require.NoError(t, err)
				assert.Zero(t, n)
				assert.True(t, e.isLocked("forever"))
			})
		})
	}
}

func TestRenewLockByName(t *testing.T) { // django 11-14
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("a", lockmgr.Expires(20*time.Second))
		l, err := e.m.RenewLock(e.ctx, "a", lockmgr.Expires(60*time.Second))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, secondsLeft(t, l), 50.0)

		e.lock("b", lockmgr.Expires(10*time.Second))
		l, err = e.m.RenewLock(e.ctx, "b", lockmgr.Expires(20*time.Second), lockmgr.AddTime())
		require.NoError(t, err)
		assert.GreaterOrEqual(t, secondsLeft(t, l), 25.0)

		_, err = e.m.RenewLock(e.ctx, "absent")
		require.ErrorIs(t, err, lockmgr.ErrLockNotFound)
		assert.False(t, e.isLocked("absent"))

		l, err = e.m.RenewLock(e.ctx, "created", lockmgr.Expires(60*time.Second), lockmgr.Create())
		require.NoError(t, err)
		assert.GreaterOrEqual(t, secondsLeft(t, l), 50.0)
		assert.True(t, e.isLocked("created"))
	})
}

func TestRenewLockByNameOfExpiredLock(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("a")
		e.expire("a")
		_, err := e.m.RenewLock(e.ctx, "a")
		require.ErrorIs(t, err, lockmgr.ErrLockNotFound, "an expired lock is absent")
		l, err := e.m.RenewLock(e.ctx, "a", lockmgr.Create(), lockmgr.Expires(30*time.Second))
		require.NoError(t, err)
		assert.InDelta(t, 30, secondsLeft(t, l), 5)
	})
}

func TestRenewByLock(t *testing.T) { // django 15-18
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("a", lockmgr.Expires(20*time.Second))
		l, err := e.m.Renew(e.ctx, l, lockmgr.Expires(60*time.Second))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, secondsLeft(t, l), 50.0)

		l = e.lock("b", lockmgr.Expires(10*time.Second))
		l, err = e.m.Renew(e.ctx, l, lockmgr.Expires(20*time.Second), lockmgr.AddTime())
		require.NoError(t, err)
		assert.GreaterOrEqual(t, secondsLeft(t, l), 25.0)

		l = e.lock("c", lockmgr.Expires(120*time.Second))
		l, err = e.m.Renew(e.ctx, l, lockmgr.Expires(30*time.Second))
		require.NoError(t, err)
		assert.InDelta(t, 117.5, secondsLeft(t, l), 2.5, "renewal never shortens")

		l = e.lock("d", lockmgr.Expires(120*time.Second))
		l, err = e.m.Renew(e.ctx, l, lockmgr.Expires(30*time.Second), lockmgr.AddTime())
		require.NoError(t, err)
		assert.InDelta(t, 145, secondsLeft(t, l), 5)

		fresh, err := e.m.List(e.ctx)
		require.NoError(t, err)
		require.Len(t, fresh, 4)
		assert.InDelta(t, 145, secondsLeft(t, &fresh[3]), 5, "the database holds what Renew returned")
	})
}

func TestRenewNeverExpiringStaysSo(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("forever", lockmgr.NoExpiry())
		for _, opts := range [][]lockmgr.LockOption{{lockmgr.Expires(time.Minute)}, {lockmgr.Expires(time.Minute), lockmgr.AddTime()}} {
			nl, err := e.m.Renew(e.ctx, l, opts...)
			require.NoError(t, err)
			assert.Nil(t, nl.LockedUntil)
		}
		nl, err := e.m.RenewLock(e.ctx, "forever", lockmgr.Expires(time.Minute))
		require.NoError(t, err)
		assert.Nil(t, nl.LockedUntil)

		l = e.lock("made-permanent", lockmgr.Expires(time.Minute))
		nl, err = e.m.Renew(e.ctx, l, lockmgr.NoExpiry())
		require.NoError(t, err)
		assert.Nil(t, nl.LockedUntil, "a renewal without expiry makes the lock permanent, as django's does")
	})
}

func TestRenewIsOwnerChecked(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		old := e.lock("a", lockmgr.Expires(time.Minute))
		e.expire("a")
		holder := e.lock("a", lockmgr.Expires(time.Minute))
		_, err := e.m.Renew(e.ctx, old, lockmgr.Expires(time.Hour))
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		locks, err := e.m.List(e.ctx)
		require.NoError(t, err)
		require.Len(t, locks, 1)
		assert.Equal(t, holder.Token, locks[0].Token)
		assert.Less(t, secondsLeft(t, &locks[0]), 61.0, "the new holder's expiry is untouched")

		_, err = e.m.Renew(e.ctx, old, lockmgr.Create())
		require.ErrorIs(t, err, lockmgr.ErrLocked, "Create cannot take a held name")

		require.NoError(t, e.m.Unlock(e.ctx, "a"))
		nl, err := e.m.Renew(e.ctx, holder, lockmgr.Create(), lockmgr.Expires(time.Minute))
		require.NoError(t, err, "Create takes the name anew once it is free")
		assert.NotEqual(t, holder.Token, nl.Token)
		assert.Equal(t, holder.LockedBy, nl.LockedBy)
	})
}

func TestRaceForOneName(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		const n = 32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := e.m.GetLock(e.ctx, "contended")
				errs <- err
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			if err == nil {
				won++
				continue
			}
			require.ErrorIs(t, err, lockmgr.ErrLocked, "a loser gets ErrLocked, never a driver error")
		}
		assert.Equal(t, 1, won)
	})
}

func TestRaceForExpiredName(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("stale")
		e.expire("stale")
		const n = 16
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []*lockmgr.Lock
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := e.m.GetLock(e.ctx, "stale")
				if err != nil {
					assert.ErrorIs(t, err, lockmgr.ErrLocked)
					return
				}
				mu.Lock()
				winners = append(winners, l)
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.Len(t, winners, 1, "one taker of an expired lock")
	})
}

func TestFenceGrows(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		var fences []int64
		take := func() *lockmgr.Lock {
			l := e.lock("f")
			fences = append(fences, l.Fence)
			return l
		}
		require.NoError(t, e.m.Release(e.ctx, take()))
		require.NoError(t, e.m.Unlock(e.ctx, take().Name))
		take()
		e.expire("f")
		_, err := e.m.CleanLocks(e.ctx)
		require.NoError(t, err)
		take()
		_, err = e.m.Reset(e.ctx)
		require.NoError(t, err)
		take()
		e.expire("f")
		take() // takeover of an expired row
		for i := 1; i < len(fences); i++ {
			assert.Greater(t, fences[i], fences[i-1], "fences %v", fences)
		}
	})
}

func TestCleanLocks(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("live")
		e.lock("old1")
		e.lock("old2")
		e.expire("old1")
		e.expire("old2")
		n, err := e.m.CleanLocks(e.ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 2, n)
		var rows int64
		require.NoError(t, e.db.Table(e.table).Count(&rows).Error)
		assert.EqualValues(t, 1, rows)
	})
}

func TestSubSecondExpiry(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("brief", lockmgr.Expires(300*time.Millisecond))
		assert.InDelta(t, 0.3, secondsLeft(t, l), 0.3)
		eventually(t, 10*time.Second, func() bool { return !e.isLocked("brief") }, "a 300 ms lock expires")
		_, err := e.m.GetLock(e.ctx, "brief")
		require.NoError(t, err)
	})
}

func TestWaitTakesLockWhenFreed(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("w")
		go func() {
			time.Sleep(100 * time.Millisecond)
			assert.NoError(t, e.m.Release(e.ctx, l))
		}()
		got, err := e.m.GetLock(e.ctx, "w", lockmgr.Wait(30*time.Second))
		require.NoError(t, err)
		assert.NotEqual(t, l.Token, got.Token)
	})
}

func TestErrorsAreSentinels(t *testing.T) {
	var fail error = &lockmgr.LockFail{Lock: &lockmgr.Lock{Name: "x"}}
	assert.ErrorIs(t, fail, lockmgr.ErrLocked)
	var lf *lockmgr.LockFail
	require.True(t, errors.As(fail, &lf))
	assert.Equal(t, "x", lf.Lock.Name)
	for _, err := range []error{lockmgr.ErrLocked, lockmgr.ErrLockNotFound, lockmgr.ErrNotHeld,
		lockmgr.ErrLockLost, lockmgr.ErrInvalidName, lockmgr.ErrInvalidOption, fail} {
		assert.Contains(t, err.Error(), "lockmgr: ")
	}
}

// TestFenceGrowsPastAWaitingAcquisition: an acquisition that waits for the
// database (here, SQLite's write lock, held by a transaction that takes and
// releases the name meanwhile) still gets a larger fence.
func TestFenceGrowsPastAWaitingAcquisition(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		if e.kind != "sqlite" {
			t.Skip("only SQLite makes a whole acquisition wait for another transaction")
		}
		tx := e.db.Begin()
		require.NoError(t, tx.Exec("DELETE FROM "+e.table+" WHERE 0").Error) // take the write lock
		late := make(chan *lockmgr.Lock)
		go func() {
			// It gives up the write lock after lockmgr's bound and waits on.
			l, err := e.m.GetLock(e.ctx, "x", lockmgr.Wait(5*time.Second))
			assert.NoError(t, err)
			late <- l
		}()
		time.Sleep(100 * time.Millisecond)
		first, err := e.m.WithTx(tx).GetLock(e.ctx, "x")
		require.NoError(t, err)
		require.NoError(t, e.m.WithTx(tx).Release(e.ctx, first))
		require.NoError(t, tx.Commit().Error)
		second := <-late
		require.NotNil(t, second)
		assert.Greater(t, second.Fence, first.Fence)
	})
}
