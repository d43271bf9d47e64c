package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// MySQL's migration: lockmgr's own DDL, byte-exact from the start (TiDB
// cannot change the collation of an indexed column later), or one ALTER
// TABLE that completes a table; TiDB's rebuild; the fences' side table and
// triggers are in mysql_fence.go.

const myColumnsQuery = `SELECT COLUMN_NAME, COALESCE(CHARACTER_MAXIMUM_LENGTH, 0), COALESCE(COLLATION_NAME, ''), CASE WHEN COLUMN_KEY = 'PRI' THEN 1 ELSE 0 END, DATA_TYPE
	FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?`

// myTypes are each column's type as lockmgr creates or adds it; {c} is
// the byte-exact collation.
var myTypes = map[string]string{
	"name":         "varchar(255) CHARACTER SET utf8mb4 COLLATE {c} NOT NULL",
	"locked_by":    "varchar(255) NULL",
	"lock_process": "bigint NULL",
	"locked_until": "datetime(6) NULL",
	"token":        "varchar(64) CHARACTER SET utf8mb4 COLLATE {c} NOT NULL DEFAULT ''",
	"fence":        "bigint NOT NULL DEFAULT 0",
	"created_at":   "datetime(6) NULL",
	"updated_at":   "datetime(6) NULL",
}

// columnDDL is col's type as lockmgr adds it.
func (e MySQL) columnDDL(col string) string {
	return strings.ReplaceAll(myTypes[col], "{c}", e.NameCollation)
}

// Columns reads information_schema.COLUMNS.
func (MySQL) Columns(db *gorm.DB, t Table) (map[string]Column, error) {
	return readColumns(db, myColumnsQuery, t)
}

// CheckColumns flags a name or token that is not byte-exact.
func (e MySQL) CheckColumns(cols map[string]Column, add func(bool, string, ...any)) {
	for _, c := range []string{"name", "token"} {
		if have := cols[c].Collation; cols[c].Name != "" && have != e.NameCollation {
			add(true, "column %s compares with collation %s (case-insensitive or padding trailing spaces), lockmgr needs %s", c, have, e.NameCollation)
		}
	}
}

// SearchPath: no.
func (MySQL) SearchPath(Table) bool { return false }

// Elsewhere: nowhere.
func (MySQL) Elsewhere(*gorm.DB, Table) []string { return nil }

// IdentLimit: 64 characters.
func (MySQL) IdentLimit() int { return 64 }

// DerivedNames: the fence side table, the locked_until index and the
// rebuild's siblings (TiDB). Trigger names are shortened with a hash
// (sideName) and need no limit.
func (MySQL) DerivedNames(t string) []string {
	return append(Postgres{}.DerivedNames(t), t+"_lmnew", t+"_lmold")
}

// Serialize runs fn on one connection holding GET_LOCK, with
// lock_wait_timeout (whole seconds, for metadata locks) set to mg.LockWait.
// Every step of fn is idempotent as well: Galera's GET_LOCK is node-local.
func (e MySQL) Serialize(ctx context.Context, mg Migration, fn func(context.Context, *gorm.DB) error) error {
	return mg.OnConn(ctx, func(ctx context.Context, db *gorm.DB) error {
		var name string
		err := db.Raw("SELECT CONCAT('lockmgr-migrate-', LEFT(SHA1(CONCAT(COALESCE(?, DATABASE()), '.', ?)), 40))",
			mg.Schema(), mg.Bare()).Scan(&name).Error
		if err != nil {
			return err
		}
		got, err := e.getLock(ctx, db, mg, name)
		if err != nil {
			return err
		}
		if got.Int64 != 1 {
			return fmt.Errorf("another process's migration of %s held the lock %q for %v", mg.Given, name, mg.Wait)
		}
		ferr := e.lockWait(ctx, db, mg.LockWait, func() error { return fn(ctx, db) })
		if err := keepConn(ctx, db).Exec("SELECT RELEASE_LOCK(?)", name).Error; err != nil {
			return joinDirty(ferr, err)
		}
		return ferr
	})
}

