package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// AutoMigrate creates the lock table, or completes an existing one: one
// that db.AutoMigrate(&Lock{}) or django-lockmgr created, or that Django's
// migrations rebuilt. It adds token and fence with database defaults (rows
// Django writes stay readable), widens name to 255 bytes, makes it compare
// byte for byte on MySQL/MariaDB, and creates the side table and triggers
// fences need on SQLite and MySQL. Every step checks before it changes
// anything, and the whole runs serialized in the database (an advisory lock
// on PostgreSQL, GET_LOCK on MySQL, an immediate transaction on SQLite), so
// any number of processes may run it at once, on every start. Each DDL
// statement waits at most MigrateLockTimeout for the table's own lock
// (PostgreSQL lock_timeout, MySQL/MariaDB lock_wait_timeout): one that
// waited that long behind another transaction gives up, with an error
// matching ErrSchema that says so, rather than keep every lock call queued
// behind it. It returns an error matching ErrSchema when the table cannot
// be made usable.
func (m *Manager) AutoMigrate(ctx context.Context) error {
	if err := m.checkEngine(ctx); err != nil {
		return err
	}
	if m.mig.lockWait == 0 {
		m = m.withMigration(migration{lockWait: MigrateLockTimeout})
	}
	err := m.serialized(ctx, m.migrate)
	if err != nil && !m.inTx && !m.mig.firstUse && !m.d.eng.LockBusy(err) && sleep(ctx, jitter(10*minBackoff)) == nil {
		// Where the database lock does not reach every writer (Galera's
		// GET_LOCK is per node), a step may lose a race to the same step
		// elsewhere ("duplicate column"); a second run sees its result.
		err = m.serialized(ctx, m.migrate)
	}
	if m.d.eng.LockBusy(err) {
		err = m.busyError(err)
	}
	r, ierr := m.inspect(ctx, m.conn(ctx))
	switch {
	case ierr == nil && !r.usable():
		return m.schemaError(r, err)
	case err == nil:
		err = ierr
	}
	if err != nil {
		return fmt.Errorf("lockmgr: migrate %s: %w", m.tableName, err)
	}
	m.checked(r)
	return nil
}

// migrate brings the table, then its side structures, up to date.
func (m *Manager) migrate(ctx context.Context, db *gorm.DB) error {
	if m.d.srv.tidb && !m.mig.firstUse {
		if err := m.restoreTiDBTable(db); err != nil {
			return err
		}
	}
	r, err := m.inspect(ctx, db)
	if err != nil {
		return err
	}
	if r.missing && m.mig.firstUse { // another connection saw it: never make a second one
		return m.schemaError(r, errors.New("a first use creates no table; on PostgreSQL, check that every pooled connection has one search_path"))
	}
	switch m.d.kind {
	case "postgres":
		err = m.migratePostgres(db, r)
	case "mysql":
		err = m.migrateMySQL(db, r)
	case "sqlite":
		err = m.migrateSQLite(db, r)
	}
	if err != nil {
		return err
	}
	return m.migrateSide(db)
}

// migrateSide creates the side structures of each database, if missing.
// The lock statements of internal/engine depend on them.
func (m *Manager) migrateSide(db *gorm.DB) error {
	switch m.d.kind {
	case "sqlite":
		return m.migrateSQLiteFences(db)
	case "mysql":
		return m.migrateMySQLFences(db)
	case "postgres":
		return m.migratePostgresFences(db) // fence_postgres.go
	}
	return nil
}

// migratePostgres lets GORM create or complete the table (it adds token
// and fence, widens locked_by, makes lock_process bigint), then widens
// name, a primary key GORM's migrator leaves alone. On a complete table
// it does nothing.
func (m *Manager) migratePostgres(db *gorm.DB, r report) error {
	if !r.usable() {
		if err := db.Table(m.tableName).AutoMigrate(&Lock{}); err != nil {
			return err
		}
	}
	for _, c := range []string{"name", "locked_by"} {
		if n := r.cols[c].length; n > 0 && n < MaxNameLen {
			if err := db.Exec("ALTER TABLE " + m.d.table + " ALTER COLUMN " + c + " TYPE varchar(255)").Error; err != nil {
				return err
			}
		}
	}
	return nil
}

