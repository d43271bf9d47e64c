package reliability

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// TestGuardBehindPgBouncer: Guard and Scope.Transaction through a
// transaction-pooling PgBouncer, with each pgx exec mode a pooler user is
// told to use, with and without GORM's PrepareStmt: guarded writes of a
// held lock commit, of a released one are ErrNotHeld and do not, and
// goroutines sharing the pooler's few server connections all get through.
// With PrepareStmt the guarded transactions write nothing of their own:
// GORM would prepare the caller's statements, which a transaction pooler
// cannot serve (42P05) whatever lockmgr does; lockmgr's own are not
// prepared there.
func TestGuardBehindPgBouncer(t *testing.T) {
	dsn := poolerDSN(t)
	for _, mode := range []string{"simple_protocol", "exec", "cache_describe"} {
		for _, prep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/PrepareStmt=%v", mode, prep), func(t *testing.T) {
				db, err := gorm.Open(postgres.Open(withParam(t, dsn, "default_query_exec_mode", mode)),
					&gorm.Config{Logger: logger.Discard, PrepareStmt: prep})
				require.NoError(t, err)
				sqlDB, err := db.DB()
				require.NoError(t, err)
				sqlDB.SetMaxOpenConns(20)
				t.Cleanup(func() { _ = sqlDB.Close() })
				m := newManager(t, db, tableName("gpool"))
				ledger := tableName("gpooled")
				require.NoError(t, db.Table(ledger).AutoMigrate(&guardWrite{}))
				dropTables(t, db, ledger)
				guardThroughPooler(t, db, m, ledger, !prep)
			})
		}
	}
}

func guardThroughPooler(t *testing.T, db *gorm.DB, m *lockmgr.Manager, ledger string, writes bool) {
	ctx := context.Background()
	const workers, each = 8, 10
	var wg sync.WaitGroup
	var done atomic.Int64
	for w := range workers {
		wg.Go(func() {
			err := m.Do(ctx, fmt.Sprintf("pooled-%d", w%2), func(ctx context.Context, s *lockmgr.Scope) error {
				for range each {
					if err := s.Transaction(ctx, func(tx *gorm.DB) error {
						if !writes {
							return nil
						}
						return tx.Table(ledger).Create(&guardWrite{Fence: s.Main().Fence, Worker: w}).Error
					}); err != nil {
						return err
					}
					done.Add(1)
				}
				return nil
			}, lockmgr.Wait(time.Minute))
			assert.NoError(t, err, "worker %d", w)
		})
	}
	wg.Wait()
	assert.Equal(t, int64(workers*each), done.Load(), "every guarded transaction committed")
	if writes {
		assert.Equal(t, int64(workers*each), countRows(t, db, ledger), "every guarded write committed")
	}
	l, err := m.GetLock(ctx, "released")
	require.NoError(t, err)
	require.NoError(t, m.Release(ctx, l))
	err = db.Transaction(func(tx *gorm.DB) error {
		if err := m.Guard(ctx, tx, l); err != nil {
			return err
		}
		return errors.New("the guard of a released lock passed")
	})
	require.ErrorIs(t, err, lockmgr.ErrNotHeld)
	if !writes {
		return
	}
	err = db.Transaction(func(tx *gorm.DB) error {
		if err := m.Guard(ctx, tx, l); err != nil {
			return err
		}
		return tx.Table(ledger).Create(&guardWrite{Fence: -1}).Error
	})
	require.ErrorIs(t, err, lockmgr.ErrNotHeld)
	var n int64
	require.NoError(t, db.Table(ledger).Where("fence = -1").Count(&n).Error)
	assert.Zero(t, n, "a released lock's guarded write committed")
}
