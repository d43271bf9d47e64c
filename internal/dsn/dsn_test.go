package dsn

import (
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDSNMySQL(t *testing.T) {
	for _, tc := range []struct{ in, display string }{
		{"mysql://app:p%40ss@db.internal:3307/locks?charset=utf8mb4", "mysql://app@db.internal:3307/locks"},
		{"mysql://app@db.internal/locks", "mysql://app@db.internal:3306/locks"},
		{"app:p@ss@tcp(db.internal:3307)/locks?charset=utf8mb4", "mysql://app@db.internal:3307/locks"},
		{"app@unix(/run/mysqld.sock)/locks?parseTime=false", "mysql://app@unix(/run/mysqld.sock)/locks"},
	} {
		db, err := Parse(tc.in, 7*time.Second)
		require.NoError(t, err, tc.in)
		assert.Equal(t, "mysql", db.Kind)
		assert.Equal(t, tc.display, db.Display)
		cfg, err := mysql.ParseDSN(db.DSN)
		require.NoError(t, err)
		assert.True(t, cfg.ParseTime, "parseTime is added")
		assert.Equal(t, time.UTC, cfg.Loc)
		assert.Equal(t, 7*time.Second, cfg.Timeout)
		assert.Equal(t, "locks", cfg.DBName)
		assert.Equal(t, "app", cfg.User)
	}
	db, err := Parse("mysql://app:p%40ss@db.internal:3307/locks?charset=utf8mb4&loc=Local&timeout=2s", time.Second)
	require.NoError(t, err)
	cfg, err := mysql.ParseDSN(db.DSN)
	require.NoError(t, err)
	assert.Equal(t, "p@ss", cfg.Passwd)
	assert.Equal(t, "db.internal:3307", cfg.Addr)
	assert.Equal(t, time.Local, cfg.Loc, "an explicit loc is kept")
	assert.Equal(t, 2*time.Second, cfg.Timeout, "an explicit timeout is kept")
	assert.Equal(t, "utf8mb4", cfg.Params["charset"])
}

func TestParseDSNPostgres(t *testing.T) {
	for _, in := range []string{"postgres://u:secret@h:5432/db?sslmode=disable", "postgresql://u:secret@h/db"} {
		db, err := Parse(in, time.Second)
		require.NoError(t, err)
		assert.Equal(t, "postgres", db.Kind)
		assert.Equal(t, in, db.DSN, "passed on unchanged")
		assert.NotContains(t, db.Display, "secret")
	}
}

func TestParseDSNSQLite(t *testing.T) {
	for _, tc := range []struct{ in, dsn, display string }{
		{"sqlite://lockmgr.db", "lockmgr.db?_busy_timeout=5000&_journal_mode=WAL&_txlock=immediate", "sqlite://lockmgr.db"},
		{"sqlite:///var/lib/locks.db", "/var/lib/locks.db?_busy_timeout=5000&_journal_mode=WAL&_txlock=immediate", "sqlite:///var/lib/locks.db"},
		{"data/locks.db?_timeout=100&_txlock=deferred", "data/locks.db?_journal_mode=WAL&_timeout=100&_txlock=deferred", "sqlite://data/locks.db"},
		{"sqlite3://x.db?_journal=DELETE", "x.db?_busy_timeout=5000&_journal=DELETE&_txlock=immediate", "sqlite://x.db"},
	} {
		db, err := Parse(tc.in, time.Second)
		require.NoError(t, err, tc.in)
		assert.Equal(t, "sqlite", db.Kind)
		assert.Equal(t, tc.dsn, db.DSN, tc.in)
		assert.Equal(t, tc.display, db.Display)
	}
}

func TestParseDSNErrors(t *testing.T) {
	for _, in := range []string{"", "  ", "redis://x", "mysql://", "mysql://u:p@h/db?parseTime=maybe", "sqlite://", "sqlite://x.db?%zz", "postgres://u:secret@h:port/db"} {
		_, err := Parse(in, time.Second)
		assert.ErrorIs(t, err, ErrInvalid, in)
		if err != nil {
			assert.NotContains(t, err.Error(), "secret")
		}
	}
}
