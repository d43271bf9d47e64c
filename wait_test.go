package lockmgr_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// waitFor is a waiter of name started on m, and its outcome.
type waitFor struct {
	cancel context.CancelFunc
	done   chan error
	got    atomic.Pointer[lockmgr.Lock]
}

func startWaiter(t *testing.T, e *env, m *lockmgr.Manager, name string, queued int) *waitFor {
	t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	w := &waitFor{cancel: cancel, done: make(chan error, 1)}
	go func() {
		l, err := m.GetLock(ctx, name, lockmgr.Wait(time.Minute))
		w.got.Store(l)
		w.done <- err
	}()
	eventually(t, 10*time.Second, func() bool { return lockmgr.LocalWaiters(m, name) == queued },
		"the waiter queues")
	return w
}

func (w *waitFor) result(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-w.done:
		return err
	case <-time.After(within):
		t.Fatalf("the waiter did not return within %v", within)
		return nil
	}
}

// TestReleaseWakesOneWaiterAndAWakeUpIsPassedOn: with backoff too slow to
// matter, a release wakes the waiter that has waited longest and no other
// (no attempt finds the name held), and a waiter that leaves after being
// woken, without the lock, wakes the next one.
func TestReleaseWakesOneWaiterAndAWakeUpIsPassedOn(t *testing.T) {
	defer lockmgr.SetBackoff(20*time.Second, time.Minute)()
	eachDB(t, func(t *testing.T, e *env) {
		var contended atomic.Int32
		var block atomic.Bool
		entered, resume := make(chan struct{}), make(chan struct{})
		m := e.manager(lockmgr.WithHooks(lockmgr.Hooks{OnContended: func(*lockmgr.Lock, time.Duration) {
			contended.Add(1)
			if block.CompareAndSwap(true, false) {
				entered <- struct{}{}
				<-resume
			}
		}}))
		held := e.lock("A")
		w1 := startWaiter(t, e, m, "A", 1)
		w2 := startWaiter(t, e, m, "A", 2)
		w3 := startWaiter(t, e, m, "A", 3)
		before := contended.Load()

		require.NoError(t, e.m.Release(e.ctx, held))
		require.NoError(t, w1.result(t, 10*time.Second), "the first waiter is woken, long before its backoff")
		time.Sleep(300 * time.Millisecond)
		assert.Equal(t, before, contended.Load(), "no other waiter was woken to find the name held")
		assert.Equal(t, 2, lockmgr.LocalWaiters(m, "A"))

		// w2 is woken while w1 holds the name, and held in its contention hook;
		// meanwhile w1 releases (the wake-up goes to w2, first in the queue)
		// and w2's context ends: w2 leaves without the lock and passes the
		// wake-up on to w3.
		block.Store(true)
		lockmgr.WakeLocal(m, "A")
		<-entered
		require.NoError(t, e.m.Release(e.ctx, w1.got.Load()))
		w2.cancel()
		close(resume)
		assert.ErrorIs(t, w2.result(t, 10*time.Second), context.Canceled)
		require.NoError(t, w3.result(t, 10*time.Second), "w3 is woken by w2, long before its backoff")
		require.NoError(t, e.m.Release(e.ctx, w3.got.Load()))
		w1.cancel()
		w3.cancel()
	})
}
