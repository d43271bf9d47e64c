package lockmgr_test

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// TestClosedHandlesLeaveNoCache: a program that opens and closes database
// handles (one per tenant, per test, per reconnect), each used by a
// Manager, does not keep state for every handle it ever had. Once a handle
// and its Managers are gone, the process-wide caches shrink back.
func TestClosedHandlesLeaveNoCache(t *testing.T) {
	file := sqliteDSN(t.TempDir() + "/c.db")
	dialectors := map[string]func() gorm.Dialector{"sqlite": func() gorm.Dialector { return sqlite.Open(file) }}
	if dsn := os.Getenv(envPostgres); dsn != "" {
		dialectors["postgres"] = func() gorm.Dialector { return postgres.Open(dsn) }
	}
	if dsn := os.Getenv(envMySQL); dsn != "" {
		dialectors["mysql"] = func() gorm.Dialector { return mysql.Open(dsn) }
	}
	for name, open := range dialectors {
		t.Run(name, func(t *testing.T) {
			table := uniqueTable()
			setup, err := gorm.Open(open(), quiet())
			require.NoError(t, err)
			m, err := lockmgr.New(setup, lockmgr.WithTable(table))
			require.NoError(t, err)
			require.NoError(t, m.AutoMigrate(t.Context()))
			t.Cleanup(func() {
				_ = setup.Migrator().DropTable(table, table+"_fence")
				if s, err := setup.DB(); err == nil {
					_ = s.Close()
				}
			})
			settle()
			baseline := lockmgr.CachedHandles()
			const handles = 20
			var used []*lockmgr.Manager
			for range handles {
				used = append(used, useAndClose(t, open(), table))
			}
			require.Greater(t, lockmgr.CachedHandles(), baseline, "the handles were cached while in use")
			runtime.KeepAlive(used)
			require.Eventually(t, func() bool {
				settle()
				return lockmgr.CachedHandles() <= baseline
			}, 10*time.Second, 50*time.Millisecond, "%d closed handles still cached", lockmgr.CachedHandles()-baseline)
		})
	}
}

// useAndClose opens a handle, takes, releases and waits on a lock through
// it (statements prepared, notice marks made), then closes it; it
// returns the Manager.
func useAndClose(t *testing.T, d gorm.Dialector, table string) *lockmgr.Manager {
	db, err := gorm.Open(d, quiet())
	require.NoError(t, err)
	m, err := lockmgr.New(db, lockmgr.WithTable(table), lockmgr.WithNotifier(&silentNotifier{}))
	require.NoError(t, err)
	l, err := m.GetLock(t.Context(), "cached")
	require.NoError(t, err)
	require.NoError(t, m.Release(t.Context(), l))
	_, err = m.List(t.Context())
	require.NoError(t, err)
	s, err := db.DB()
	require.NoError(t, err)
	require.NoError(t, s.Close())
	return m
}

// settle runs the garbage collector until cleanups have had their turn.
func settle() {
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
}

// silentNotifier hears nothing; with it a PostgreSQL Manager marks its
// releases' notices with its handle's origin.
type silentNotifier struct{}

func (*silentNotifier) Channel(table string) string                  { return "lockmgr_cache_test" }
func (*silentNotifier) Subscribe(string, func(string)) (stop func()) { return func() {} }
