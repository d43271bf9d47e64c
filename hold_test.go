package lockmgr_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// backdate moves name's acquisition (created_at) 10 s into the past by the
// database's own clock, as if it had been taken then.
func (e *env) backdate(name string) {
	e.t.Helper()
	q := map[string]string{
		"postgres": "UPDATE %s SET created_at = statement_timestamp() - interval '10 seconds' WHERE name = ?",
		"mysql":    "UPDATE %s SET created_at = UTC_TIMESTAMP(6) - INTERVAL 10 SECOND WHERE name = ?",
		"sqlite":   "UPDATE %s SET created_at = strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-10 seconds') || '000' WHERE name = ?",
	}[e.kind]
	res := e.db.Exec(fmt.Sprintf(q, e.table), name)
	require.NoError(e.t, res.Error)
	require.EqualValues(e.t, 1, res.RowsAffected)
}

// rows counts the rows of the env's table, live or not.
func (e *env) rows() int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.db.Table(e.table).Count(&n).Error)
	return n
}

// TestHoldAtLeastKeepsAnEarlyRelease: a release before the hold has passed
// leaves the lock held, with its token, until acquisition + d, and then
// the name is free for the next caller.
func TestHoldAtLeastKeepsAnEarlyRelease(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		start := time.Now()
		l := e.lock("job", lockmgr.Expires(time.Minute))
		require.NoError(t, e.m.Release(e.ctx, l, lockmgr.HoldAtLeast(1500*time.Millisecond)))
		assert.True(t, e.isLocked("job"), "held after the early release")
		got, err := e.m.Get(e.ctx, "job")
		require.NoError(t, err)
		assert.Equal(t, l.Token, got.Token, "still the releaser's token")
		left := got.LockedUntil.Sub(got.CreatedAt)
		assert.GreaterOrEqual(t, left, 1500*time.Millisecond, "held until acquisition + d")
		assert.Less(t, left, 1600*time.Millisecond, "not for the lock's own minute")
		_, err = e.m.GetLock(e.ctx, "job")
		if time.Since(start) < time.Second {
			assert.ErrorIs(t, err, lockmgr.ErrLocked, "nobody takes it within the hold")
		}
		l2, err := e.m.GetLock(e.ctx, "job", lockmgr.Wait(10*time.Second))
		require.NoError(t, err, "free once the hold has passed")
		assert.GreaterOrEqual(t, time.Since(start), 1400*time.Millisecond)
		require.NoError(t, e.m.Release(e.ctx, l2))
		assert.Zero(t, e.rows(), "a release without a hold deletes the row")
	})
}

// TestHoldAtLeastJudgedByTheDatabasesClock: the hold counts from the row's
// acquisition time as the database holds it, not from the caller's
// memory of it.
func TestHoldAtLeastJudgedByTheDatabasesClock(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("passed")
		e.backdate("passed")
		require.NoError(t, e.m.Release(e.ctx, l, lockmgr.HoldAtLeast(5*time.Second)))
		assert.False(t, e.isLocked("passed"), "10 s since the acquisition: a 5 s hold has passed")
		assert.Zero(t, e.rows(), "and the release deleted the row")

		l = e.lock("kept")
		e.backdate("kept")
		require.NoError(t, e.m.Release(e.ctx, l, lockmgr.HoldAtLeast(time.Minute)))
		got, err := e.m.Get(e.ctx, "kept")
		require.NoError(t, err)
		assert.InDelta(t, 50, secondsLeft(t, got), 5, "held until the acquisition + 1 min, 50 s from now")
	})
}

// TestHoldAtLeastRememberedFromTheAcquisition: HoldAtLeast given to
// GetLock, Acquire or Do applies to the lock's release, by Release or by
// the scope; Release's own option replaces it; the scope's other locks do
// not inherit it.
func TestHoldAtLeastRememberedFromTheAcquisition(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		hold := lockmgr.HoldAtLeast(time.Minute)
		l := e.lock("get", hold)
		require.NoError(t, e.m.Release(e.ctx, l))
		assert.True(t, e.isLocked("get"), "GetLock's hold kept it")
		require.NoError(t, e.m.Release(e.ctx, l, lockmgr.HoldAtLeast(0)))
		assert.False(t, e.isLocked("get"), "Release's HoldAtLeast(0) replaced it")

		l = e.lock("re", hold)
		require.NoError(t, e.m.Unlock(e.ctx, "re"))
		nl, err := e.m.Renew(e.ctx, l, lockmgr.Create())
		require.NoError(t, err, "taken anew")
		require.NoError(t, e.m.Release(e.ctx, nl))
		assert.True(t, e.isLocked("re"), "a lock renewed with Create keeps its hold")

		require.NoError(t, e.m.Do(e.ctx, "do", func(ctx context.Context, s *lockmgr.Scope) error {
			return s.Lock(ctx, "extra")
		}, hold))
		assert.True(t, e.isLocked("do"), "Do's end kept its main lock for the hold")
		assert.False(t, e.isLocked("extra"), "the scope's other lock was released")

		s, err := e.m.Acquire(e.ctx, "acq", hold, lockmgr.KeepAliveEvery(20*time.Millisecond))
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond) // renewals keep the hold
		require.NoError(t, s.Unlock(e.ctx, "acq"))
		assert.True(t, e.isLocked("acq"), "the scope's Unlock kept it")
		require.NoError(t, s.Close())
		require.NoError(t, e.m.Unlock(e.ctx, "acq"), "Unlock by name is not owner-checked and ignores holds")
		assert.False(t, e.isLocked("acq"))
	})
}

// TestHoldAtLeastBadInput: a negative hold, and any other option given to
// Release, fail before any SQL runs; the lock stays as it was.
func TestHoldAtLeastBadInput(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		_, err := e.m.GetLock(e.ctx, "x", lockmgr.HoldAtLeast(-time.Second))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		assert.Contains(t, err.Error(), "HoldAtLeast")
		assert.False(t, e.isLocked("x"))
		l := e.lock("x")
		err = e.m.Release(e.ctx, l, lockmgr.HoldAtLeast(-time.Second))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		err = e.m.Release(e.ctx, l, lockmgr.Wait(time.Second))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		assert.Contains(t, err.Error(), "Release does not take Wait()")
		assert.True(t, e.isLocked("x"), "nothing was released")
		_, err = e.m.Renew(e.ctx, l, lockmgr.HoldAtLeast(time.Second))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption, "Renew has no use for it")
	})
}

// TestHoldAtLeastOwnerChecked: a lock taken over after its expiry is not
// the releaser's to keep: ErrNotHeld, and the new holder is untouched.
func TestHoldAtLeastOwnerChecked(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		old := e.lock("n")
		e.expire("n")
		l := e.lock("n", lockmgr.Expires(time.Minute))
		err := e.m.Release(e.ctx, old, lockmgr.HoldAtLeast(time.Hour))
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		got, err := e.m.Get(e.ctx, "n")
		require.NoError(t, err)
		assert.Equal(t, l.Token, got.Token)
		assert.InDelta(t, 60, secondsLeft(t, got), 5, "its expiry untouched")
	})
}
