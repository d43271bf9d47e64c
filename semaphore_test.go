package lockmgr_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

func newSem(t *testing.T, m *lockmgr.Manager, name string, n int) *lockmgr.Semaphore {
	t.Helper()
	s, err := lockmgr.NewSemaphore(m, name, n)
	require.NoError(t, err)
	return s
}

func TestSemaphoreValidation(t *testing.T) {
	e := newEnv(t, backends()[0])
	for _, n := range []int{0, -1, lockmgr.MaxSemaphoreSize + 1} {
		_, err := lockmgr.NewSemaphore(e.m, "s", n)
		assert.ErrorIs(t, err, lockmgr.ErrInvalidOption, "n = %d", n)
	}
	_, err := lockmgr.NewSemaphore(nil, "s", 1)
	assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)
	for _, name := range []string{"", "a\x00b", "\xff", strings.Repeat("x", lockmgr.MaxNameLen-4)} {
		_, err := lockmgr.NewSemaphore(e.m, name, 1)
		assert.ErrorIs(t, err, lockmgr.ErrInvalidName, "name %q", name)
	}
	s := newSem(t, e.m, strings.Repeat("x", lockmgr.MaxNameLen-5), lockmgr.MaxSemaphoreSize)
	assert.Equal(t, strings.Repeat("x", lockmgr.MaxNameLen-5)+"#255", s.Slot(255))
	_, err = s.Acquire(e.ctx, lockmgr.Fail())
	assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)
	//lint:ignore SA1012 a nil context is what this checks
	_, err = s.Acquire(nil) //nolint:staticcheck
	assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)
	assert.ErrorIs(t, s.Do(e.ctx, nil), lockmgr.ErrInvalidOption)
	locks, err := e.m.List(e.ctx)
	require.NoError(t, err)
	assert.Empty(t, locks, "no SQL ran: nothing written")
}

func TestSemaphoreOf(t *testing.T) {
	for name, want := range map[string]struct {
		sem  string
		slot int
		ok   bool
	}{
		"a#0": {"a", 0, true}, "a#b#12": {"a#b", 12, true}, "a#size": {"a", -1, true},
		"a#01": {}, "a#": {}, "#1": {}, "a": {}, "a#-1": {}, "a#256": {}, "a#x": {},
	} {
		sem, slot, ok := lockmgr.SemaphoreOf(name)
		assert.Equal(t, want.ok, ok, name)
		if want.ok {
			assert.Equal(t, want.sem, sem, name)
			assert.Equal(t, want.slot, slot, name)
		}
	}
}

func TestSemaphoreHoldersThenLocked(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := newSem(t, e.m, "exports", 3)
		var got []*lockmgr.Lock
		for range 3 {
			l, err := s.Acquire(e.ctx, lockmgr.Expires(time.Minute))
			require.NoError(t, err)
			got = append(got, l)
		}
		_, err := s.Acquire(e.ctx)
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		holders, err := s.Holders(e.ctx)
		require.NoError(t, err)
		require.Len(t, holders, 3)
		for i, h := range holders {
			assert.Equal(t, s.Slot(i), h.Name, "holders in slot order")
			assert.NotEmpty(t, h.Token)
		}
		locks, err := e.m.List(e.ctx)
		require.NoError(t, err)
		assert.Len(t, locks, 4, "List sees the three slots and the marker")

		require.NoError(t, s.Release(e.ctx, got[1]))
		assert.ErrorIs(t, s.Release(e.ctx, got[1]), lockmgr.ErrNotHeld)
		l, err := s.Acquire(e.ctx)
		require.NoError(t, err, "a released slot is free again")
		assert.Equal(t, got[1].Name, l.Name)
		assert.Greater(t, l.Fence, got[1].Fence, "fences grow per slot")

		other := newSem(t, e.m, "other", 3)
		assert.ErrorIs(t, other.Release(e.ctx, l), lockmgr.ErrInvalidOption)
	})
}

func TestSemaphoreExpiredSlotReused(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := newSem(t, e.m, "s", 2)
		a, err := s.Acquire(e.ctx)
		require.NoError(t, err)
		_, err = s.Acquire(e.ctx)
		require.NoError(t, err)
		e.expire(a.Name)
		holders, err := s.Holders(e.ctx)
		require.NoError(t, err)
		assert.Len(t, holders, 1, "an expired slot is not a holder")
		l, err := s.Acquire(e.ctx)
		require.NoError(t, err, "the expired slot is taken over")
		assert.Equal(t, a.Name, l.Name)
		assert.ErrorIs(t, e.m.Release(e.ctx, a), lockmgr.ErrNotHeld, "the old holder's token no longer holds it")
	})
}

func TestSemaphoreSizeMismatch(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		three, five := newSem(t, e.m, "s", 3), newSem(t, e.m, "s", 5)
		l, err := three.Acquire(e.ctx)
		require.NoError(t, err)
		_, err = five.Acquire(e.ctx)
		require.ErrorIs(t, err, lockmgr.ErrSemaphoreSize)
		assert.Contains(t, err.Error(), "has 3 slots")
		assert.ErrorIs(t, five.Do(e.ctx, func(context.Context, *lockmgr.Scope) error { return nil }), lockmgr.ErrSemaphoreSize)
		require.NoError(t, three.Release(e.ctx, l))
		_, err = five.Acquire(e.ctx)
		require.ErrorIs(t, err, lockmgr.ErrSemaphoreSize, "the marker outlives the holders")

		n, err := e.m.ClearSemaphore(e.ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, 1, n, "the marker")
		_, err = five.Acquire(e.ctx)
		require.NoError(t, err, "after a clear, the next size is the new size")
		_, err = three.Acquire(e.ctx)
		require.ErrorIs(t, err, lockmgr.ErrSemaphoreSize)

		require.NoError(t, e.m.Unlock(e.ctx, "t#size"))
		e.lock("t#size")
		_, err = newSem(t, e.m, "t", 1).Acquire(e.ctx)
		require.ErrorIs(t, err, lockmgr.ErrSemaphoreSize, "a plain lock where the marker goes")
	})
}

func TestSemaphoreRacingMarkers(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		var wg sync.WaitGroup
		var won [2]atomic.Int32
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := newSem(t, e.m, "race", 2+g%2)
				l, err := s.Acquire(e.ctx)
				if err == nil {
					won[g%2].Add(1)
					_ = l
				} else if !errors.Is(err, lockmgr.ErrSemaphoreSize) && !errors.Is(err, lockmgr.ErrLocked) {
					t.Errorf("acquire: %v", err)
				}
			}()
		}
		wg.Wait()
		assert.True(t, won[0].Load() == 0 || won[1].Load() == 0, "one size won the marker: %d, %d", won[0].Load(), won[1].Load())
		assert.LessOrEqual(t, won[0].Load()+won[1].Load(), int32(3))
	})
}
