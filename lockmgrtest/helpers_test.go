package lockmgrtest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/lockmgrtest"
)

// TestMain fails the run if a test leaves a goroutine behind (a scope's
// keep-alive, a pool's connection opener, an SDK's batcher).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eachManager runs fn with New's Manager, and with a Manager the test built
// itself on PostgreSQL and MariaDB/MySQL when LOCKMGR_TEST_POSTGRES_DSN and
// LOCKMGR_TEST_MYSQL_DSN are set (each on a table of its own, dropped at
// cleanup).
func eachManager(t *testing.T, fn func(t *testing.T, m *lockmgr.Manager), opts ...lockmgr.Option) {
	t.Run("sqlite", func(t *testing.T) { fn(t, lockmgrtest.New(t, opts...)) })
	servers := map[string]func(string) gorm.Dialector{
		"LOCKMGR_TEST_POSTGRES_DSN": postgres.Open, "LOCKMGR_TEST_MYSQL_DSN": mysql.Open,
	}
	for _, env := range []string{"LOCKMGR_TEST_POSTGRES_DSN", "LOCKMGR_TEST_MYSQL_DSN"} {
		dsn := os.Getenv(env)
		if dsn == "" {
			continue
		}
		t.Run(servers[env](dsn).Name(), func(t *testing.T) {
			fn(t, serverManager(t, servers[env](dsn), opts...))
		})
	}
}

func serverManager(t *testing.T, d gorm.Dialector, opts ...lockmgr.Option) *lockmgr.Manager {
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	var b [5]byte
	_, _ = rand.Read(b[:])
	table := "lockmgrtest_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_ = db.Migrator().DropTable(table, table+"_fence")
		_ = sqlDB.Close()
	})
	m, err := lockmgr.New(db, append([]lockmgr.Option{lockmgr.WithTable(table)}, opts...)...)
	require.NoError(t, err)
	require.NoError(t, m.AutoMigrate(context.Background()))
	return m
}