// getLock is GET_LOCK(name), tried again while TiDB, whose GET_LOCK is a
// pessimistic transaction of its own, reports a retryable conflict.
func (e MySQL) getLock(ctx context.Context, db *gorm.DB, mg Migration, name string) (sql.NullInt64, error) {
	deadline := time.Now().Add(mg.Wait)
	for {
		var got sql.NullInt64
		err := db.Raw("SELECT GET_LOCK(?, ?)", name, int(mg.Wait.Seconds())).Scan(&got).Error
		if err == nil || !e.Retryable(err, false) || time.Now().After(deadline) {
			return got, err
		}
		if err := mg.Backoff(ctx); err != nil {
			return got, err
		}
	}
}

// lockWait runs fn with the session's lock_wait_timeout set to d, whole
// seconds, and puts the default back.
func (MySQL) lockWait(ctx context.Context, db *gorm.DB, d time.Duration, fn func() error) error {
	if d <= 0 {
		return fn()
	}
	secs := max(1, int((d+time.Second-1)/time.Second))
	if err := db.Exec(fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)).Error; err != nil {
		return err
	}
	ferr := fn()
	if err := keepConn(ctx, db).Exec("SET SESSION lock_wait_timeout = DEFAULT").Error; err != nil {
		return joinDirty(ferr, err)
	}
	return ferr
}

// Migrate creates the table or completes it in one ALTER TABLE (on TiDB
// rebuilding it where name is not byte-exact), then its fences.
func (e MySQL) Migrate(ctx context.Context, db *gorm.DB, mg Migration) error {
	if err := e.migrateTable(db, mg); err != nil {
		return err
	}
	return e.migrateFences(ctx, db, mg)
}

func (e MySQL) migrateTable(db *gorm.DB, mg Migration) error {
	idx := e.QuoteIndex("idx_" + mg.Bare() + "_locked_until")
	if mg.Missing() {
		return db.Exec(e.createTable(mg.Name, idx)).Error
	}
	// TiDB cannot alter the collation of an indexed column: rebuild instead.
	name := mg.Cols["name"]
	rebuild := e.TiDB && name.Key && name.Collation != e.NameCollation
	if rebuild && mg.FirstUse {
		return errors.New("on TiDB only a rebuild of the table makes name byte-exact, which a first use " +
			"never starts: run m.AutoMigrate(ctx) or `lockmgr migrate`; lock calls on the table fail with ErrSchema while it copies")
	}
	alter, err := e.alterations(db, mg, idx, rebuild)
	if err != nil {
		return err
	}
	if len(alter) > 0 {
		if err := db.Exec("ALTER TABLE " + mg.Name + " " + strings.Join(alter, ", ")).Error; err != nil {
			return err
		}
	}
	if rebuild {
		return e.rebuildTiDBTable(db, mg, idx)
	}
	return nil
}

// alterations are the clauses of the ALTER TABLE that completes the table:
// missing columns, name and token byte-exact (unless rebuild does it),
// name and locked_by widened, Django's integer lock_process made bigint,
// the locked_until index.
func (e MySQL) alterations(db *gorm.DB, mg Migration, idx string, rebuild bool) ([]string, error) {
	alter := addMissing(mg.Cols, e.columnDDL)
	for _, c := range []string{"name", "token", "locked_by"} {
		col, ok := mg.Cols[c]
		if rebuild && c != "locked_by" {
			continue
		}
		wrongCollation := c != "locked_by" && col.Collation != e.NameCollation
		if ok && (wrongCollation || col.Length > 0 && col.Length < maxNameLen && c != "token") {
			alter = append(alter, "MODIFY "+c+" "+e.columnDDL(c))
		}
	}
	if typ := mg.Cols["lock_process"].Type; strings.HasSuffix(typ, "int") && typ != "bigint" {
		alter = append(alter, "MODIFY lock_process "+e.columnDDL("lock_process")) // Django's integer
	}
	var indexed int64
	err := db.Raw(`SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE())
		AND TABLE_NAME = ? AND COLUMN_NAME = 'locked_until' AND SEQ_IN_INDEX = 1`, mg.Schema(), mg.Bare()).Scan(&indexed).Error
	if err != nil {
		return nil, err
	}
	if indexed == 0 {
		alter = append(alter, "ADD INDEX "+idx+" (locked_until)")
	}
	return alter, nil
}

