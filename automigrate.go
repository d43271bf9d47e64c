package lockmgr

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

const pluginName = "lockmgr"

// AutoMigrate creates the lock table, or completes an existing one: one
// that db.AutoMigrate(&Lock{}) or django-lockmgr created, or that Django's
// migrations rebuilt. It adds token and fence with database defaults (rows
// Django writes stay readable), widens name to 255 bytes, makes it compare
// byte for byte on MySQL/MariaDB, and creates the side table and triggers
// fences need on SQLite and MySQL. Every step checks before it changes
// anything, and the whole runs serialized in the database (an advisory lock
// on PostgreSQL, GET_LOCK on MySQL, an immediate transaction on SQLite), so
// any number of processes may run it at once, on every start. It returns an
// error matching ErrSchema when the table cannot be made usable.
func (m *Manager) AutoMigrate(ctx context.Context) error {
	if err := m.checkEngine(ctx); err != nil {
		return err
	}
	err := m.serialized(ctx, m.migrate)
	if err != nil && !m.inTx && sleep(ctx, jitter(10*minBackoff)) == nil {
		// Where the database lock does not reach every writer (Galera's
		// GET_LOCK is per node), a step may lose a race to the same step
		// elsewhere ("duplicate column"); a second run sees its result.
		err = m.serialized(ctx, m.migrate)
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
	m.schema.ok.Store(true)
	return nil
}

// migrate brings the table, then its side structures, up to date.
func (m *Manager) migrate(ctx context.Context, db *gorm.DB) error {
	r, err := m.inspect(ctx, db)
	if err != nil {
		return err
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
// The lock statements of dialect.go depend on them.
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
	if r.usable() {
		return nil
	}
	if err := db.Table(m.tableName).AutoMigrate(&Lock{}); err != nil {
		return err
	}
	if n := r.cols["name"].length; n > 0 && n < MaxNameLen {
		return db.Exec("ALTER TABLE " + m.d.table + " ALTER COLUMN name TYPE varchar(255)").Error
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

// fenceRows is how many rows MySQL's <table>_fence holds (fenceBuckets).
const fenceRows = 1024

// migrateMySQLFences creates <table>_fence (fenceBuckets rows, each with
// the high-water mark of the fences of the names that hash to it) and the
// triggers that raise it (fenceTriggerDDL; TiDB has none and raises it in
// the acquisition's own transaction, dialect.fenceBump), or completes what
// an older lockmgr made (a table without hwm). Every step is idempotent
// and safe when several processes, or several Galera nodes (whose DDL runs
// in one total order), migrate at once: CREATE … IF NOT EXISTS, a column
// added only when missing, rows added with INSERT IGNORE, and writes that
// certification rolled back retried.
func (m *Manager) migrateMySQLFences(db *gorm.DB) error {
	ctx := db.Statement.Context
	if err := db.Exec("CREATE TABLE IF NOT EXISTS " + m.d.fenceTable +
		" (id int NOT NULL PRIMARY KEY, hwm bigint NOT NULL DEFAULT 0)").Error; err != nil {
		return err
	}
	if err := m.addFenceHWM(ctx, db); err != nil {
		return err
	}
	if err := m.retrying(ctx, func() error { return m.seedFenceBuckets(db) }); err != nil {
		return err
	}
	if !m.d.fenceTriggers {
		return nil
	}
	return m.createFenceTriggers(ctx)
}

// createFenceTriggers creates the fence triggers that are missing. On
// Galera it does so holding a lock of this table (migrateLockName): two
// nodes creating one trigger at the same moment leave MariaDB 10.11's
// total-order DDL waiting forever ("Waiting to execute in isolation"),
// and every later DDL of the cluster with it.
func (m *Manager) createFenceTriggers(ctx context.Context) error {
	missing, err := m.missingFenceTriggers(ctx)
	if err != nil || len(missing) == 0 {
		return err
	}
	if m.onGalera(ctx) && !m.inTx {
		// The table exists by now; the lock must not wait for the table
		// check, which waits for this migration.
		lm := m.unchecked()
		l, err := lm.GetLock(ctx, migrateLockName, Expires(2*time.Minute), Wait(2*time.Minute))
		if err != nil {
			return err
		}
		defer func() { _ = lm.Release(context.WithoutCancel(ctx), l) }()
		if missing, err = m.missingFenceTriggers(ctx); err != nil {
			return err
		}
	}
	for _, tr := range missing {
		if err := m.conn(ctx).Exec(tr.ddl).Error; err != nil {
			return fmt.Errorf("create trigger %s (needs the TRIGGER privilege; with binary logging on, "+
				"also SUPER or log_bin_trust_function_creators=1): %w", tr.name, err)
		}
	}
	return nil
}

// migrateLockName is the lock a migration on Galera holds while it
// creates triggers.
const migrateLockName = "lockmgr:migrate:fence-triggers"

// missingFenceTriggers lists the fence triggers the table lacks, asking a
// Galera node after it has applied the cluster's earlier DDL.
func (m *Manager) missingFenceTriggers(ctx context.Context) ([]fenceTrigger, error) {
	var missing []fenceTrigger
	for _, tr := range m.d.fenceTriggerDDL() {
		q := `SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = COALESCE(?, DATABASE()) AND TRIGGER_NAME = ?`
		if m.onGalera(ctx) {
			q = syncWaitPrefix + q
		}
		var n int64
		if err := m.conn(ctx).Raw(q, m.d.schema(m.tableName), tr.name).Scan(&n).Error; err != nil {
			return nil, err
		}
		if n == 0 {
			missing = append(missing, tr)
		}
	}
	return missing, nil
}

// addFenceHWM adds hwm to a <table>_fence made before it existed and
// raises each bucket's mark to the highest fence of its names, so fences
// keep growing from rows written under the old design.
func (m *Manager) addFenceHWM(ctx context.Context, db *gorm.DB) error {
	has, err := m.mysqlHas(db, "COLUMNS", m.d.fenceBare(), "COLUMN_NAME = 'hwm'")
	if err != nil || has {
		return err
	}
	err = db.Exec("ALTER TABLE " + m.d.fenceTable + " ADD COLUMN hwm bigint NOT NULL DEFAULT 0").Error
	if err != nil && !strings.Contains(err.Error(), "1060") { // 1060: another process added it first
		return err
	}
	return m.retrying(ctx, func() error {
		return db.Exec("UPDATE " + m.d.fenceTable + " f JOIN (SELECT CRC32(name) % " + fenceBuckets +
			" AS id, MAX(fence) AS top FROM " + m.d.table + " GROUP BY 1) x ON f.id = x.id SET f.hwm = GREATEST(f.hwm, x.top)").Error
	})
}

// seedFenceBuckets adds the bucket rows <table>_fence lacks.
func (m *Manager) seedFenceBuckets(db *gorm.DB) error {
	f := m.d.fenceTable
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + f).Scan(&n).Error; err != nil || n == fenceRows {
		return err
	}
	// 32 × 32 rows: recursive CTEs stop at 1000 iterations by default.
	return db.Exec("INSERT IGNORE INTO " + f + " (id) WITH RECURSIVE s (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < 31) " +
		"SELECT a.n * 32 + b.n FROM s a, s b").Error
}

// mysqlFenceGaps lists what MySQL/MariaDB fencing lacks on this table:
// the <table>_fence table, its hwm column, bucket rows, or one of the
// triggers; empty when complete. (For the first-use schema check.)
func (m *Manager) mysqlFenceGaps(db *gorm.DB) ([]string, error) {
	fence := m.d.fenceBare()
	var gaps []string
	has, err := m.mysqlHas(db, "TABLES", fence, "1 = 1")
	if err != nil || !has {
		return []string{"table " + fence}, err
	}
	if has, err = m.mysqlHas(db, "COLUMNS", fence, "COLUMN_NAME = 'hwm'"); err != nil {
		return nil, err
	} else if !has {
		gaps = append(gaps, "column "+fence+".hwm")
	}
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + m.d.fenceTable).Scan(&n).Error; err != nil {
		return nil, err
	} else if n != fenceRows {
		gaps = append(gaps, fmt.Sprintf("%s has %d of %s bucket rows", fence, n, fenceBuckets))
	}
	if !m.d.fenceTriggers {
		return gaps, nil
	}
	missing, err := m.missingFenceTriggers(db.Statement.Context)
	for _, tr := range missing {
		gaps = append(gaps, "trigger "+tr.name)
	}
	return gaps, err
}

// mysqlHas reports whether information_schema.<view> has a row for table
// (in the lock table's schema) matching cond.
func (m *Manager) mysqlHas(db *gorm.DB, view, table, cond string) (bool, error) {
	var n int64
	err := db.Raw("SELECT COUNT(*) FROM information_schema."+view+
		" WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND "+cond,
		m.d.schema(m.tableName), table).Scan(&n).Error
	return n > 0, err
}

// Plugin is a gorm.Plugin: db.Use(lockmgr.NewPlugin()) migrates the lock
// table and builds a Manager, which FromDB(db) returns later.
type Plugin struct {
	opts []Option
	m    *Manager
}

// NewPlugin returns a Plugin that builds its Manager with opts.
func NewPlugin(opts ...Option) *Plugin {
	return &Plugin{opts: opts}
}

// Name is the plugin's name in gorm.Config.Plugins.
func (p *Plugin) Name() string { return pluginName }

// Initialize is called by db.Use: it builds the Manager and migrates the
// table, returning the first error.
func (p *Plugin) Initialize(db *gorm.DB) error {
	m, err := New(db, p.opts...)
	if err != nil {
		return err
	}
	if err := m.AutoMigrate(context.Background()); err != nil {
		return err
	}
	p.m = m
	return nil
}

// Manager returns the plugin's Manager, nil before db.Use ran.
func (p *Plugin) Manager() *Manager { return p.m }

// FromDB returns the Manager of the Plugin registered on db with db.Use.
// It returns ErrInvalidOption when there is none.
func FromDB(db *gorm.DB) (*Manager, error) {
	if db == nil || db.Config == nil {
		return nil, fmt.Errorf("%w: nil *gorm.DB", ErrInvalidOption)
	}
	p, ok := db.Config.Plugins[pluginName].(*Plugin)
	if !ok || p.m == nil {
		return nil, fmt.Errorf("%w: no lockmgr plugin on this *gorm.DB; register one with db.Use(lockmgr.NewPlugin())", ErrInvalidOption)
	}
	return p.m, nil
}
