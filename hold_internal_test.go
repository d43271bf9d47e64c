package lockmgr

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// TestHoldAtLeastWakesNoWaiter: a release that keeps the row under
// HoldAtLeast wakes none of this process's waiters (the lock is not free);
// one that deletes it does.
func TestHoldAtLeastWakesNoWaiter(t *testing.T) {
	db, err := gorm.Open(sqlite.Open(t.TempDir()+"/h.db?_pragma=busy_timeout(5000)"), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	defer sqlDB.Close()
	m, err := New(db)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, m.AutoMigrate(ctx))
	w := &waiter{wake: make(chan struct{}, 1)}
	defer local.subscribe(m.dbID, m.tableName, "job", w)()

	l, err := m.GetLock(ctx, "job", HoldAtLeast(time.Hour))
	require.NoError(t, err)
	require.NoError(t, m.Release(ctx, l))
	assert.Empty(t, w.wake, "a kept release wakes nobody")
	require.NoError(t, m.Release(ctx, l, HoldAtLeast(0)))
	assert.Len(t, w.wake, 1, "a deleting release wakes the first waiter")
}
