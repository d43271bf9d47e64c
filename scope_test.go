package lockmgr_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

func TestScopeHoldsAndReleasesEveryLock(t *testing.T) { // django 7
	eachDB(t, func(t *testing.T, e *env) {
		err := e.m.Do(e.ctx, "A", func(ctx context.Context, s *lockmgr.Scope) error {
			require.NoError(t, s.Lock(ctx, "B"))
			_, err := e.m.GetLock(ctx, "A")
			require.ErrorIs(t, err, lockmgr.ErrLocked)
			assert.True(t, e.isLocked("B"))
			ok, err := s.TryLock(ctx, "B")
			require.NoError(t, err)
			assert.False(t, ok, "B is held, by this very scope")
			require.ErrorIs(t, s.Lock(ctx, "B"), lockmgr.ErrLocked)
			assert.Equal(t, "A", s.Main().Name)
			return nil
		})
		require.NoError(t, err)
		assert.False(t, e.isLocked("A"))
		assert.False(t, e.isLocked("B"))
	})
}

func TestScopeErrorPropagatesAndReleases(t *testing.T) { // django 8
	eachDB(t, func(t *testing.T, e *env) {
		boom := errors.New("boom")
		err := e.m.Do(e.ctx, "A", func(context.Context, *lockmgr.Scope) error { return boom })
		require.ErrorIs(t, err, boom)
		assert.False(t, e.isLocked("A"))
	})
}

func TestScopePanicReleasesThenRepanics(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		assert.PanicsWithValue(t, "boom", func() {
			_ = e.m.Do(e.ctx, "A", func(ctx context.Context, s *lockmgr.Scope) error {
				require.NoError(t, s.Lock(ctx, "B"))
				panic("boom")
			})
		})
		assert.False(t, e.isLocked("A"))
		assert.False(t, e.isLocked("B"))
	})
}

func TestScopeWaitsForExpiry(t *testing.T) { // django 9, scaled down
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("A", lockmgr.Expires(1500*time.Millisecond))
		start := time.Now()
		err := e.m.Do(e.ctx, "A", func(context.Context, *lockmgr.Scope) error { return nil }, lockmgr.Wait(5*time.Second))
		require.NoError(t, err)
		took := time.Since(start)
		assert.GreaterOrEqual(t, took, 1400*time.Millisecond)
		assert.Less(t, took, 5*time.Second)
	})
}

func TestScopeWaitRunsOut(t *testing.T) { // django 10, scaled down
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("A", lockmgr.Expires(time.Minute))
		start := time.Now()
		err := e.m.Do(e.ctx, "A", func(context.Context, *lockmgr.Scope) error {
			t.Error("the body must not run")
			return nil
		}, lockmgr.Wait(time.Second))
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		took := time.Since(start)
		assert.GreaterOrEqual(t, took, time.Second)
		assert.Less(t, took, 5*time.Second, "a wait never sleeps far past its deadline")
	})
}

func TestScopeRenew(t *testing.T) { // django 19
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(20*time.Second))
		require.NoError(t, err)
		defer func() { require.NoError(t, s.Close()) }()
		assert.InDelta(t, 17.5, secondsLeft(t, s.Main()), 2.5)
		l, err := s.Renew(e.ctx, lockmgr.Expires(30*time.Second))
		require.NoError(t, err)
		assert.InDelta(t, 47.5, secondsLeft(t, l), 2.5, "adds time by default")
		assert.InDelta(t, 47.5, secondsLeft(t, s.Main()), 2.5)
		l, err = s.Renew(e.ctx)
		require.NoError(t, err)
		assert.InDelta(t, 167.5, secondsLeft(t, l), 2.5, "120 s by default")
	})
}

func TestScopeRenewRecreatesExpiredMain(t *testing.T) { // django 20, scaled down
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(time.Second), lockmgr.NoKeepAlive())
		require.NoError(t, err)
		time.Sleep(1200 * time.Millisecond)
		assert.True(t, s.Main().Expired())
		assert.False(t, e.isLocked("A"))
		require.ErrorIs(t, context.Cause(s.Context()), lockmgr.ErrLockLost, "the expiry the scope knew ended its context")
		l, err := s.Renew(e.ctx, lockmgr.Expires(30*time.Second))
		require.NoError(t, err)
		assert.InDelta(t, 27.5, secondsLeft(t, l), 2.5)
		assert.True(t, e.isLocked("A"))
		require.ErrorIs(t, s.Close(), lockmgr.ErrLockLost, "Close reports the loss its context was cancelled for")
		assert.False(t, e.isLocked("A"), "the lock taken anew is released")
	})
}

func TestScopeRenewAfterTakeoverFails(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(time.Minute), lockmgr.NoKeepAlive())
		require.NoError(t, err)
		e.expire("A")
		other := e.lock("A")
		_, err = s.Renew(e.ctx)
		require.ErrorIs(t, err, lockmgr.ErrLocked, "the name is someone else's now")
		err = s.Close()
		require.ErrorIs(t, err, lockmgr.ErrLockLost)
		assert.True(t, e.isLocked("A"), "Close left the new holder alone")
		require.NoError(t, e.m.Release(e.ctx, other))
	})
}

