package lockmgr

import (
	"context"
	"fmt"
	"hash/crc32"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
)

// The SQL of MySQL/MariaDB fencing: the side structures that
// migrateMySQLFences creates (see internal/engine/mysql.go for the statements).

// fenceTrigger is one of the triggers that give MySQL/MariaDB fences.
type fenceTrigger struct {
	name string // unquoted, without schema
	ddl  string
}

// fenceTriggerDDL is how MySQL/MariaDB fences are made: a BEFORE INSERT
// trigger on the lock table raises the high-water mark (hwm) of the
// <table>_fence bucket the name hashes to, to GREATEST(hwm + 1, the
// statement's clock reading), and makes that the row's fence. It fires
// for every insertion attempt, also one that ON DUPLICATE KEY UPDATE then
// turns into a takeover (whose VALUES(fence) sees the trigger's value) or
// into nothing (the name is held: the mark still moves, which costs a
// write but breaks nothing).
//
// On one server the bucket row's lock orders acquisitions, also across a
// release that deletes the row. On Galera, which neither replicates nor
// certifies read locks, the write does: two acquisitions of a bucket on
// different nodes write the same row, so certification fails one (error
// 1213, retried), and the later one has read the earlier's mark, whatever
// the nodes' clocks say. Rows written by Django (the trigger gives them the bucket's mark + 1) or by an older
// lockmgr (a clock reading) are taken over with GREATEST(fence + 1,
// VALUES(fence)). There is deliberately no UPDATE trigger: any UPDATE
// trigger on the table makes MariaDB report insert id 0 for the renewal's
// LAST_INSERT_ID(expr), which is how the new expiry comes back.
func (d *dialect) fenceTriggerDDL() []fenceTrigger {
	bucket := " WHERE id = CRC32(NEW.name) % " + engine.FenceBuckets
	name := d.sideName("_fence_bi")
	return []fenceTrigger{{name: name, ddl: "CREATE TRIGGER IF NOT EXISTS " + d.qualify(name) +
		" BEFORE INSERT ON " + d.table + " FOR EACH ROW BEGIN " +
		"UPDATE " + d.fenceTable + " SET hwm = GREATEST(hwm + 1, NEW.fence)" + bucket + "; " +
		"SET NEW.fence = COALESCE((SELECT hwm FROM " + d.fenceTable + bucket + "), NEW.fence); END"}}
}

// sideName names a structure of the lock table's own: <table><suffix>,
// shortened with a hash of the table's name past MySQL's 64 characters.
func (d *dialect) sideName(suffix string) string {
	bare := d.bareTable(strings.ReplaceAll(d.table, "`", ""))
	if len(bare)+len(suffix) <= 64 {
		return bare + suffix
	}
	return fmt.Sprintf("%s_%08x%s", bare[:64-len(suffix)-9], crc32.ChecksumIEEE([]byte(d.table)), suffix)
}

// fenceBare is the fence table's name without schema or quotes.
func (d *dialect) fenceBare() string {
	return d.bareTable(strings.ReplaceAll(d.fenceTable, "`", ""))
}

// qualify quotes name in the lock table's schema, if it names one.
func (d *dialect) qualify(name string) string {
	if i := strings.LastIndex(d.table, "."); i >= 0 {
		return d.table[:i+1] + "`" + name + "`"
	}
	return "`" + name + "`"
}

// fenceRows is how many rows MySQL's <table>_fence holds (engine.FenceBuckets).
const fenceRows = 1024

// migrateMySQLFences creates <table>_fence (engine.FenceBuckets rows, each with
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
		return db.Exec("UPDATE " + m.d.fenceTable + " f JOIN (SELECT CRC32(name) % " + engine.FenceBuckets +
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
		gaps = append(gaps, fmt.Sprintf("%s has %d of %s bucket rows", fence, n, engine.FenceBuckets))
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