// createTable is lockmgr's own DDL for a lock table named table (quoted),
// byte-exact from the start.
func (e MySQL) createTable(table, idx string) string {
	cols := make([]string, 0, len(LockColumns)+2)
	for _, c := range LockColumns {
		cols = append(cols, c+" "+e.columnDDL(c))
	}
	cols = append(cols, "PRIMARY KEY (name)", "INDEX "+idx+" (locked_until)")
	return "CREATE TABLE IF NOT EXISTS " + table + " (" + strings.Join(cols, ", ") + ") DEFAULT CHARSET=utf8mb4"
}

// has reports whether information_schema.<view> has a row for table (in
// t's schema) matching cond.
func has(db *gorm.DB, t Table, view, table, cond string) (bool, error) {
	var n int64
	err := db.Raw("SELECT COUNT(*) FROM information_schema."+view+
		" WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND "+cond, t.Schema(), table).Scan(&n).Error
	return n > 0, err
}

// tidbSibling is the quoted name of a helper table next to the lock table.
func tidbSibling(t Table, suffix string) string {
	if s := t.Schema(); s != nil {
		return "`" + s.(string) + "`.`" + t.Bare() + suffix + "`"
	}
	return "`" + t.Given + suffix + "`"
}

// rebuildTiDBTable gives an existing table (one GORM or Django created)
// byte-exact name and token columns on TiDB, which cannot alter the
// collation of an indexed column (error 8200): it makes a table with
// lockmgr's own DDL, renames the old one away, copies its rows and
// renames the new one into place. It runs under the migration's GET_LOCK,
// which holds across every TiDB server, and only from AutoMigrate (or
// `lockmgr migrate`), never from a first use. While it copies, the table's
// name resolves to nothing: lock calls fail with ErrSchema rather than
// write to a table whose rows are being copied, so no takeover or release
// is lost and no two holders come of it. A rebuild cut off midway is
// finished by the next migration (Restore).
func (e MySQL) rebuildTiDBTable(db *gorm.DB, mg Migration, idx string) error {
	newT, oldT := tidbSibling(mg.Table, "_lmnew"), tidbSibling(mg.Table, "_lmold")
	cols := strings.Join(LockColumns, ", ")
	return execAll(db,
		"DROP TABLE IF EXISTS "+newT,
		e.createTable(newT, idx),
		"RENAME TABLE "+mg.Name+" TO "+oldT,
		"INSERT INTO "+newT+" ("+cols+") SELECT "+cols+" FROM "+oldT,
		"RENAME TABLE "+newT+" TO "+mg.Name,
		"DROP TABLE "+oldT)
}

// Restore, on TiDB and outside a first use, puts back a table a rebuild
// renamed away and did not finish with (the lock table missing,
// <table>_lmold there), so that the migration rebuilds it again rather
// than create an empty table; and drops an <table>_lmold left beside a
// finished rebuild.
func (e MySQL) Restore(db *gorm.DB, mg Migration) error {
	if !e.TiDB || mg.FirstUse {
		return nil
	}
	old, err := has(db, mg.Table, "TABLES", mg.Bare()+"_lmold", "1 = 1")
	if err != nil || !old {
		return err
	}
	cur, err := has(db, mg.Table, "TABLES", mg.Bare(), "1 = 1")
	if err != nil {
		return err
	}
	if cur {
		return db.Exec("DROP TABLE " + tidbSibling(mg.Table, "_lmold")).Error
	}
	return db.Exec("RENAME TABLE " + tidbSibling(mg.Table, "_lmold") + " TO " + mg.Name).Error
}
