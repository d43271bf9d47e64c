package lockmgr_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

func status(name string, was bool, st string, locked bool) lockmgr.LockSetStatus {
	return lockmgr.LockSetStatus{Name: name, WasLocked: was, Status: st, Locked: locked}
}

func lockNames(ls []*lockmgr.Lock) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return out
}

func TestSetLockShapes(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("held", lockmgr.Expires(10*time.Second))
		res, err := e.m.SetLock(e.ctx, []string{"new", "held", "other"}, lockmgr.Expires(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, []lockmgr.LockSetStatus{
			status("new", false, "create", true), status("held", true, "extend", true), status("other", false, "create", true),
		}, res.Statuses)
		assert.Equal(t, lockmgr.LockSetCounts{Created: 2, Renewed: 1}, res.Counts)
		assert.Equal(t, []string{"new", "held", "other"}, lockNames(res.Locks))
		assert.InDelta(t, 60, secondsLeft(t, res.Locks[1]), 3, "extended to max(current, now+timeout)")

		res, err = e.m.SetLock(e.ctx, []string{"free", "held"}, lockmgr.NoCreate(), lockmgr.NoRenew())
		require.NoError(t, err)
		assert.Equal(t, []lockmgr.LockSetStatus{status("free", false, "skip", false), status("held", true, "skip", true)}, res.Statuses)
		assert.Equal(t, lockmgr.LockSetCounts{SkipCreate: 1, SkipRenew: 1}, res.Counts)
		assert.Equal(t, []string{"held"}, lockNames(res.Locks))
		assert.False(t, e.isLocked("free"))

		res, err = e.m.SetLock(e.ctx, []string{"dup", "dup"})
		require.NoError(t, err)
		assert.Equal(t, []lockmgr.LockSetStatus{status("dup", false, "create", true), status("dup", true, "extend", true)}, res.Statuses)
		assert.Equal(t, lockmgr.LockSetCounts{Created: 1, Renewed: 1}, res.Counts)
		assert.Len(t, res.Locks, 2)

		res, err = e.m.SetLock(e.ctx, []string{"forever"}, lockmgr.NoExpiry())
		require.NoError(t, err)
		assert.Nil(t, res.Locks[0].LockedUntil)
	})
}

func TestSetLockFailRollsBackEverything(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		holder := e.lock("held")
		_, err := e.m.SetLock(e.ctx, []string{"a", "b", "held", "c"}, lockmgr.Fail())
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		var lf *lockmgr.LockFail
		require.ErrorAs(t, err, &lf)
		assert.Equal(t, holder.Token, lf.Lock.Token, "LockFail carries the holder's lock")
		assert.Equal(t, holder.LockedBy, lf.Lock.LockedBy)
		for _, n := range []string{"a", "b", "c"} {
			assert.False(t, e.isLocked(n), "%s was rolled back", n)
		}
		_, err = e.m.SetLock(e.ctx, []string{"x", "x"}, lockmgr.Fail())
		require.ErrorAs(t, err, &lf, "a name given twice is held the second time")
		assert.False(t, e.isLocked("x"))
	})
}

func TestSetLockFailInsideCallersTransaction(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("held")
		err := e.db.Transaction(func(tx *gorm.DB) error {
			tm := e.m.WithTx(tx)
			_, err := tm.GetLock(e.ctx, "before")
			require.NoError(t, err)
			_, err = tm.SetLock(e.ctx, []string{"a", "held"}, lockmgr.Fail())
			var lf *lockmgr.LockFail
			require.ErrorAs(t, err, &lf)
			_, err = tm.SetLock(e.ctx, []string{"after"})
			require.NoError(t, err, "the caller's transaction is still usable")
			return nil
		})
		require.NoError(t, err)
		assert.True(t, e.isLocked("before"))
		assert.True(t, e.isLocked("after"))
		assert.False(t, e.isLocked("a"), "only SetLock's savepoint was rolled back")
	})
}

func TestSetLockBadInput(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		_, err := e.m.SetLock(e.ctx, []string{"ok", ""})
		require.ErrorIs(t, err, lockmgr.ErrInvalidName)
		assert.Contains(t, err.Error(), "names[1]")
		_, err = e.m.SetLock(e.ctx, []string{"ok"}, lockmgr.Expires(-1))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		assert.False(t, e.isLocked("ok"))
		res, err := e.m.SetLock(e.ctx, nil)
		require.NoError(t, err)
		assert.Empty(t, res.Statuses)
	})
}

// TestSetLockConcurrentAllOrNothing runs 8 goroutines taking overlapping
// name sets with Fail for a while: no deadlock surfaces, and each call took
// all of its names or none.
func TestSetLockConcurrentAllOrNothing(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		names := []string{"n0", "n1", "n2", "n3", "n4", "n5"}
		deadline := time.Now().Add(2 * time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, fails := 0, 0
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 7))
				for time.Now().Before(deadline) {
					set := []string{names[r.IntN(6)], names[r.IntN(6)], names[r.IntN(6)]}
					res, err := e.m.SetLock(e.ctx, set, lockmgr.Fail(), lockmgr.Expires(time.Minute))
					var lf *lockmgr.LockFail
					if err != nil {
						if !assert.ErrorAs(t, err, &lf, "SetLock(%v)", set) {
							return
						}
						mu.Lock()
						fails++
						mu.Unlock()
						continue
					}
					mu.Lock()
					wins++
					mu.Unlock()
					for _, l := range uniqueLocks(res.Locks) {
						assert.NoError(t, e.m.Release(e.ctx, l), "took %v: it must hold all of them", set)
					}
				}
			}()
		}
		wg.Wait()
		t.Logf("%s: %d all-taken, %d rolled back", e.kind, wins, fails)
		assert.Positive(t, wins)
	})
}

func uniqueLocks(ls []*lockmgr.Lock) []*lockmgr.Lock {
	seen := map[string]bool{}
	var out []*lockmgr.Lock
	for _, l := range ls {
		if !seen[l.Name] {
			seen[l.Name] = true
			out = append(out, l)
		}
	}
	return out
}

func TestSetLockManyNames(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		names := make([]string, 2500)
		for i := range names {
			names[i] = fmt.Sprintf("bulk-%05d", i)
		}
		res, err := e.m.SetLock(e.ctx, names)
		require.NoError(t, err)
		assert.Equal(t, 2500, res.Counts.Created)
		res, err = e.m.SetLock(e.ctx, names)
		require.NoError(t, err)
		assert.Equal(t, 2500, res.Counts.Renewed)
	})
}

// A SetLock transaction longer than the release timeout (each statement
// within it) completes: the timeout bounds work after the caller gives
// up, not the work itself.
func TestSetLockOutlastsReleaseTimeout(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		m := e.manager(lockmgr.WithReleaseTimeout(500 * time.Millisecond))
		names := make([]string, 1000)
		for i := range names {
			names[i] = fmt.Sprintf("slow-%04d", i)
		}
		res, err := m.SetLock(e.ctx, names)
		require.NoError(t, err)
		assert.Equal(t, len(names), res.Counts.Created)
	})
}
