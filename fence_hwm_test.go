package lockmgr_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// TestFenceAboveHighWaterAfterDelete: once a name's row is deleted, its
// next fence is still above every fence handed out before, even when the
// clock is below them (simulated by a high-water mark far in the future,
// as fences from a clock that was ahead, or a primary whose clock was).
func TestFenceAboveHighWaterAfterDelete(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("f")
		require.NoError(t, e.m.Release(e.ctx, l))
		far := time.Now().Add(24 * 365 * time.Hour).UnixMicro()
		require.NoError(t, e.db.Exec("UPDATE "+e.table+"_fence SET hwm = ?", far).Error)
		l = e.lock("f")
		assert.Greater(t, l.Fence, far, "the fence after a delete fell back to the clock")
		require.NoError(t, e.m.Release(e.ctx, l))
		next := e.lock("f")
		assert.Greater(t, next.Fence, l.Fence)
	})
}

// TestPostgresTableSpellingsShareFences: "public"."t" and t are one table;
// two Managers spelling it both ways serialize their acquisitions, and the
// fences of one name never go back across them.
func TestPostgresTableSpellingsShareFences(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		if e.kind != "postgres" {
			t.Skip("PostgreSQL's schema-qualified spelling")
		}
		other, err := lockmgr.New(e.db, lockmgr.WithTable("public."+e.table))
		require.NoError(t, err)
		var mu sync.Mutex
		var fences []int64
		ctx, cancel := context.WithTimeout(e.ctx, 1500*time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		for _, m := range []*lockmgr.Manager{e.m, other, e.m, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					l, err := m.GetLock(ctx, "spelled", lockmgr.Wait(time.Second))
					if err != nil {
						continue
					}
					mu.Lock()
					fences = append(fences, l.Fence) // while holding it: in holding order
					mu.Unlock()
					assert.NoError(t, m.Release(e.ctx, l))
				}
			}()
		}
		wg.Wait()
		require.NotEmpty(t, fences)
		for i := 1; i < len(fences); i++ {
			require.Greater(t, fences[i], fences[i-1], "fence %d went back across the two spellings", i)
		}
		t.Logf("%d holds across the two spellings, fences increasing", len(fences))
	})
}
