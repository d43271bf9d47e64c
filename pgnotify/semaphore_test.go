package pgnotify_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/pgnotify"
)

// TestSemaphoreWaiterWokenByAnotherProcess: a semaphore waiter watches
// every slot, so the release of any slot by another process (another
// database handle, its own Listener: no in-process wake-up) NOTIFYs it.
func TestSemaphoreWaiterWokenByAnotherProcess(t *testing.T) {
	dsn, _, m, _, table := setup(t)
	ctx := t.Context()
	db2, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB2, _ := db2.DB()
	t.Cleanup(func() { _ = sqlDB2.Close() })
	l2, err := pgnotify.Listen(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l2.Close()) })
	other, err := lockmgr.New(db2, lockmgr.WithTable(table), lockmgr.WithNotifier(l2))
	require.NoError(t, err)

	sem, err := lockmgr.NewSemaphore(m, "exports", 3)
	require.NoError(t, err)
	for range 3 {
		_, err := sem.Acquire(ctx)
		require.NoError(t, err)
	}
	got := make(chan time.Time, 1)
	go func() {
		l, err := sem.Acquire(ctx, lockmgr.Wait(30*time.Second))
		if assert.NoError(t, err) {
			assert.Equal(t, sem.Slot(2), l.Name)
		}
		got <- time.Now()
	}()
	time.Sleep(2 * time.Second) // the waiter's backoff reaches its 1 s cap
	released := time.Now()
	require.NoError(t, other.Unlock(ctx, sem.Slot(2)))
	select {
	case at := <-got:
		assert.Less(t, at.Sub(released), 300*time.Millisecond, "woken by NOTIFY, not by backoff")
		t.Logf("hand-off after the release of slot 2: %v", at.Sub(released))
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never got the slot")
	}
}
