package lockmgrtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/lockmgrtest"
)

func TestNew(t *testing.T) {
	var pool *sql.DB
	t.Run("inner", func(t *testing.T) {
		m := lockmgrtest.New(t, lockmgr.WithTable("my_locks"), lockmgr.WithOwner("me"))
		assert.Equal(t, "my_locks", m.Table())
		l, err := m.GetLock(context.Background(), "a")
		require.NoError(t, err)
		assert.Equal(t, "me", l.LockedBy)
		sqlDB, err := m.DB().DB()
		require.NoError(t, err)
		require.NoError(t, sqlDB.Ping())
		pool = sqlDB
	})
	require.NotNil(t, pool)
	assert.Error(t, pool.Ping(), "the pool is closed at cleanup")
}

func TestStealGetLock(t *testing.T) {
	eachManager(t, func(t *testing.T, m *lockmgr.Manager) {
		ctx := context.Background()
		l, err := m.GetLock(ctx, "job")
		require.NoError(t, err)
		s := lockmgrtest.Steal(t, m, "job")
		assert.Equal(t, lockmgrtest.Owner, s.LockedBy)
		assert.NotEqual(t, l.Token, s.Token)
		assert.Greater(t, s.Fence, l.Fence)
		_, err = m.Renew(ctx, l)
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		require.ErrorIs(t, m.Release(ctx, l), lockmgr.ErrNotHeld)
		_, err = m.GetLock(ctx, "job")
		require.ErrorIs(t, err, lockmgr.ErrLocked, "the stolen lock is held by its thief")
		got, err := m.Get(ctx, "job")
		require.NoError(t, err)
		assert.Equal(t, s.Token, got.Token)
		require.NoError(t, m.Release(ctx, s))
	})
}

func TestExpireGetLock(t *testing.T) {
	eachManager(t, func(t *testing.T, m *lockmgr.Manager) {
		ctx := context.Background()
		l, err := m.GetLock(ctx, "job")
		require.NoError(t, err)
		lockmgrtest.Expire(t, m, "job")
		_, err = m.Renew(ctx, l)
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		locked, err := m.IsLocked(ctx, "job")
		require.NoError(t, err)
		assert.False(t, locked)
		again, err := m.GetLock(ctx, "job")
		require.NoError(t, err, "an expired lock is free")
		assert.Greater(t, again.Fence, l.Fence)
	})
}

// TestLossCancelsScope: both ways of losing cancel a scope's context with
// ErrLockLost at its next keep-alive renewal, and Do reports it.
func TestLossCancelsScope(t *testing.T) {
	lose := map[string]func(testing.TB, *lockmgr.Manager, string){
		"steal":  func(t testing.TB, m *lockmgr.Manager, n string) { lockmgrtest.Steal(t, m, n) },
		"expire": lockmgrtest.Expire,
	}
	for _, how := range []string{"steal", "expire"} {
		t.Run(how, func(t *testing.T) {
			eachManager(t, func(t *testing.T, m *lockmgr.Manager) {
				var cause error
				err := m.Do(context.Background(), "job", func(ctx context.Context, _ *lockmgr.Scope) error {
					lose[how](t, m, "job")
					select {
					case <-ctx.Done():
						cause = context.Cause(ctx)
					case <-time.After(10 * time.Second):
					}
					return nil
				}, lockmgr.KeepAliveEvery(10*time.Millisecond))
				require.ErrorIs(t, cause, lockmgr.ErrLockLost, "the scope's context is cancelled")
				require.ErrorIs(t, err, lockmgr.ErrLockLost)
			})
		})
	}
}

// TestNotHeld: Steal and Expire fail the test, with a message naming the
// lock, when the name is not held (absent, or released).
func TestNotHeld(t *testing.T) {
	m := lockmgrtest.New(t)
	l, err := m.GetLock(context.Background(), "released")
	require.NoError(t, err)
	require.NoError(t, m.Release(context.Background(), l))
	for _, name := range []string{"absent", "released"} {
		for call, fn := range map[string]func(testing.TB){
			"Steal":  func(r testing.TB) { lockmgrtest.Steal(r, m, name) },
			"Expire": func(r testing.TB) { lockmgrtest.Expire(r, m, name) },
		} {
			r := &fatalRecorder{TB: t}
			r.run(fn)
			assert.True(t, r.failed, "%s %s", call, name)
			assert.Contains(t, r.msg, fmt.Sprintf("lockmgrtest: %s %q: the lock is not held", call, name))
		}
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the failure and ends
// the goroutine, as testing.T's does.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	panic(r)
}

func (r *fatalRecorder) run(fn func(testing.TB)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			if p := recover(); p != nil && p != any(r) {
				panic(p)
			}
		}()
		fn(r)
	}()
	wg.Wait()
	r.msg = strings.TrimSpace(r.msg)
}
