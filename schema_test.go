package lockmgr_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// dropAll removes table and every side structure lockmgr makes for it.
func dropAll(t testing.TB, db *gorm.DB, kind, table string) {
	_ = db.Migrator().DropTable(table, table+"_fence")
}

// checkLockTable asserts what a user relies on from a set-up table:
// byte-exact names, 255-byte names, fences that grow across deletions,
// and mutual exclusion.
func checkLockTable(e *env) {
	t := e.t
	t.Helper()
	for _, name := range []string{"a", "A", "a ", strings.Repeat("n", lockmgr.MaxNameLen)} {
		_, err := e.m.GetLock(e.ctx, name)
		require.NoError(t, err, "GetLock(%q): names are byte-exact and up to 255 bytes", name)
	}
	_, err := e.m.GetLock(e.ctx, "a")
	require.ErrorIs(t, err, lockmgr.ErrLocked)
	first := e.lock("fence-check")
	require.NoError(t, e.m.Release(e.ctx, first))
	second := e.lock("fence-check")
	assert.Greater(t, second.Fence, first.Fence, "fences grow across deletions")
	_, err = e.m.Reset(e.ctx)
	require.NoError(t, err)
}

// TestPlainGORMSetup: db.AutoMigrate(&Lock{}) and New are all a user
// needs; the first call completes the table (side table, triggers,
// byte-exact collation).
func TestPlainGORMSetup(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := bareEnv(t, b)
			require.NoError(t, e.db.Table(e.table).AutoMigrate(&lockmgr.Lock{}))
			e.m = e.manager()
			tidbNeedsMigrate(e, b)
			checkLockTable(e)
			if b.dialect() == "mysql" {
				var coll string
				require.NoError(t, e.db.Raw("SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'name'", e.table).Scan(&coll).Error)
				assert.Contains(t, []string{"utf8mb4_nopad_bin", "utf8mb4_0900_bin"}, coll)
			}
		})
	}
}

// tidbNeedsMigrate: on TiDB a first use never rebuilds the table (the
// only way to a byte-exact name there): it names AutoMigrate, which does.
func tidbNeedsMigrate(e *env, b backend) {
	if b.name != "tidb" {
		return
	}
	_, err := e.m.GetLock(e.ctx, "first")
	require.ErrorIs(e.t, err, lockmgr.ErrSchema)
	assert.Contains(e.t, err.Error(), "m.AutoMigrate(ctx) or `lockmgr migrate`")
	require.NoError(e.t, e.m.AutoMigrate(e.ctx))
}

// bareEnv is an env with a fresh table name and no table yet.
func bareEnv(t *testing.T, b backend) *env {
	db := b.open(t)
	table := uniqueTable()
	t.Cleanup(func() { dropAll(t, db, b.name, table) })
	return &env{t: t, kind: b.dialect(), db: db, table: table, ctx: t.Context()}
}

func TestDjangoTableFirstUse(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := bareEnv(t, b)
			require.NoError(t, e.db.Exec(fmt.Sprintf(djangoDDL[b.dialect()], e.table)).Error)
			e.m = e.manager()
			tidbNeedsMigrate(e, b)
			checkLockTable(e)
		})
	}
}

func TestMissingTableIsErrSchema(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := bareEnv(t, b)
			e.m = e.manager()
			calls := map[string]func() error{
				"GetLock":    func() error { _, err := e.m.GetLock(e.ctx, "a"); return err },
				"IsLocked":   func() error { _, err := e.m.IsLocked(e.ctx, "a"); return err },
				"Unlock":     func() error { return e.m.Unlock(e.ctx, "a") },
				"Release":    func() error { return e.m.Release(e.ctx, &lockmgr.Lock{Name: "a", Token: "t"}) },
				"Renew":      func() error { _, err := e.m.Renew(e.ctx, &lockmgr.Lock{Name: "a", Token: "t"}); return err },
				"RenewLock":  func() error { _, err := e.m.RenewLock(e.ctx, "a"); return err },
				"List":       func() error { _, err := e.m.List(e.ctx); return err },
				"Get":        func() error { _, err := e.m.Get(e.ctx, "a"); return err },
				"CleanLocks": func() error { _, err := e.m.CleanLocks(e.ctx); return err },
				"Reset":      func() error { _, err := e.m.Reset(e.ctx); return err },
				"SetLock":    func() error { _, err := e.m.SetLock(e.ctx, []string{"a"}); return err },
				"Do":         func() error { return e.m.Do(e.ctx, "a", func(context.Context, *lockmgr.Scope) error { return nil }) },
				"CheckTable": func() error { return e.m.CheckTable(e.ctx) },
				"WithTx": func() error {
					return e.db.Transaction(func(tx *gorm.DB) error { _, err := e.m.WithTx(tx).GetLock(e.ctx, "a"); return err })
				},
			}
			for what, call := range calls {
				err := call()
				require.ErrorIs(t, err, lockmgr.ErrSchema, what)
				assert.Contains(t, err.Error(), fmt.Sprintf("table %q does not exist", e.table), what)
				assert.Contains(t, err.Error(), "lockmgr migrate", what)
			}
			var n int64
			require.NoError(t, e.db.Raw(fmt.Sprintf(countTables[b.dialect()], e.table)).Scan(&n).Error)
			assert.Zero(t, n, "no call creates the table")
		})
	}
}

