package reliability

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// TestFenceOrderAcrossRelease is the torture harness's fence finding made
// deterministic. An acquisition A is made to wait while B takes the name
// and releases it, deleting the row; A then wins, and its fence must still
// be greater than B's: Fence "grows with every acquisition of Name, also
// across deletions of the row".
//
// SQLite: A starts first and waits for the write lock, which B's
// transaction holds (its fence floor used to be read before that wait).
// PostgreSQL/MariaDB: an acquisition takes a per-name lock (an advisory
// lock, or a row of <table>_fence) before it reads the clock, so B, in a
// transaction, takes the name first and A waits for that lock; the race
// the harness found can no longer form, and what is checked is the order.
func TestFenceOrderAcrossRelease(t *testing.T) {
	forEachDB(t, fenceOrderAcrossRelease)
}

// TestFenceOrderAcrossReleaseTiDB: the same on TiDB, whose fence comes
// from a bucket high-water mark the acquisition writes.
func TestFenceOrderAcrossReleaseTiDB(t *testing.T) {
	fenceOrderAcrossRelease(t, tidbTarget(t))
}

func fenceOrderAcrossRelease(t *testing.T, tg target) {
	ctx := context.Background()
	db := mustOpen(t, tg)
	table := tableName("lock")
	m := newManager(t, db, table)
	old, err := m.GetLock(ctx, "f", lockmgr.Expires(time.Microsecond))
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond) // "f" is now expired, its row still there

	tx := db.Begin() // SQLite: BEGIN IMMEDIATE (see sqliteDSN), the write lock
	require.NoError(t, tx.Error)
	defer tx.Rollback()
	in := m.WithTx(tx)
	var b *lockmgr.Lock
	if tg.Driver != "sqlite" {
		b, err = in.GetLock(ctx, "f", lockmgr.Expires(time.Minute))
		require.NoError(t, err, "B could not take the expired lock")
	}
	type result struct {
		l   *lockmgr.Lock
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := m.GetLock(ctx, "f", lockmgr.Expires(time.Minute), lockmgr.Wait(30*time.Second))
		done <- result{l, err}
	}()
	time.Sleep(300 * time.Millisecond) // A has started and waits
	if tg.Driver == "sqlite" {
		b, err = in.GetLock(ctx, "f", lockmgr.Expires(time.Minute))
		require.NoError(t, err, "B could not take the expired lock")
	}
	require.NoError(t, in.Release(ctx, b))
	require.NoError(t, tx.Commit().Error)

	a := <-done
	require.NoError(t, a.err, "A did not get the lock after B released it")
	assert.Greater(t, b.Fence, old.Fence)
	assert.Greater(t, a.l.Fence, b.Fence, "A acquired after B but got a smaller fence: "+
		"a storage guarded by fences would reject the current holder and accept the previous one")
	require.NoError(t, m.Release(ctx, a.l))
}
