package engine

import (
	"context"
	"fmt"
	"hash/crc32"
	"strings"

	"gorm.io/gorm"
)

// MySQL/MariaDB fences: the <table>_fence side table of per-bucket
// high-water marks, and the trigger that raises them (TiDB has none and
// raises its bucket in the acquisition's own transaction, mysql_tidb.go).

// fenceTrigger is one of the triggers that give MySQL/MariaDB fences.
type fenceTrigger struct {
	name string // unquoted, without schema
	ddl  string
}

// fenceTriggers is how MySQL/MariaDB fences are made: a BEFORE INSERT
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
// the nodes' clocks say. Rows written by Django (the trigger gives them
// the bucket's mark + 1) or by an older lockmgr (a clock reading) are
// taken over with GREATEST(fence + 1, VALUES(fence)). There is
// deliberately no UPDATE trigger: any UPDATE trigger on the table makes
// MariaDB report insert id 0 for the renewal's LAST_INSERT_ID(expr), which
// is how the new expiry comes back.
func (e MySQL) fenceTriggers(t Table) []fenceTrigger {
	if e.TiDB {
		return nil
	}
	bucket := " WHERE id = CRC32(NEW.name) % " + FenceBuckets
	name := sideName(t, "_fence_bi")
	return []fenceTrigger{{name: name, ddl: "CREATE TRIGGER IF NOT EXISTS " + qualify(t, name) +
		" BEFORE INSERT ON " + t.Name + " FOR EACH ROW BEGIN " +
		"UPDATE " + t.Fences + " SET hwm = GREATEST(hwm + 1, NEW.fence)" + bucket + "; " +
		"SET NEW.fence = COALESCE((SELECT hwm FROM " + t.Fences + bucket + "), NEW.fence); END"}}
}

// sideName names a structure of the lock table's own: <table><suffix>,
// shortened with a hash of the table's name past MySQL's 64 characters.
func sideName(t Table, suffix string) string {
	bare := unquoted(t.Name)
	if len(bare)+len(suffix) <= 64 {
		return bare + suffix
	}
	return fmt.Sprintf("%s_%08x%s", bare[:64-len(suffix)-9], crc32.ChecksumIEEE([]byte(t.Name)), suffix)
}

// unquoted is a quoted name without schema or quotes.
func unquoted(quoted string) string {
	s := strings.ReplaceAll(quoted, "`", "")
	return s[strings.IndexByte(s, '.')+1:]
}

// qualify quotes name in the lock table's schema, if it names one.
func qualify(t Table, name string) string {
	if i := strings.LastIndex(t.Name, "."); i >= 0 {
		return t.Name[:i+1] + "`" + name + "`"
	}
	return "`" + name + "`"
}

// fenceRows is how many rows <table>_fence holds (FenceBuckets).
const fenceRows = 1024

// migrateLockName is the lock a migration on Galera holds while it
// creates triggers.
const migrateLockName = "lockmgr:migrate:fence-triggers"

// migrateFences creates <table>_fence (FenceBuckets rows, each with the
// high-water mark of the fences of the names that hash to it) and the
// triggers that raise it, or completes what an older lockmgr made (a
// table without hwm). Every step is idempotent and safe when several
// processes, or several Galera nodes (whose DDL runs in one total order),
// migrate at once: CREATE … IF NOT EXISTS, a column added only when
// missing, rows added with INSERT IGNORE, and writes that certification
// rolled back retried.
func (e MySQL) migrateFences(ctx context.Context, db *gorm.DB, mg Migration) error {
	if err := db.Exec("CREATE TABLE IF NOT EXISTS " + mg.Fences +
		" (id int NOT NULL PRIMARY KEY, hwm bigint NOT NULL DEFAULT 0)").Error; err != nil {
		return err
	}
	if err := addFenceHWM(ctx, db, mg); err != nil {
		return err
	}
	if err := mg.Retrying(ctx, func() error { return seedFenceBuckets(db, mg.Table) }); err != nil {
		return err
	}
	return e.createFenceTriggers(ctx, mg)
}

