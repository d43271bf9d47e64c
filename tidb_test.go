package lockmgr_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// onTiDB reports whether e's database is a TiDB server (kind "mysql").
func (e *env) onTiDB() bool {
	d, ok := e.db.Dialector.(*mysql.Dialector)
	return ok && d.Config != nil && strings.Contains(d.ServerVersion, "-TiDB-")
}

func eachTiDB(t *testing.T, fn func(t *testing.T, e *env)) {
	eachDB(t, func(t *testing.T, e *env) {
		if !e.onTiDB() {
			t.Skip("TiDB only: set " + envTiDB)
		}
		fn(t, e)
	})
}

// TestTiDBFenceFromLaggingServer: a session whose clock is an hour behind
// (SET timestamp, as a TiDB server with a lagging clock would read
// UTC_TIMESTAMP) takes a name after it was released, its row deleted:
// its fence must still be greater than the previous holder's, and the
// next one's greater again.
func TestTiDBFenceFromLaggingServer(t *testing.T) {
	eachTiDB(t, func(t *testing.T, e *env) {
		lag := time.Now().Add(-time.Hour).Unix()
		laggingDB, err := gorm.Open(mysql.Open(fmt.Sprintf("%s&timestamp=%d", os.Getenv(envTiDB), lag)), quiet())
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := laggingDB.DB(); err == nil {
				_ = s.Close()
			}
		})
		var now time.Time
		require.NoError(t, laggingDB.Raw("SELECT UTC_TIMESTAMP(6)").Scan(&now).Error)
		require.WithinDuration(t, time.Unix(lag, 0), now, time.Minute, "the session's clock lags")
		lagging, err := lockmgr.New(laggingDB, lockmgr.WithTable(e.table))
		require.NoError(t, err)

		first := e.lock("f")
		require.NoError(t, e.m.Release(e.ctx, first))
		second, err := lagging.GetLock(e.ctx, "f", lockmgr.NoExpiry())
		require.NoError(t, err)
		assert.Greater(t, second.Fence, first.Fence, "a lagging server's fence went backwards")
		require.NoError(t, lagging.Release(e.ctx, second))
		third := e.lock("f")
		assert.Greater(t, third.Fence, second.Fence)
	})
}

// TestTiDBMigratesGORMTable: a table GORM created from the model (name in
// TiDB's default utf8mb4_bin, which pads: 'a' = 'a ') is rebuilt with a
// byte-exact name, its rows kept, since TiDB cannot alter the collation
// of an indexed column (error 8200).
func TestTiDBMigratesGORMTable(t *testing.T) {
	eachTiDB(t, func(t *testing.T, e *env) {
		table := uniqueTable()
		t.Cleanup(func() { _ = e.db.Migrator().DropTable(table, table+"_fence") })
		require.NoError(t, e.db.Table(table).AutoMigrate(&lockmgr.Lock{}))
		until := time.Now().Add(time.Hour).UTC()
		require.NoError(t, e.db.Table(table).Create(&lockmgr.Lock{Name: "kept", LockedBy: "gorm", LockedUntil: &until, Token: "t", Fence: 7}).Error)

		m, err := lockmgr.New(e.db, lockmgr.WithTable(table))
		require.NoError(t, err)
		require.NoError(t, m.AutoMigrate(e.ctx))
		require.NoError(t, m.AutoMigrate(e.ctx), "migrating twice is harmless")
		ok, err := m.IsLocked(e.ctx, "kept")
		require.NoError(t, err)
		assert.True(t, ok, "the row survived the rebuild")
		for _, n := range []string{"a", "A", "a "} {
			_, err := m.GetLock(e.ctx, n)
			require.NoError(t, err, "%q is its own lock", n)
		}
		l, err := m.GetLock(e.ctx, "kept2")
		require.NoError(t, err)
		assert.Greater(t, l.Fence, int64(7))
	})
}
