package lockmgr_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// TestMySQLFenceUpgrade migrates a table made by the previous design
// (<table>_fence with id only, rows whose fences are clock readings, a
// Django row with fence 0): the side structures are completed, and new
// fences are above every old one, also after the old rows are deleted.
func TestMySQLFenceUpgrade(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		if e.kind != "mysql" || e.onTiDB() {
			t.Skip("MySQL/MariaDB fencing (TiDB has no triggers: tidb_test.go)")
		}
		gaps, err := lockmgr.FenceGaps(e.m)
		require.NoError(t, err)
		require.Empty(t, gaps, "a fresh AutoMigrate leaves the fencing complete")

		exec := func(q string) { require.NoError(t, e.db.Exec(q).Error, q) }
		exec("DROP TRIGGER " + e.table + "_fence_bi")
		exec("ALTER TABLE " + e.table + "_fence DROP COLUMN hwm")
		gaps, err = lockmgr.FenceGaps(e.m)
		require.NoError(t, err)
		assert.Equal(t, []string{"column " + e.table + "_fence.hwm", "trigger " + e.table + "_fence_bi"}, gaps)

		future := time.Now().Add(time.Hour).UnixMicro() // an old clock fence above today's clock
		exec("INSERT INTO " + e.table + " (name, token, fence, locked_until) VALUES " +
			"('old', 't-old', " + strconv.FormatInt(future, 10) + ", UTC_TIMESTAMP(6) - INTERVAL 1 SECOND), ('django', '', 0, NULL)")
		require.NoError(t, e.m.AutoMigrate(e.ctx))
		gaps, err = lockmgr.FenceGaps(e.m)
		require.NoError(t, err)
		require.Empty(t, gaps)

		taken := e.lock("old", lockmgr.Expires(time.Minute))
		assert.Greater(t, taken.Fence, future, "takes over an old row with a larger fence")
		require.NoError(t, e.m.Release(e.ctx, taken))
		again := e.lock("old")
		assert.Greater(t, again.Fence, taken.Fence, "after the row was deleted")
		require.NoError(t, e.m.Unlock(e.ctx, "django"))
		d := e.lock("django")
		assert.Positive(t, d.Fence)
	})
}

// TestGaleraConcurrentFenceMigration runs AutoMigrate at the same moment on
// every node of a Galera cluster (LOCKMGR_TEST_GALERA_DSNS) over a lock
// table whose fence table and trigger are missing: every run succeeds and
// the fencing ends complete. (The lock table itself is created first: its
// concurrent creation is the schema check's part.)
func TestGaleraConcurrentFenceMigration(t *testing.T) {
	nodes := strings.Fields(os.Getenv("LOCKMGR_TEST_GALERA_DSNS"))
	if len(nodes) == 0 {
		t.Skip("no Galera cluster: set LOCKMGR_TEST_GALERA_DSNS")
	}
	table := uniqueTable()
	ms := make([]*lockmgr.Manager, len(nodes))
	for i, dsn := range nodes {
		db, err := gorm.Open(mysql.Open(dsn), quiet())
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := db.DB(); err == nil {
				_ = s.Close()
			}
		})
		ms[i], err = lockmgr.New(db, lockmgr.WithTable(table))
		require.NoError(t, err)
		if i == 0 {
			require.NoError(t, ms[0].AutoMigrate(context.Background()))
			t.Cleanup(func() { _ = db.Migrator().DropTable(table, table+"_fence") })
			require.NoError(t, db.Exec("DROP TABLE "+table+"_fence").Error)
			require.NoError(t, db.Exec("DROP TRIGGER "+table+"_fence_bi").Error)
		}
	}
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, len(ms))
		for i, m := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = m.AutoMigrate(context.Background())
			}()
		}
		wg.Wait()
		for i, err := range errs {
			assert.NoError(t, err, "round %d, node %d", round, i+1)
		}
	}
	for _, m := range ms {
		gaps, err := lockmgr.FenceGaps(m)
		require.NoError(t, err)
		assert.Empty(t, gaps)
	}
}
