package lockmgr

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

const pluginName = "lockmgr"

// AutoMigrate creates the lock table, or brings an existing one (also one
// django-lockmgr created) up to date: it adds token and fence with database
// defaults, so rows Django writes stay readable, and on MySQL/MariaDB makes
// the name column compare byte for byte. It is safe to run on every start.
func (m *Manager) AutoMigrate(ctx context.Context) error {
	var err error
	switch m.d.kind {
	case "sqlite":
		err = m.migrateSQLite(ctx)
	case "mysql":
		err = m.conn(ctx).Table(m.tableName).AutoMigrate(&Lock{})
		if err == nil {
			err = m.ensureByteExact(ctx)
		}
		if err == nil {
			err = m.migrateMySQLFences(ctx)
		}
	default:
		err = m.conn(ctx).Table(m.tableName).AutoMigrate(&Lock{})
	}
	if err != nil {
		return fmt.Errorf("lockmgr: migrate %s: %w", m.tableName, err)
	}
	return nil
}

// migrateSQLite creates the table WITHOUT ROWID (one B-tree, keyed by
// name) or adds missing columns with ALTER TABLE ADD COLUMN: GORM's own
// SQLite migration rebuilds tables through a copy that can lose the
// primary key on a table Django created.
func (m *Manager) migrateSQLite(ctx context.Context) error {
	db := m.conn(ctx)
	t := m.d.table
	err := db.Exec(`CREATE TABLE IF NOT EXISTS ` + t + ` (name varchar(255) NOT NULL PRIMARY KEY,
		locked_by varchar(255), lock_process integer, locked_until datetime,
		token varchar(64) NOT NULL DEFAULT '', fence integer NOT NULL DEFAULT 0,
		created_at datetime, updated_at datetime) WITHOUT ROWID`).Error
	if err != nil {
		return err
	}
	mig := db.Table(m.tableName).Migrator()
	for _, col := range []struct{ name, ddl string }{
		{"token", "token varchar(64) NOT NULL DEFAULT ''"},
		{"fence", "fence integer NOT NULL DEFAULT 0"},
	} {
		if !mig.HasColumn(&Lock{}, col.name) {
			if err := db.Exec("ALTER TABLE " + t + " ADD COLUMN " + col.ddl).Error; err != nil {
				return err
			}
		}
	}
	idx := m.d.quoteIndex("idx_" + m.tableName + "_locked_until")
	if err := db.Exec("CREATE INDEX IF NOT EXISTS " + idx + " ON " + t + " (locked_until)").Error; err != nil {
		return err
	}
	return m.migrateSQLiteFences(db)
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

// ensureByteExact makes name and token compare byte for byte on
// MySQL/MariaDB: name gets a binary NO PAD collation (utf8mb4_nopad_bin on
// MariaDB, utf8mb4_0900_bin on MySQL 8), so 'a', 'A' and 'a ' are three
// locks; token gets the same, so an owner check cannot match a token that
// differs in case or in trailing spaces. GORM's AutoMigrate resets a column's collation when it
// alters it, so this runs after it every time.
func (m *Manager) ensureByteExact(ctx context.Context) error {
	db := m.conn(ctx)
	for _, col := range []struct{ name, collation, ddl string }{
		{"name", m.d.srv.nameCollation, "varchar(255) CHARACTER SET utf8mb4 COLLATE " + m.d.srv.nameCollation + " NOT NULL"},
		{"token", m.d.srv.nameCollation, "varchar(64) CHARACTER SET utf8mb4 COLLATE " + m.d.srv.nameCollation + " NOT NULL DEFAULT ''"},
	} {
		var have string
		err := db.Raw(`SELECT COALESCE(COLLATION_NAME, '') FROM information_schema.COLUMNS
			WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?`,
			m.d.schema(m.tableName), m.d.bareTable(m.tableName), col.name).Scan(&have).Error
		if err != nil {
			return err
		}
		if have != col.collation {
			if err := db.Exec("ALTER TABLE " + m.d.table + " MODIFY " + col.name + " " + col.ddl).Error; err != nil {
				return err
			}
		}
	}
	return nil
}

// migrateMySQLFences creates <table>_fence (fenceBuckets rows, each with
// the high-water mark of the fences of the names that hash to it) and the
// triggers that raise it (fenceTriggerDDL), or completes what an older
// lockmgr made (a table without hwm). Every step is idempotent and safe
// when several processes, or several Galera nodes (whose DDL runs in one
// total order), migrate at once: CREATE … IF NOT EXISTS, a column added
// only when missing, rows added with INSERT IGNORE, and writes that
// certification rolled back retried.
func (m *Manager) migrateMySQLFences(ctx context.Context) error {
	db := m.conn(ctx)
	if err := db.Exec("CREATE TABLE IF NOT EXISTS " + m.d.fenceTable +
		" (id int NOT NULL PRIMARY KEY, hwm bigint NOT NULL DEFAULT 0)").Error; err != nil {
		return err
	}
	if err := m.addFenceHWM(ctx); err != nil {
		return err
	}
	if err := m.retrying(ctx, func() error { return m.seedFenceBuckets(ctx) }); err != nil {
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
		l, err := m.GetLock(ctx, migrateLockName, Expires(2*time.Minute), Wait(2*time.Minute))
		if err != nil {
			return err
		}
		defer func() { _ = m.Release(context.WithoutCancel(ctx), l) }()
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
func (m *Manager) addFenceHWM(ctx context.Context) error {
	has, err := m.mysqlHas(ctx, "COLUMNS", m.d.fenceBare(), "COLUMN_NAME = 'hwm'")
	if err != nil || has {
		return err
	}
	err = m.conn(ctx).Exec("ALTER TABLE " + m.d.fenceTable + " ADD COLUMN hwm bigint NOT NULL DEFAULT 0").Error
	if err != nil && !strings.Contains(err.Error(), "1060") { // 1060: another process added it first
		return err
	}
	return m.retrying(ctx, func() error {
		return m.conn(ctx).Exec("UPDATE " + m.d.fenceTable + " f JOIN (SELECT CRC32(name) % " + fenceBuckets +
			" AS id, MAX(fence) AS top FROM " + m.d.table + " GROUP BY 1) x ON f.id = x.id SET f.hwm = GREATEST(f.hwm, x.top)").Error
	})
}

// seedFenceBuckets adds the bucket rows <table>_fence lacks.
func (m *Manager) seedFenceBuckets(ctx context.Context) error {
	db := m.conn(ctx)
	f := m.d.fenceTable
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + f).Scan(&n).Error; err != nil || n == 1024 {
		return err
	}
	// 32 × 32 rows: recursive CTEs stop at 1000 iterations by default.
	return db.Exec("INSERT IGNORE INTO " + f + " (id) WITH RECURSIVE s (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < 31) " +
		"SELECT a.n * 32 + b.n FROM s a, s b").Error
}

// mysqlFenceGaps lists what MySQL/MariaDB fencing lacks on this table:
// the <table>_fence table, its hwm column, bucket rows, or one of the
// triggers; empty when complete. (For the first-use schema check.)
func (m *Manager) mysqlFenceGaps(ctx context.Context) ([]string, error) {
	fence := m.d.fenceBare()
	var gaps []string
	has, err := m.mysqlHas(ctx, "TABLES", fence, "1 = 1")
	if err != nil || !has {
		return []string{"table " + fence}, err
	}
	if has, err = m.mysqlHas(ctx, "COLUMNS", fence, "COLUMN_NAME = 'hwm'"); err != nil {
		return nil, err
	} else if !has {
		gaps = append(gaps, "column "+fence+".hwm")
	}
	var n int64
	if err := m.conn(ctx).Raw("SELECT COUNT(*) FROM " + m.d.fenceTable).Scan(&n).Error; err != nil {
		return nil, err
	} else if n != 1024 {
		gaps = append(gaps, fmt.Sprintf("%s has %d of %s bucket rows", fence, n, fenceBuckets))
	}
	if !m.d.fenceTriggers {
		return gaps, nil
	}
	missing, err := m.missingFenceTriggers(ctx)
	for _, tr := range missing {
		gaps = append(gaps, "trigger "+tr.name)
	}
	return gaps, err
}

// mysqlHas reports whether information_schema.<view> has a row for table
// (in the lock table's schema) matching cond.
func (m *Manager) mysqlHas(ctx context.Context, view, table, cond string) (bool, error) {
	var n int64
	err := m.conn(ctx).Raw("SELECT COUNT(*) FROM information_schema."+view+
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
