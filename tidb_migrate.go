package lockmgr

import (
	"strings"

	"gorm.io/gorm"
)

// tidbSibling is the quoted name of a helper table next to the lock table.
func (m *Manager) tidbSibling(suffix string) string {
	if s := m.d.schema(m.tableName); s != nil {
		return "`" + s.(string) + "`.`" + m.d.bareTable(m.tableName) + suffix + "`"
	}
	return "`" + m.tableName + suffix + "`"
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
// finished by the next migration (restoreTiDBTable).
func (m *Manager) rebuildTiDBTable(db *gorm.DB, idx string) error {
	newT, oldT := m.tidbSibling("_lmnew"), m.tidbSibling("_lmold")
	cols := strings.Join(lockColumns, ", ")
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + newT,
		m.mysqlCreateTable(newT, idx),
		"RENAME TABLE " + m.d.table + " TO " + oldT,
		"INSERT INTO " + newT + " (" + cols + ") SELECT " + cols + " FROM " + oldT,
		"RENAME TABLE " + newT + " TO " + m.d.table,
		"DROP TABLE " + oldT,
	} {
		if err := db.Exec(q).Error; err != nil {
			return err
		}
	}
	return nil
}

// restoreTiDBTable puts back a table a rebuild renamed away and did not
// finish with (the lock table missing, <table>_lmold there), so that the
// migration rebuilds it again rather than create an empty table; and drops
// an <table>_lmold left beside a finished rebuild.
func (m *Manager) restoreTiDBTable(db *gorm.DB) error {
	bare := m.d.bareTable(m.tableName)
	old, err := m.mysqlHas(db, "TABLES", bare+"_lmold", "1 = 1")
	if err != nil || !old {
		return err
	}
	cur, err := m.mysqlHas(db, "TABLES", bare, "1 = 1")
	if err != nil {
		return err
	}
	if cur {
		return db.Exec("DROP TABLE " + m.tidbSibling("_lmold")).Error
	}
	return db.Exec("RENAME TABLE " + m.tidbSibling("_lmold") + " TO " + m.d.table).Error
}