func TestScopeUnlockAndRenewTracksRecreatedLock(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "A")
		require.NoError(t, err)
		require.NoError(t, s.Lock(e.ctx, "B"))
		require.NoError(t, s.Unlock(e.ctx, "B"))
		assert.False(t, e.isLocked("B"))
		require.ErrorIs(t, s.Unlock(e.ctx, "B"), lockmgr.ErrNotHeld)
		require.ErrorIs(t, s.Unlock(e.ctx, "never"), lockmgr.ErrNotHeld)
		require.NoError(t, s.Unlock(e.ctx, "A"))
		assert.False(t, e.isLocked("A"))
		_, err = s.Renew(e.ctx, lockmgr.NoCreate())
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		_, err = s.Renew(e.ctx)
		require.NoError(t, err, "Renew re-creates the released main lock")
		assert.True(t, e.isLocked("A"))
		require.NoError(t, s.Close())
		assert.False(t, e.isLocked("A"), "the re-created lock is released too")
		require.ErrorIs(t, s.Lock(e.ctx, "C"), lockmgr.ErrScopeClosed)
		require.NoError(t, s.Close(), "closing twice is harmless")
	})
}

func TestScopeKeepAlive(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		err := e.m.Do(e.ctx, "A", func(ctx context.Context, s *lockmgr.Scope) error {
			time.Sleep(2500 * time.Millisecond)
			assert.NoError(t, ctx.Err(), "the lock is kept")
			assert.True(t, e.isLocked("A"), "outlives its 900 ms expiry")
			assert.False(t, s.Main().Expired())
			return nil
		}, lockmgr.Expires(900*time.Millisecond))
		require.NoError(t, err)
		assert.False(t, e.isLocked("A"))
	})
}

func TestScopeLearnsLockWasTaken(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		lost := make(chan time.Duration, 1)
		m := e.manager(lockmgr.WithHooks(lockmgr.Hooks{OnLost: func(_ *lockmgr.Lock, d time.Duration) { lost <- d }}))
		err := m.Do(e.ctx, "A", func(ctx context.Context, s *lockmgr.Scope) error {
			require.NoError(t, e.m.Unlock(e.ctx, "A")) // an operator clears it
			other := e.lock("A", lockmgr.Expires(time.Minute))
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the scope never learned it lost its lock")
			}
			assert.ErrorIs(t, context.Cause(ctx), lockmgr.ErrLockLost)
			assert.ErrorIs(t, context.Cause(s.Context()), lockmgr.ErrLockLost)
			_ = other
			return nil
		}, lockmgr.Expires(time.Second))
		require.ErrorIs(t, err, lockmgr.ErrLockLost, "Do reports the loss even though fn returned nil")
		assert.True(t, e.isLocked("A"), "the new holder keeps its lock")
		select {
		case <-lost:
		default:
			t.Error("OnLost was not called")
		}
	})
}

func TestScopeLearnsLossWhenRenewalsFail(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(1500*time.Millisecond))
		require.NoError(t, err)
		acquired := time.Now()
		require.NoError(t, e.db.Migrator().DropTable(e.table)) // every renewal now fails
		select {
		case <-s.Context().Done():
		case <-time.After(15 * time.Second):
			t.Fatal("the scope never gave up its lock")
		}
		assert.ErrorIs(t, context.Cause(s.Context()), lockmgr.ErrLockLost)
		assert.Less(t, time.Since(acquired), 1500*time.Millisecond, "it gave up before the lock could expire")
		require.ErrorIs(t, s.Close(), lockmgr.ErrLockLost)
	})
}

func TestScopeKeepsLocksWhenContextEnds(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		s, err := e.m.Acquire(ctx, "A", lockmgr.Expires(900*time.Millisecond))
		require.NoError(t, err)
		require.NoError(t, s.Lock(ctx, "B"))
		cancel()
		assert.ErrorIs(t, s.Context().Err(), context.Canceled)
		time.Sleep(1500 * time.Millisecond) // past the expiry: the keep-alive goes on
		assert.True(t, e.isLocked("A"), "the caller's work may still run: its locks stay held until Close")
		assert.True(t, e.isLocked("B"))
		require.NoError(t, s.Close())
		assert.False(t, e.isLocked("A"))
		assert.False(t, e.isLocked("B"))
	})
}

func TestWaitEndsWithContext(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("A")
		ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.m.GetLock(ctx, "A", lockmgr.Wait(time.Minute))
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 3*time.Second)
	})
}

func TestWaitHandsOffQuicklyInProcess(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("A")
		got := make(chan time.Time, 1)
		go func() {
			_, err := e.m.GetLock(e.ctx, "A", lockmgr.Wait(30*time.Second))
			assert.NoError(t, err)
			got <- time.Now()
		}()
		time.Sleep(1500 * time.Millisecond) // the waiter's backoff has grown to its cap
		released := time.Now()
		require.NoError(t, e.m.Release(e.ctx, l))
		select {
		case at := <-got:
			assert.Less(t, at.Sub(released), 500*time.Millisecond, "woken by the release, not by backoff")
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter never got the lock")
		}
	})
}

func TestScopeAfterLongWaitIsNotLost(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("A", lockmgr.Expires(1500*time.Millisecond))
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(time.Second), lockmgr.Wait(10*time.Second))
		require.NoError(t, err)
		defer func() { require.NoError(t, s.Close()) }()
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, s.Context().Err(), "the expiry counts from the winning attempt, not from the start of the wait")
	})
}

func TestAcquireAsContextEnds(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		var mu sync.Mutex
		var cancel context.CancelFunc
		m := e.manager(lockmgr.WithHooks(lockmgr.Hooks{OnAcquire: func(*lockmgr.Lock, time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			cancel() // the context ends while Acquire is finishing
		}}))
		for range 50 {
			ctx, c := context.WithCancel(e.ctx)
			mu.Lock()
			cancel = c
			mu.Unlock()
			s, err := m.Acquire(ctx, "x")
			require.NoError(t, err)
			_ = s.Close()
			assert.False(t, e.isLocked("x"))
		}
	})
}
