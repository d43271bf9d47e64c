package gocronlock_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/gocronlock"
)

// TestLockerHoldsATickAtLeastAndAtMost: a tick's lock outlives an early
// Unlock until LockAtLeastFor (a late replica skips the tick), then is
// free, its row gone; a runner that never unlocks holds it until
// LockAtMostFor only.
func TestLockerHoldsATickAtLeastAndAtMost(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var logs bytes.Buffer
		warn := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		a, err := gocronlock.NewLocker(e.manager(t, "a", lockmgr.WithLogger(warn)), gocronlock.Interval(4*time.Second))
		require.NoError(t, err)
		defer func() { _ = a.Close(context.Background()) }()
		b, err := gocronlock.NewLocker(e.manager(t, "b", lockmgr.WithLogger(warn)), gocronlock.Interval(4*time.Second))
		require.NoError(t, err)
		defer func() { _ = b.Close(context.Background()) }()

		start := time.Now()
		k, err := a.Lock(ctx, "job")
		require.NoError(t, err)
		require.NoError(t, k.Unlock(ctx), "the job returned at once")
		_, err = b.Lock(ctx, "job")
		if time.Since(start) < 1500*time.Millisecond {
			require.ErrorIs(t, err, lockmgr.ErrLocked, "a replica firing the tick late skips it")
		}
		require.Eventually(t, func() bool { return e.rows(t) == 0 }, 8*time.Second, 20*time.Millisecond,
			"the kept row is deleted once its hold (2 s) has passed")
		assert.GreaterOrEqual(t, time.Since(start), 1900*time.Millisecond, "not before")

		start = time.Now()
		_, err = a.Lock(ctx, "crash") // never unlocked: its runner crashed
		require.NoError(t, err)
		var k2 any
		require.Eventually(t, func() bool {
			k, err := b.Lock(ctx, "crash")
			k2 = k
			return err == nil
		}, 8*time.Second, 20*time.Millisecond, "free at LockAtMostFor (3 s)")
		assert.GreaterOrEqual(t, time.Since(start), 2900*time.Millisecond)
		assert.Less(t, time.Since(start), 4*time.Second, "before the next tick")
		require.NotNil(t, k2)
		assert.Empty(t, logs.String(), "contested ticks log nothing")
	})
}

// TestLockerOptions: defaults follow Interval; bad options fail at once.
func TestLockerOptions(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		for _, opts := range [][]gocronlock.Option{
			{gocronlock.Interval(0)},
			{gocronlock.LockAtLeastFor(-time.Second)},
			{gocronlock.LockAtMostFor(0)},
			{gocronlock.LockAtLeastFor(2 * time.Second), gocronlock.LockAtMostFor(time.Second)},
			{nil},
		} {
			_, err := gocronlock.NewLocker(e.m, opts...)
			assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		}
		_, err := gocronlock.NewLocker(nil)
		assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)

		lk, err := gocronlock.NewLocker(e.m, gocronlock.Interval(time.Hour), gocronlock.Prefix("cron/"))
		require.NoError(t, err)
		k, err := lk.Lock(context.Background(), "nightly")
		require.NoError(t, err)
		l, err := e.m.Get(context.Background(), "cron/nightly")
		require.NoError(t, err, "the lock is the prefix and the job's name")
		left, _ := l.ExpiresIn()
		assert.InDelta(t, 45*60, left.Seconds(), 30, "LockAtMostFor defaults to 3/4 of Interval")
		require.NoError(t, k.Unlock(context.Background()))
		ok, err := e.m.IsLocked(context.Background(), "cron/nightly")
		require.NoError(t, err)
		assert.True(t, ok, "held for LockAtLeastFor, half an hour")

		_, err = lk.Lock(context.Background(), string(make([]byte, 300)))
		assert.ErrorIs(t, err, lockmgr.ErrInvalidName)

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		assert.ErrorIs(t, lk.Close(ctx), context.DeadlineExceeded, "Close waits for the half-hour hold only as long as ctx lets it")
		ok, err = e.m.IsLocked(context.Background(), "cron/nightly")
		require.NoError(t, err)
		assert.True(t, ok, "and leaves it held")
	})
}
