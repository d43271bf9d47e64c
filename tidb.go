package lockmgr

import (
	"context"
	"errors"

	"gorm.io/gorm"
)

// errNotAcquired rolls back an acquisition that found the name held.
var errNotAcquired = errors.New("lockmgr: not acquired")

// acquireBumpingFence is TiDB's acquisition: in one transaction, raise the
// name's fence bucket (dialect.fenceBump), then the conditional upsert that
// takes its fence from the bucket, then the read-back by token. A held name
// rolls the bump back. Inside a caller's transaction GORM makes this a
// savepoint.
func (m *Manager) acquireBumpingFence(ctx context.Context, v *values, dest ...any) (found bool, err error) {
	err = m.conn(ctx).Transaction(func(tx *gorm.DB) error {
		t := m.WithTx(tx)
		if _, err := t.exec(ctx, m.d.fenceBump, v); err != nil {
			return err
		}
		n, err := t.exec(ctx, m.d.acquire, v)
		if err != nil {
			return err
		}
		if n == 0 {
			return errNotAcquired
		}
		found, err = t.query(ctx, m.d.readBack, v, dest...)
		return err
	})
	if errors.Is(err, errNotAcquired) {
		return false, nil
	}
	return found, err
}

// tidbNameCollation is TiDB's binary NO PAD collation: 'a', 'A' and 'a '
// are three names. Its utf8mb4_bin pads with spaces.
const tidbNameCollation = "utf8mb4_0900_bin"

// tidbTableDDL is lockmgr's lock table on TiDB, created with the right
// collation up front: TiDB cannot change the collation of an indexed
// column afterwards (error 8200). The table default is the same
// collation, so a later GORM MODIFY of a column keeps it.
func (m *Manager) tidbTableDDL(table string) string {
	idx := m.db.NamingStrategy.IndexName(m.d.bareTable(m.tableName), "locked_until")
	c := "CHARACTER SET utf8mb4 COLLATE " + tidbNameCollation
	return "CREATE TABLE IF NOT EXISTS " + table + " (name varchar(255) " + c + " NOT NULL, " +
		"locked_by varchar(255) NULL, lock_process bigint NULL, locked_until datetime(6) NULL, " +
		"token varchar(64) " + c + " NOT NULL DEFAULT '', fence bigint NOT NULL DEFAULT 0, " +
		"created_at datetime(6) NULL, updated_at datetime(6) NULL, PRIMARY KEY (name), " +
		"KEY `" + idx + "` (locked_until)) DEFAULT " + c
}

// tidbSibling is the quoted name of a helper table next to the lock table.
func (m *Manager) tidbSibling(suffix string) string {
	if s := m.d.schema(m.tableName); s != nil {
		return "`" + s.(string) + "`.`" + m.d.bareTable(m.tableName) + suffix + "`"
	}
	return "`" + m.tableName + suffix + "`"
}

// rebuildTiDBTable gives an existing table (one GORM or Django created)
// byte-exact name and token columns on TiDB, which cannot alter their
// collation in place: it copies the rows into a table made with
// tidbTableDDL and swaps the two in one RENAME. GET_LOCK, which holds
// across every TiDB server, keeps replicas migrating at once from doing
// it twice. Rows another process writes to the old table between the copy
// and the swap are copied again after it (INSERT IGNORE); run the first
// migration while nothing else writes the table.
func (m *Manager) rebuildTiDBTable(ctx context.Context) error {
	return m.conn(ctx).Connection(func(c *gorm.DB) error {
		key := "lockmgr:migrate:" + m.tableName
		var got int
		if err := c.Raw("SELECT GET_LOCK(?, 60)", key).Scan(&got).Error; err != nil || got != 1 {
			return errors.Join(errors.New("lockmgr: another process is migrating the table (GET_LOCK timed out)"), err)
		}
		defer c.Exec("SELECT RELEASE_LOCK(?)", key)
		have, err := m.columnCollation(c, "name")
		if err != nil || have == tidbNameCollation {
			return err
		}
		newT, oldT := m.tidbSibling("_lmnew"), m.tidbSibling("_lmold")
		cols := "name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at"
		for _, q := range []string{
			"DROP TABLE IF EXISTS " + newT,
			m.tidbTableDDL(newT),
			"INSERT INTO " + newT + " (" + cols + ") SELECT " + cols + " FROM " + m.d.table,
			"RENAME TABLE " + m.d.table + " TO " + oldT + ", " + newT + " TO " + m.d.table,
			"INSERT IGNORE INTO " + m.d.table + " (" + cols + ") SELECT " + cols + " FROM " + oldT,
			"DROP TABLE " + oldT,
		} {
			if err := c.Exec(q).Error; err != nil {
				return err
			}
		}
		return nil
	})
}

// columnCollation is the collation of col in the lock table, "" if none.
func (m *Manager) columnCollation(db *gorm.DB, col string) (string, error) {
	var have string
	err := db.Raw(`SELECT COALESCE(COLLATION_NAME, '') FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?`,
		m.d.schema(m.tableName), m.d.bareTable(m.tableName), col).Scan(&have).Error
	return have, err
}

// migrateTiDBFences adds the high-water mark column that TiDB's
// acquisitions raise (tidbFenceBump) to the fence buckets.
func (m *Manager) migrateTiDBFences(ctx context.Context) error {
	return m.conn(ctx).Exec("ALTER TABLE " + m.d.fenceTable + " ADD COLUMN IF NOT EXISTS hwm bigint NOT NULL DEFAULT 0").Error
}
