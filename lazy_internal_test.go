package lockmgr

import (
	"github.com/gormlock/lockmgr/internal/engine"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// TestLazyReleaseOnlyWhereItMay runs PostgreSQL's release statement inside
// a transaction, to see the synchronous_commit it leaves for the commit:
// off for an expiring lock released outside the caller's transaction, on
// for a lock that never expires and for a release inside the caller's
// transaction (lazy false), whatever notifier statement is used.
func TestLazyReleaseOnlyWhereItMay(t *testing.T) {
	dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_POSTGRES_DSN is not set")
	}
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	defer sqlDB.Close()
	table := "lockmgr_lazy_" + time.Now().Format("150405000000")
	require.NoError(t, db.Exec("CREATE TABLE "+table+" (name varchar(255) PRIMARY KEY, locked_until timestamptz, token varchar(64))").Error)
	defer db.Exec("DROP TABLE " + table)
	d, err := newDialect("postgres", table, engine.Server{})
	require.NoError(t, err)
	for _, c := range []struct {
		what    string
		s       stmt
		expires bool
		lazy    bool
		want    string
	}{
		{"an expiring lock", d.release, true, true, "off"},
		{"an expiring lock, announced", d.releaseNotify, true, true, "off"},
		{"an expiring lock, announced if watched", d.releaseWatched, true, true, "off"},
		{"an expiring lock, unlocked", d.unlock, true, true, "off"},
		{"a lock that never expires", d.release, false, true, "on"},
		{"inside the caller's transaction", d.release, true, false, "on"},
		{"inside the caller's transaction, unlocked and announced", d.unlockNotify, true, false, "on"},
	} {
		t.Run(c.what, func(t *testing.T) {
			tx, err := sqlDB.Begin()
			require.NoError(t, err)
			defer tx.Rollback()
			_, err = tx.Exec("SET LOCAL synchronous_commit = on")
			require.NoError(t, err)
			until := "NULL"
			if c.expires {
				until = "now() + interval '1 minute'"
			}
			_, err = tx.Exec("INSERT INTO " + table + " VALUES ('a', " + until + ", 't')")
			require.NoError(t, err)
			var v values
			v[aName], v[aToken], v[aLazy], v[aChannel], v[aOrigin] = "a", "t", c.lazy, "lockmgr_lazy_test", originOf(newHandle())
			var n int64
			require.NoError(t, tx.QueryRow(c.s.native, c.s.bind(&v)...).Scan(&n))
			assert.EqualValues(t, 1, n, "the row is deleted")
			var got string
			require.NoError(t, tx.QueryRow("SHOW synchronous_commit").Scan(&got))
			assert.Equal(t, c.want, got)
		})
	}
}

// TestManagerOnATransactionIsNotLazy: a Manager made from a *gorm.DB inside
// a transaction releases durably, as WithTx does: its pool is the
// transaction.
func TestManagerOnATransactionIsNotLazy(t *testing.T) {
	dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_POSTGRES_DSN is not set")
	}
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	defer sqlDB.Close()
	m, err := New(db)
	require.NoError(t, err)
	assert.False(t, inTransaction(m.pool()))
	tx := db.Begin()
	require.NoError(t, tx.Error)
	defer tx.Rollback()
	mt, err := New(tx)
	require.NoError(t, err)
	assert.True(t, inTransaction(mt.pool()), "the pool is the caller's transaction")
	assert.Equal(t, m.dbID, mt.dbID, "the same database handle: waiters of both wake each other")
}