// createFenceTriggers creates the fence triggers that are missing. On
// Galera it does so holding a lock of this table (migrateLockName): two
// nodes creating one trigger at the same moment leave MariaDB 10.11's
// total-order DDL waiting forever ("Waiting to execute in isolation"),
// and every later DDL of the cluster with it.
func (e MySQL) createFenceTriggers(ctx context.Context, mg Migration) error {
	missing, err := e.missingFenceTriggers(ctx, mg.Conn, mg.Table)
	if err != nil || len(missing) == 0 {
		return err
	}
	create := func() error {
		for _, tr := range missing {
			if err := mg.Conn.Conn(ctx).Exec(tr.ddl).Error; err != nil {
				return fmt.Errorf("create trigger %s (needs the TRIGGER privilege; with binary logging on, "+
					"also SUPER or log_bin_trust_function_creators=1): %w", tr.name, err)
			}
		}
		return nil
	}
	if !e.Synced(ctx, mg.Conn) || mg.Exclusive == nil {
		return create()
	}
	return mg.Exclusive(ctx, migrateLockName, func() error {
		if missing, err = e.missingFenceTriggers(ctx, mg.Conn, mg.Table); err != nil {
			return err
		}
		return create()
	})
}

// missingFenceTriggers lists the fence triggers the table lacks, asking a
// Galera node after it has applied the cluster's earlier DDL.
func (e MySQL) missingFenceTriggers(ctx context.Context, c Conn, t Table) ([]fenceTrigger, error) {
	var missing []fenceTrigger
	for _, tr := range e.fenceTriggers(t) {
		q := `SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = COALESCE(?, DATABASE()) AND TRIGGER_NAME = ?`
		if e.Synced(ctx, c) {
			q = SyncWaitPrefix + q
		}
		var n int64
		if err := c.Conn(ctx).Raw(q, t.Schema(), tr.name).Scan(&n).Error; err != nil {
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
func addFenceHWM(ctx context.Context, db *gorm.DB, mg Migration) error {
	ok, err := has(db, mg.Table, "COLUMNS", unquoted(mg.Fences), "COLUMN_NAME = 'hwm'")
	if err != nil || ok {
		return err
	}
	err = db.Exec("ALTER TABLE " + mg.Fences + " ADD COLUMN hwm bigint NOT NULL DEFAULT 0").Error
	if err != nil && !strings.Contains(err.Error(), "1060") { // 1060: another process added it first
		return err
	}
	return mg.Retrying(ctx, func() error {
		return db.Exec("UPDATE " + mg.Fences + " f JOIN (SELECT CRC32(name) % " + FenceBuckets +
			" AS id, MAX(fence) AS top FROM " + mg.Name + " GROUP BY 1) x ON f.id = x.id SET f.hwm = GREATEST(f.hwm, x.top)").Error
	})
}

// seedFenceBuckets adds the bucket rows <table>_fence lacks.
func seedFenceBuckets(db *gorm.DB, t Table) error {
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + t.Fences).Scan(&n).Error; err != nil || n == fenceRows {
		return err
	}
	// 32 × 32 rows: recursive CTEs stop at 1000 iterations by default.
	return db.Exec("INSERT IGNORE INTO " + t.Fences + " (id) WITH RECURSIVE s (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < 31) " +
		"SELECT a.n * 32 + b.n FROM s a, s b").Error
}

// Side: <table>_fence, complete (its hwm column, every bucket row) with
// its triggers; a <table>_fence another process has not yet filled counts
// as missing.
func (e MySQL) Side(ctx context.Context, db *gorm.DB, c Conn, t Table) ([]string, bool, error) {
	gaps, err := e.FenceGaps(ctx, db, c, t)
	return []string{t.Bare() + "_fence"}, len(gaps) == 0, err
}

// FenceGaps lists what MySQL/MariaDB fencing lacks on t: the
// <table>_fence table, its hwm column, bucket rows, or one of the
// triggers; empty when complete.
func (e MySQL) FenceGaps(ctx context.Context, db *gorm.DB, c Conn, t Table) ([]string, error) {
	fence := unquoted(t.Fences)
	var gaps []string
	ok, err := has(db, t, "TABLES", fence, "1 = 1")
	if err != nil || !ok {
		return []string{"table " + fence}, err
	}
	if ok, err = has(db, t, "COLUMNS", fence, "COLUMN_NAME = 'hwm'"); err != nil {
		return nil, err
	} else if !ok {
		gaps = append(gaps, "column "+fence+".hwm")
	}
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + t.Fences).Scan(&n).Error; err != nil {
		return nil, err
	} else if n != fenceRows {
		gaps = append(gaps, fmt.Sprintf("%s has %d of %s bucket rows", fence, n, FenceBuckets))
	}
	missing, err := e.missingFenceTriggers(ctx, c, t)
	for _, tr := range missing {
		gaps = append(gaps, "trigger "+tr.name)
	}
	return gaps, err
}
