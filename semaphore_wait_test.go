package lockmgr_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

func TestSemaphoreWaitWakesOnRelease(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := newSem(t, e.m, "w", 2)
		a, err := s.Acquire(e.ctx)
		require.NoError(t, err)
		b, err := s.Acquire(e.ctx)
		require.NoError(t, err)
		start := time.Now()
		_, err = s.Acquire(e.ctx, lockmgr.Wait(300*time.Millisecond))
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "waited its Wait")

		// Released 1.5 s into a wait whose backoff has grown to a second:
		// only a wake-up brings it in well before its next retry.
		for _, held := range []*lockmgr.Lock{b, a} { // whichever slot is released
			got := make(chan error, 1)
			go func() {
				l, err := s.Acquire(e.ctx, lockmgr.Wait(time.Minute))
				if err == nil {
					err = s.Release(e.ctx, l)
				}
				got <- err
			}()
			time.Sleep(1500 * time.Millisecond)
			released := time.Now()
			require.NoError(t, s.Release(e.ctx, held))
			select {
			case err := <-got:
				require.NoError(t, err)
				assert.Less(t, time.Since(released), 400*time.Millisecond, "woken by the release of %s", held.Name)
			case <-time.After(30 * time.Second):
				t.Fatal("the waiter never got the slot")
			}
		}
	})
}

func TestSemaphoreWaitContext(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := newSem(t, e.m, "c", 1)
		_, err := s.Acquire(e.ctx)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
		defer cancel()
		_, err = s.Acquire(ctx, lockmgr.Wait(time.Minute))
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestSemaphoreDoCancelledOnSlotLoss(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := newSem(t, e.m, "do", 2)
		var slot string
		err := s.Do(e.ctx, func(ctx context.Context, sc *lockmgr.Scope) error {
			slot = sc.Main().Name
			holders, err := s.Holders(ctx)
			require.NoError(t, err)
			require.Len(t, holders, 1)
			assert.Equal(t, slot, holders[0].Name)
			require.NoError(t, e.m.Unlock(ctx, slot)) // an operator clears the slot
			select {
			case <-ctx.Done():
				assert.ErrorIs(t, context.Cause(ctx), lockmgr.ErrLockLost)
				return context.Cause(ctx)
			case <-time.After(30 * time.Second):
				return errors.New("the scope's context was not cancelled")
			}
		}, lockmgr.Expires(2*time.Second), lockmgr.KeepAliveEvery(100*time.Millisecond))
		require.ErrorIs(t, err, lockmgr.ErrLockLost)
		_, _, ok := lockmgr.SemaphoreOf(slot)
		assert.True(t, ok, "the scope's main lock is a slot")
		holders, err := s.Holders(e.ctx)
		require.NoError(t, err)
		assert.Empty(t, holders, "Do released what it held")
	})
}

func TestSemaphoreDoKeepsSlotAlive(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := newSem(t, e.m, "alive", 1)
		err := s.Do(e.ctx, func(ctx context.Context, sc *lockmgr.Scope) error {
			time.Sleep(2500 * time.Millisecond) // past the slot's first expiry
			_, err := s.Acquire(ctx)
			assert.ErrorIs(t, err, lockmgr.ErrLocked, "the kept-alive slot is still held")
			return ctx.Err()
		}, lockmgr.Expires(time.Second))
		require.NoError(t, err)
	})
}

// TestSemaphoreConcurrency: many goroutines, each acquiring and releasing
// repeatedly; an independent counter of those inside never passes n.
func TestSemaphoreConcurrency(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		const n, workers, rounds = 3, 12, 4
		s := newSem(t, e.m, "conc", n)
		var inside, most, done atomic.Int32
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					err := s.Do(e.ctx, func(ctx context.Context, _ *lockmgr.Scope) error {
						now := inside.Add(1)
						for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
						}
						time.Sleep(20 * time.Millisecond)
						inside.Add(-1)
						done.Add(1)
						return nil
					}, lockmgr.Wait(time.Minute))
					if err != nil {
						t.Errorf("Do: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		assert.EqualValues(t, workers*rounds, done.Load(), "every round ran")
		assert.LessOrEqual(t, most.Load(), int32(n), "never more than n inside")
		assert.GreaterOrEqual(t, most.Load(), int32(2), "the slots were used at once")
	})
}