var countTables = map[string]string{
	"postgres": "SELECT COUNT(*) FROM pg_class WHERE relname LIKE '%s%%'",
	"mysql":    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '%s%%'",
	"sqlite":   "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%s%%'",
}

// TestDamagedTable: a table changed under a Manager that has used it is
// ErrSchema naming the fix, and no call changes it (no DDL at run time);
// AutoMigrate repairs it.
func TestDamagedTable(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		first := e.lock("fenced")
		require.NoError(t, e.m.Release(e.ctx, first))
		require.NoError(t, e.db.Exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN token", e.table)).Error)
		for range 2 {
			_, err := e.m.GetLock(e.ctx, "fenced")
			require.ErrorIs(t, err, lockmgr.ErrSchema)
			assert.Contains(t, err.Error(), "column token is missing")
			assert.Contains(t, err.Error(), "m.AutoMigrate(ctx) or `lockmgr migrate`")
			require.ErrorIs(t, e.m.CheckTable(e.ctx), lockmgr.ErrSchema, "a readiness probe changes nothing either")
			assert.False(t, e.db.Migrator().HasColumn(e.table, "token"), "no call ran DDL")
		}
		require.NoError(t, e.m.AutoMigrate(e.ctx))
		second := e.lock("fenced")
		assert.Greater(t, second.Fence, first.Fence)
		checkLockTable(e)

		dropAll(t, e.db, e.kind, e.table)
		_, err := e.m.GetLock(e.ctx, "gone")
		require.ErrorIs(t, err, lockmgr.ErrSchema, "a dropped table is named, not a raw driver error")
		assert.Contains(t, err.Error(), "does not exist")
		var n int64
		require.NoError(t, e.db.Raw(fmt.Sprintf(countTables[e.kind], e.table)).Scan(&n).Error)
		assert.Zero(t, n, "no call creates the table")
		require.NoError(t, e.m.AutoMigrate(e.ctx))
		checkLockTable(e)
	})
}

func TestTableWithoutPrimaryKey(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := bareEnv(t, b)
			ddl := strings.Replace(djangoDDL[b.dialect()], " PRIMARY KEY", "", 1)
			require.NoError(t, e.db.Exec(fmt.Sprintf(ddl, e.table)).Error)
			e.m = e.manager()
			_, err := e.m.GetLock(e.ctx, "a")
			require.ErrorIs(t, err, lockmgr.ErrSchema)
			assert.Contains(t, err.Error(), "not the primary key")
			assert.Contains(t, err.Error(), "cannot repair")
		})
	}
}

// TestWithTxRunsNoDDL: inside a caller's transaction an incomplete table is
// named, and left for the next call outside it to complete.
func TestWithTxRunsNoDDL(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := bareEnv(t, b)
			require.NoError(t, e.db.Exec(fmt.Sprintf(djangoDDL[b.dialect()], e.table)).Error)
			e.m = e.manager()
			err := e.db.Transaction(func(tx *gorm.DB) error {
				_, err := e.m.WithTx(tx).GetLock(e.ctx, "in-tx")
				require.ErrorIs(t, err, lockmgr.ErrSchema)
				assert.Contains(t, err.Error(), "inside a transaction")
				return tx.Exec(fmt.Sprintf("SELECT COUNT(*) FROM %s", e.table)).Error // the transaction still works
			})
			require.NoError(t, err)
			if b.name == "tidb" {
				tidbNeedsMigrate(e, b)
			}
			e.lock("outside")
			require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
				_, err := e.m.WithTx(tx).GetLock(e.ctx, "in-tx")
				return err
			}))
			assert.True(t, e.isLocked("in-tx"))
		})
	}
}
