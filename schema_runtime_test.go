package lockmgr_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// TestWithTableLengthLimits: a table name from which lockmgr derives a
// name the database cannot hold is ErrInvalidOption from New, naming the
// limit; the longest accepted name works end to end.
func TestWithTableLengthLimits(t *testing.T) {
	longest := map[string]int{"mysql": 47, "postgres": 46}
	for _, b := range backends() {
		n, ok := longest[b.dialect()]
		if !ok {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			for _, size := range []int{n + 1, 61} {
				_, err := lockmgr.New(db, lockmgr.WithTable("t"+strings.Repeat("x", size-1)))
				require.ErrorIs(t, err, lockmgr.ErrInvalidOption, "%d characters", size)
				assert.Contains(t, err.Error(), fmt.Sprintf("at most %d characters", n))
			}
			table := uniqueTable() + strings.Repeat("x", n-len(uniqueTable()))
			t.Cleanup(func() { dropAll(t, db, b.name, table) })
			e := &env{t: t, kind: b.dialect(), db: db, table: table, ctx: t.Context()}
			e.m = e.manager()
			require.NoError(t, e.m.AutoMigrate(e.ctx))
			checkLockTable(e)
		})
	}
}

// narrowLockedBy gives locked_by Django's width, 100 characters.
var narrowLockedBy = map[string]string{
	"mysql":    "ALTER TABLE %s MODIFY locked_by varchar(100) NULL",
	"postgres": "ALTER TABLE %s ALTER COLUMN locked_by TYPE varchar(100)",
}

func lockedByWidth(t *testing.T, e *env) int64 {
	var n int64
	require.NoError(t, e.db.Raw("SELECT character_maximum_length FROM information_schema.columns WHERE table_name = ? AND column_name = 'locked_by'", e.table).Scan(&n).Error)
	return n
}

// TestLongLockedByOnDjangoWidth: a LockedBy longer than a Django-width
// locked_by column is a clear error, before the lock statement for a new
// Manager, and ErrSchema for one whose column narrowed under it; neither
// changes the table.
func TestLongLockedByOnDjangoWidth(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ddl, ok := narrowLockedBy[e.kind]
		if !ok {
			t.Skip("SQLite does not bound varchar")
		}
		used := e.lock("before")
		require.NoError(t, e.db.Exec(fmt.Sprintf(ddl, e.table)).Error)
		long := strings.Repeat("h", 150)

		_, err := e.m.GetLock(e.ctx, "long", lockmgr.LockedBy(long))
		require.ErrorIs(t, err, lockmgr.ErrSchema)
		assert.Contains(t, err.Error(), "does not fit")
		assert.EqualValues(t, 100, lockedByWidth(t, e), "no ALTER at run time")

		fresh := e.manager()
		_, err = fresh.GetLock(e.ctx, "long", lockmgr.LockedBy(long))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		assert.Contains(t, err.Error(), "holds 100")
		assert.EqualValues(t, 100, lockedByWidth(t, e), "no ALTER at first use either")
		_, err = fresh.GetLock(e.ctx, "short", lockmgr.LockedBy("django-host"))
		require.NoError(t, err)
		require.NoError(t, e.m.Release(e.ctx, used))
	})
}

// holdTable opens a transaction on another connection that has read
// (PostgreSQL, MySQL) or written (SQLite) the table, and ends it after d
// or when the test ends.
func holdTable(t *testing.T, e *env, d time.Duration) {
	tx := e.db.Begin()
	require.NoError(t, tx.Error)
	q := "SELECT COUNT(*) FROM " + e.table
	if e.kind == "sqlite" {
		q = "DELETE FROM " + e.table + " WHERE 0"
	}
	require.NoError(t, tx.Exec(q).Error)
	done := make(chan struct{})
	go func() {
		select {
		case <-time.After(d):
		case <-done:
		}
		tx.Rollback()
	}()
	t.Cleanup(func() { close(done) })
}

// TestFirstUseBehindBusyTable: a first use completing a Django table while
// another transaction holds it gives up soon with ErrSchema, and the DDL
// it tried does not keep other statements on the table waiting.
func TestFirstUseBehindBusyTable(t *testing.T) {
	for _, b := range backends() {
		if b.name == "tidb" {
			continue // a first use never rebuilds a table there (TestPlainGORMSetup)
		}
		t.Run(b.name, func(t *testing.T) {
			e := bareEnv(t, b)
			require.NoError(t, e.db.Exec(fmt.Sprintf(djangoDDL[b.dialect()], e.table)).Error)
			e.m = e.manager()
			holdTable(t, e, 8*time.Second)
			ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
			defer cancel()
			other := make(chan time.Duration, 1)
			if e.kind != "sqlite" { // SQLite's open writer blocks every writer anyway
				go func() {
					time.Sleep(300 * time.Millisecond)
					start := time.Now()
					var n int64
					_ = e.db.WithContext(ctx).Raw("SELECT COUNT(*) FROM " + e.table).Scan(&n).Error
					other <- time.Since(start)
				}()
			}
			start := time.Now()
			_, err := e.m.GetLock(ctx, "first")
			took := time.Since(start)
			require.ErrorIs(t, err, lockmgr.ErrSchema)
			assert.Contains(t, err.Error(), "busy")
			assert.Less(t, took, 4*time.Second, "a first use gives up soon")
			if e.kind != "sqlite" {
				assert.Less(t, <-other, 3*time.Second, "a reader of the table waited behind the first use's DDL")
			}
		})
	}
}

// TestSearchPathMismatch: a pooled connection whose search_path differs
// gets ErrSchema naming it; no second lock table is created.
func TestSearchPathMismatch(t *testing.T) {
	dsn := os.Getenv(envPostgres)
	if dsn == "" {
		t.Skip(envPostgres + " not set")
	}
	db, err := gorm.Open(postgres.Open(dsn), quiet())
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	sqlDB.SetMaxOpenConns(1)
	e := &env{t: t, kind: "postgres", db: db, table: uniqueTable(), ctx: t.Context()}
	schema := e.table + "_sp"
	require.NoError(t, db.Exec("CREATE SCHEMA "+schema).Error)
	t.Cleanup(func() {
		_ = db.Exec("SET search_path TO DEFAULT").Error
		_ = db.Exec("DROP SCHEMA " + schema + " CASCADE").Error
		dropAll(t, db, "postgres", e.table)
	})
	e.m = e.manager()
	require.NoError(t, e.m.AutoMigrate(e.ctx))
	e.lock("a")
	require.NoError(t, db.Exec("SET search_path TO "+schema).Error) // the pool's one connection
	_, err = e.m.GetLock(e.ctx, "b")
	require.ErrorIs(t, err, lockmgr.ErrSchema)
	assert.Contains(t, err.Error(), "search_path")
	var n int64
	require.NoError(t, db.Raw("SELECT COUNT(*) FROM pg_tables WHERE schemaname = ?", schema).Scan(&n).Error)
	assert.Zero(t, n, "no second lock table")
}
