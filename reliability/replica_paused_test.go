package reliability

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/plugin/dbresolver"

	"github.com/gormlock/lockmgr"
)

// TestReplicaPausedStandby registers a real hot standby as
// gorm.io/plugin/dbresolver's replica and pauses its WAL replay, so that it
// lags the primary by the whole test: IsLocked, List, GetLock, Renew and
// Release through the resolver must all answer from the primary. Control:
// a Manager reading the standby directly does not see the primary's lock.
func TestReplicaPausedStandby(t *testing.T) {
	if os.Getenv("LOCKMGR_TEST_PGREPLICA") != "1" {
		t.Skip("LOCKMGR_TEST_PGREPLICA=1 runs the standby tests (they start .ci/engines/pgreplica.sh)")
	}
	ctx := context.Background()
	env := startReplicaEnv(t, "async")
	standbyDSN := "postgres://postgres@127.0.0.1:" + nodePort(t, "standby") + "/test?sslmode=disable"
	direct := newManagerAt(t, standbyDSN, env.table)
	pgreplica(t, "pause")
	t.Cleanup(func() { pgreplica(t, "resume") })

	fresh, err := env.m.GetLock(ctx, "fresh", lockmgr.Expires(time.Minute))
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	stale, err := direct.IsLocked(ctx, "fresh")
	require.NoError(t, err)
	require.False(t, stale, "control: the paused standby already sees the primary's lock, so the test shows nothing")

	db := mustOpen(t, target{Driver: "postgres", DSN: env.dsn})
	require.NoError(t, db.Use(dbresolver.Register(dbresolver.Config{
		Replicas: []gorm.Dialector{postgres.Open(standbyDSN)},
	})))
	m, err := lockmgr.New(db, lockmgr.WithTable(env.table))
	require.NoError(t, err)
	held, err := m.IsLocked(ctx, "fresh")
	require.NoError(t, err)
	assert.True(t, held, "IsLocked answered from the paused standby")
	list, err := m.List(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"fresh"}, lockNames(list), "List answered from the paused standby")
	_, err = m.GetLock(ctx, "fresh")
	assert.ErrorIs(t, err, lockmgr.ErrLocked, "GetLock judged the lock by the paused standby")
	_, err = m.Renew(ctx, fresh, lockmgr.Expires(time.Minute))
	assert.NoError(t, err, "Renew went to the paused standby")
	assert.NoError(t, m.Release(ctx, fresh), "Release went to the paused standby")
	held, err = env.m.IsLocked(ctx, "fresh")
	require.NoError(t, err)
	assert.False(t, held, "Release did not reach the primary")
	report(t, "replica-paused", map[string]any{"standby_saw_lock": stale})
}

func newManagerAt(t *testing.T, dsn, table string) *lockmgr.Manager {
	t.Helper()
	db := mustOpen(t, target{Driver: "postgres", DSN: dsn})
	m, err := lockmgr.New(db, lockmgr.WithTable(table))
	require.NoError(t, err)
	return m
}
