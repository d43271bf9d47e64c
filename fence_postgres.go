package lockmgr

import (
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
)

// PostgreSQL fences. An acquisition first raises the high-water mark (hwm)
// of its name's bucket in <table>_fence to GREATEST(hwm + 1, the clock in
// microseconds), in the same statement, and makes that the new row's
// fence; a takeover's is GREATEST(old fence + 1, that). So a fence is never
// below the clock floor, nor below any fence handed out before for a name
// of its bucket, even after the row was deleted and the server's clock
// stepped back (or a failover moved to a standby whose clock is behind).
//
// The bucket row's lock, held until the acquisition commits, also orders
// the acquisitions of one name (as the per-name advisory lock did before):
// one that waits for another reads the other's mark. The bucket row is one
// of a table, so every spelling of the table ("public"."lockmgr_lock",
// lockmgr_lock) reaches the same row. Rows are made on first use (the
// upsert), so the side table needs no seeding; AutoMigrate starts each
// bucket at the highest fence of the rows it already holds.

// postgresBucket is the bucket a name hashes to: 0 to engine.FenceBuckets-1, as
// the acquisition's own (engine.Postgres) hashes it.
func postgresBucket(name string) string {
	return "(hashtext(" + name + ") & (" + engine.FenceBuckets + " - 1))"
}

// postgresFenceDDL creates <table>_fence, and seeds it from the lock
// table's fences when it did not exist.
func (d *dialect) postgresFenceDDL() []string {
	return []string{
		"CREATE TABLE " + d.fenceTable + " (id integer PRIMARY KEY, hwm bigint NOT NULL)",
		"INSERT INTO " + d.fenceTable + " AS h (id, hwm) SELECT " + postgresBucket("name") + ", MAX(fence) FROM " + d.table +
			" GROUP BY 1 ON CONFLICT (id) DO UPDATE SET hwm = GREATEST(h.hwm, EXCLUDED.hwm)",
	}
}

// postgresSideQuery counts the side tables of the given names that exist
// (catalog.side): (schema or NULL, names).
const postgresSideQuery = `SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = COALESCE(?, current_schema()) AND c.relname IN ? AND c.relkind IN ('r', 'p')`

// migratePostgresFences creates <table>_fence if it is missing (called by
// migrateSide, under the migration's advisory lock).
func (m *Manager) migratePostgresFences(db *gorm.DB) error {
	var exists bool
	if err := db.Raw("SELECT to_regclass(?) IS NOT NULL", m.d.fenceTable).Scan(&exists).Error; err != nil || exists {
		return err
	}
	return db.Transaction(func(tx *gorm.DB) error {
		for _, q := range m.d.postgresFenceDDL() {
			if err := tx.Exec(q).Error; err != nil {
				return err
			}
		}
		return nil
	})
}