// migrateMySQL creates the table with lockmgr's own DDL, byte-exact from
// the start (TiDB cannot change the collation of an indexed column later),
// or completes it in one ALTER TABLE.
func (m *Manager) migrateMySQL(db *gorm.DB, r report) error {
	idx := m.d.quoteIndex("idx_" + m.d.bareTable(m.tableName) + "_locked_until")
	if r.missing {
		return db.Exec(m.mysqlCreateTable(m.d.table, idx)).Error
	}
	alter := m.addMissing(r)
	// TiDB cannot alter the collation of an indexed column: rebuild instead.
	rebuild := m.d.srv.tidb && r.cols["name"].key && r.cols["name"].collation != m.d.srv.nameCollation
	if rebuild && m.mig.firstUse {
		return errors.New("on TiDB only a rebuild of the table makes name byte-exact, which a first use " +
			"never starts: run m.AutoMigrate(ctx) or `lockmgr migrate`; lock calls on the table fail with ErrSchema while it copies")
	}
	for _, c := range []string{"name", "token", "locked_by"} {
		col, ok := r.cols[c]
		if rebuild && c != "locked_by" {
			continue
		}
		wrongCollation := c != "locked_by" && col.collation != m.d.srv.nameCollation
		if ok && (wrongCollation || col.length > 0 && col.length < MaxNameLen && c != "token") {
			alter = append(alter, "MODIFY "+c+" "+m.d.columnDDL(c))
		}
	}
	if typ := r.cols["lock_process"].typ; strings.HasSuffix(typ, "int") && typ != "bigint" {
		alter = append(alter, "MODIFY lock_process "+m.d.columnDDL("lock_process")) // Django's integer
	}
	var indexed int64
	err := db.Raw(`SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE())
		AND TABLE_NAME = ? AND COLUMN_NAME = 'locked_until' AND SEQ_IN_INDEX = 1`, m.d.schema(m.tableName), m.d.bareTable(m.tableName)).Scan(&indexed).Error
	if err != nil {
		return err
	}
	if indexed == 0 {
		alter = append(alter, "ADD INDEX "+idx+" (locked_until)")
	}
	if len(alter) > 0 {
		if err := db.Exec("ALTER TABLE " + m.d.table + " " + strings.Join(alter, ", ")).Error; err != nil {
			return err
		}
	}
	if rebuild {
		return m.rebuildTiDBTable(db, idx)
	}
	return nil
}

// mysqlCreateTable is lockmgr's own DDL for a lock table named table
// (quoted), byte-exact from the start.
func (m *Manager) mysqlCreateTable(table, idx string) string {
	cols := make([]string, 0, len(lockColumns)+2)
	for _, c := range lockColumns {
		cols = append(cols, c+" "+m.d.columnDDL(c))
	}
	cols = append(cols, "PRIMARY KEY (name)", "INDEX "+idx+" (locked_until)")
	return "CREATE TABLE IF NOT EXISTS " + table + " (" + strings.Join(cols, ", ") + ") DEFAULT CHARSET=utf8mb4"
}

// addMissing is an ADD COLUMN clause for each missing column.
func (m *Manager) addMissing(r report) []string {
	var out []string
	for _, c := range lockColumns {
		if _, ok := r.cols[c]; !ok {
			out = append(out, "ADD COLUMN "+c+" "+m.d.columnDDL(c))
		}
	}
	return out
}

// migrateSQLite creates the table WITHOUT ROWID (one B-tree, keyed by
// name) or adds missing columns with ALTER TABLE ADD COLUMN: GORM's own
// SQLite migration rebuilds tables through a copy that can lose the
// primary key on a table Django created.
func (m *Manager) migrateSQLite(db *gorm.DB, r report) error {
	t := m.d.table
	if r.missing {
		err := db.Exec(`CREATE TABLE IF NOT EXISTS ` + t + ` (name varchar(255) NOT NULL PRIMARY KEY,
			locked_by varchar(255), lock_process integer, locked_until datetime,
			token varchar(64) NOT NULL DEFAULT '', fence integer NOT NULL DEFAULT 0,
			created_at datetime, updated_at datetime) WITHOUT ROWID`).Error
		if err != nil {
			return err
		}
	}
	for _, add := range m.addMissing(r) {
		if r.missing {
			break
		}
		if err := db.Exec("ALTER TABLE " + t + " " + add).Error; err != nil {
			return err
		}
	}
	idx := m.d.quoteIndex("idx_" + m.tableName + "_locked_until")
	return db.Exec("CREATE INDEX IF NOT EXISTS " + idx + " ON " + t + " (locked_until)").Error
}

// migrateSQLiteFences keeps the highest fence ever written in a one-row
// side table, maintained by triggers, so that acquisitions can grow fences
// past rows that have since been deleted.
func (m *Manager) migrateSQLiteFences(db *gorm.DB) error {
	t, f := m.d.table, m.d.fenceTable
	trigger := func(suffix string) string { return m.d.quoteIndex(m.tableName + "_fence_" + suffix) }
	for _, ddl := range []string{
		"CREATE TABLE IF NOT EXISTS " + f + " (id integer PRIMARY KEY CHECK (id = 1), hwm integer NOT NULL)",
		"INSERT OR IGNORE INTO " + f + " (id, hwm) SELECT 1, COALESCE(MAX(fence), 0) FROM " + t,
		"CREATE TRIGGER IF NOT EXISTS " + trigger("insert") + " AFTER INSERT ON " + t +
			" BEGIN UPDATE " + f + " SET hwm = MAX(hwm, NEW.fence) WHERE id = 1; END",
		"CREATE TRIGGER IF NOT EXISTS " + trigger("update") + " AFTER UPDATE OF fence ON " + t +
			" BEGIN UPDATE " + f + " SET hwm = MAX(hwm, NEW.fence) WHERE id = 1; END",
	} {
		if err := db.Exec(ddl).Error; err != nil {
			return err
		}
	}
	return nil
}
