package lockmgr_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// TestAcquireWithoutReturning runs acquisition as on MySQL 8 (no INSERT …
// RETURNING: the upsert, then a read-back by token) on MariaDB.
func TestAcquireWithoutReturning(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		if e.kind != "mysql" {
			t.Skip("the MySQL 8 path is MySQL-only")
		}
		m := lockmgr.WithoutReturning(e.m)
		l, err := m.GetLock(e.ctx, "a", lockmgr.Expires(time.Minute))
		require.NoError(t, err)
		assert.InDelta(t, 60, secondsLeft(t, l), 2)
		assert.Positive(t, l.Fence)
		_, err = m.GetLock(e.ctx, "a")
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		e.expire("a")
		nl, err := m.GetLock(e.ctx, "a")
		require.NoError(t, err, "takes over an expired lock")
		assert.Greater(t, nl.Fence, l.Fence)
		require.ErrorIs(t, m.Release(e.ctx, l), lockmgr.ErrNotHeld)
		require.NoError(t, m.Release(e.ctx, nl))

		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := m.GetLock(e.ctx, "race")
				if err != nil {
					assert.ErrorIs(t, err, lockmgr.ErrLocked)
					return
				}
				mu.Lock()
				won++
				mu.Unlock()
			}()
		}
		wg.Wait()
		assert.Equal(t, 1, won)
	})
}
