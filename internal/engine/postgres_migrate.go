package engine

import (
	"context"
	"fmt"
	"hash/fnv"

	"gorm.io/gorm"
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
// upsert), so the side table needs no seeding; the migration starts each
// bucket at the highest fence of the rows it already holds.

// pgBucket is the bucket a name hashes to: 0 to FenceBuckets-1, as the
// acquisition's own (pgAcquire) hashes it.
func pgBucket(name string) string {
	return "(hashtext(" + name + ") & (" + FenceBuckets + " - 1))"
}

const pgColumnsQuery = `SELECT a.attname, CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 ELSE 0 END, '',
	CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey)) THEN 1 ELSE 0 END, t.typname
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
	WHERE n.nspname = COALESCE(?, current_schema()) AND c.relname = ? AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`

// pgSideQuery counts the side tables of the given names that exist:
// (schema or NULL, names).
const pgSideQuery = `SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = COALESCE(?, current_schema()) AND c.relname IN ? AND c.relkind IN ('r', 'p')`

// Columns reads pg_attribute.
func (Postgres) Columns(db *gorm.DB, t Table) (map[string]Column, error) {
	return readColumns(db, pgColumnsQuery, t)
}

// CheckColumns: nothing beyond presence and widths.
func (Postgres) CheckColumns(map[string]Column, func(bool, string, ...any)) {}

// Side: <table>_fence.
func (Postgres) Side(_ context.Context, db *gorm.DB, _ Conn, t Table) ([]string, bool, error) {
	return countSide(db, pgSideQuery, t, []string{t.Bare() + "_fence"})
}

// SearchPath: an unqualified name resolves through each connection's
// search_path.
func (Postgres) SearchPath(t Table) bool { return t.Schema() == nil }

// Elsewhere lists the schemas other than this connection's where a table
// of t's unqualified name exists: another search_path.
func (e Postgres) Elsewhere(db *gorm.DB, t Table) []string {
	if !e.SearchPath(t) {
		return nil
	}
	var out []string
	_ = db.Raw(`SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = ? AND c.relkind IN ('r', 'p') ORDER BY 1`, t.Given).Scan(&out).Error
	return out
}

// Serialize runs fn in a transaction holding an advisory lock (PostgreSQL's
// DDL is transactional too), with lock_timeout set for the transaction.
func (Postgres) Serialize(ctx context.Context, mg Migration, fn func(context.Context, *gorm.DB) error) error {
	return mg.Conn.Conn(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", pgMigrationKey(mg.Table)).Error; err != nil {
			return err
		}
		db := tx.Session(&gorm.Session{NewDB: true})
		if mg.LockWait > 0 {
			if err := db.Exec(fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", mg.LockWait.Milliseconds())).Error; err != nil {
				return err
			}
		}
		return fn(ctx, db)
	})
}

// pgMigrationKey names the table's migration lock. PostgreSQL keeps
// single-key advisory locks apart from the two-key ones.
func pgMigrationKey(t Table) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("lockmgr migrate " + t.Name))
	return int64(h.Sum64())
}

// Migrate lets GORM create or complete the table (it adds token and
// fence, widens locked_by, makes lock_process bigint), then widens name, a
// primary key GORM's migrator leaves alone, and creates <table>_fence if
// it is missing. On a complete table it does nothing.
func (Postgres) Migrate(_ context.Context, db *gorm.DB, mg Migration) error {
	if !mg.Usable {
		if err := db.Table(mg.Given).AutoMigrate(mg.Model); err != nil {
			return err
		}
	}
	for _, c := range []string{"name", "locked_by"} {
		if n := mg.Cols[c].Length; n > 0 && n < maxNameLen {
			if err := db.Exec("ALTER TABLE " + mg.Name + " ALTER COLUMN " + c + " TYPE varchar(255)").Error; err != nil {
				return err
			}
		}
	}
	return pgMigrateFences(db, mg.Table)
}

// pgMigrateFences creates <table>_fence, seeded from the lock table's
// fences, if it is missing.
func pgMigrateFences(db *gorm.DB, t Table) error {
	var exists bool
	if err := db.Raw("SELECT to_regclass(?) IS NOT NULL", t.Fences).Scan(&exists).Error; err != nil || exists {
		return err
	}
	return db.Transaction(func(tx *gorm.DB) error {
		return execAll(tx,
			"CREATE TABLE "+t.Fences+" (id integer PRIMARY KEY, hwm bigint NOT NULL)",
			"INSERT INTO "+t.Fences+" AS h (id, hwm) SELECT "+pgBucket("name")+", MAX(fence) FROM "+t.Name+
				" GROUP BY 1 ON CONFLICT (id) DO UPDATE SET hwm = GREATEST(h.hwm, EXCLUDED.hwm)")
	})
}

// Restore: nothing to restore.
func (Postgres) Restore(*gorm.DB, Migration) error { return nil }

// IdentLimit: 63 bytes (longer names PostgreSQL truncates without a word).
func (Postgres) IdentLimit() int { return 63 }

// DerivedNames: the fence side table and the locked_until index.
func (Postgres) DerivedNames(t string) []string {
	return []string{t, t + "_fence", "idx_" + t + "_locked_until"}
}
