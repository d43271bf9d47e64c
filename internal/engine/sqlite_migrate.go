package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"gorm.io/gorm"
)

// SQLite's migration: the table WITHOUT ROWID, and the one-row side table
// of the highest fence ever written, kept by triggers.

const sqliteColumnsQuery = `SELECT p.name, 0, '', p.pk, p.type FROM (SELECT ? AS s, ? AS t) a, pragma_table_info(a.t, COALESCE(a.s, 'main')) p`

// sqliteTypes are each column's type as lockmgr adds it.
var sqliteTypes = map[string]string{
	"name":         "varchar(255) NOT NULL",
	"locked_by":    "varchar(255)",
	"lock_process": "integer",
	"locked_until": "datetime",
	"token":        "varchar(64) NOT NULL DEFAULT ''",
	"fence":        "integer NOT NULL DEFAULT 0",
	"created_at":   "datetime",
	"updated_at":   "datetime",
}

// Columns reads pragma_table_info.
func (SQLite) Columns(db *gorm.DB, t Table) (map[string]Column, error) {
	return readColumns(db, sqliteColumnsQuery, t)
}

// CheckColumns: nothing beyond presence and widths.
func (SQLite) CheckColumns(map[string]Column, func(bool, string, ...any)) {}

// sqliteTrigger is the prefix of the fence triggers' names.
func sqliteTrigger(t Table) string { return strings.ReplaceAll(t.Given, ".", "_") + "_fence_" }

// Side: <table>_fence and its two triggers.
func (SQLite) Side(_ context.Context, db *gorm.DB, _ Conn, t Table) ([]string, bool, error) {
	names := []string{t.Bare() + "_fence", sqliteTrigger(t) + "insert", sqliteTrigger(t) + "update"}
	return countSide(db, "SELECT COUNT(*) FROM sqlite_master WHERE (? IS NULL OR 1) AND name IN ?", t, names)
}

// SearchPath: no.
func (SQLite) SearchPath(Table) bool { return false }

// Elsewhere: nowhere.
func (SQLite) Elsewhere(*gorm.DB, Table) []string { return nil }

// Serialize runs fn on one connection in a transaction that takes
// SQLite's write lock at its start (BEGIN IMMEDIATE), with busy_timeout
// set to mg.LockWait.
func (SQLite) Serialize(ctx context.Context, mg Migration, fn func(context.Context, *gorm.DB) error) error {
	return mg.OnConn(ctx, func(ctx context.Context, db *gorm.DB) error {
		if mg.LockWait <= 0 {
			return sqliteImmediate(ctx, db, mg, fn)
		}
		var old int64
		if err := db.Raw("PRAGMA busy_timeout").Scan(&old).Error; err != nil {
			return err
		}
		if err := db.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", mg.LockWait.Milliseconds())).Error; err != nil {
			return err
		}
		ferr := sqliteImmediate(ctx, db, mg, fn)
		if err := keepConn(ctx, db).Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", old)).Error; err != nil {
			return joinDirty(ferr, err)
		}
		return ferr
	})
}

// sqliteImmediate runs fn between BEGIN IMMEDIATE, retried while another
// process holds the write lock (a first use gives up after mg.LockWait,
// AutoMigrate waits its turn), and COMMIT.
func sqliteImmediate(ctx context.Context, db *gorm.DB, mg Migration, fn func(context.Context, *gorm.DB) error) error {
	deadline := time.Now().Add(mg.Wait)
	if mg.FirstUse {
		deadline = time.Now().Add(mg.LockWait)
	}
	for {
		err := db.Exec("BEGIN IMMEDIATE").Error
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "locked") && !strings.Contains(err.Error(), "busy") || time.Now().After(deadline) {
			return err
		}
		if err := mg.Pause(ctx, time.Duration(5+rand.IntN(20))*time.Millisecond); err != nil {
			return err
		}
	}
	err := fn(ctx, db)
	if err == nil {
		err = db.Exec("COMMIT").Error
	}
	if err != nil {
		if rerr := keepConn(ctx, db).Exec("ROLLBACK").Error; rerr != nil && !strings.Contains(rerr.Error(), "no transaction") {
			return joinDirty(err, rerr)
		}
	}
	return err
}

// Migrate creates the table WITHOUT ROWID (one B-tree, keyed by name) or
// adds missing columns with ALTER TABLE ADD COLUMN (GORM's own SQLite
// migration rebuilds tables through a copy that can lose the primary key
// on a table Django created), then the fences' side table and triggers.
func (e SQLite) Migrate(_ context.Context, db *gorm.DB, mg Migration) error {
	t := mg.Name
	if mg.Missing() {
		err := db.Exec(`CREATE TABLE IF NOT EXISTS ` + t + ` (name varchar(255) NOT NULL PRIMARY KEY,
			locked_by varchar(255), lock_process integer, locked_until datetime,
			token varchar(64) NOT NULL DEFAULT '', fence integer NOT NULL DEFAULT 0,
			created_at datetime, updated_at datetime) WITHOUT ROWID`).Error
		if err != nil {
			return err
		}
	} else {
		for _, add := range addMissing(mg.Cols, func(c string) string { return sqliteTypes[c] }) {
			if err := db.Exec("ALTER TABLE " + t + " " + add).Error; err != nil {
				return err
			}
		}
	}
	idx := e.QuoteIndex("idx_" + mg.Given + "_locked_until")
	if err := db.Exec("CREATE INDEX IF NOT EXISTS " + idx + " ON " + t + " (locked_until)").Error; err != nil {
		return err
	}
	return e.migrateFences(db, mg.Table)
}

// migrateFences keeps the highest fence ever written in a one-row side
// table, maintained by triggers, so that acquisitions can grow fences past
// rows that have since been deleted.
func (e SQLite) migrateFences(db *gorm.DB, tb Table) error {
	t, f := tb.Name, tb.Fences
	trigger := func(suffix string) string { return e.QuoteIndex(sqliteTrigger(tb) + suffix) }
	return execAll(db,
		"CREATE TABLE IF NOT EXISTS "+f+" (id integer PRIMARY KEY CHECK (id = 1), hwm integer NOT NULL)",
		"INSERT OR IGNORE INTO "+f+" (id, hwm) SELECT 1, COALESCE(MAX(fence), 0) FROM "+t,
		"CREATE TRIGGER IF NOT EXISTS "+trigger("insert")+" AFTER INSERT ON "+t+
			" BEGIN UPDATE "+f+" SET hwm = MAX(hwm, NEW.fence) WHERE id = 1; END",
		"CREATE TRIGGER IF NOT EXISTS "+trigger("update")+" AFTER UPDATE OF fence ON "+t+
			" BEGIN UPDATE "+f+" SET hwm = MAX(hwm, NEW.fence) WHERE id = 1; END")
}

// Restore: nothing to restore.
func (SQLite) Restore(*gorm.DB, Migration) error { return nil }

// IdentLimit: none lockmgr checks.
func (SQLite) IdentLimit() int { return 0 }

// DerivedNames: the fence side table and the locked_until index.
func (SQLite) DerivedNames(t string) []string { return Postgres{}.DerivedNames(t) }
