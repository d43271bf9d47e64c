package lockmgr

import (
	"errors"
	"strings"
)

// The per-database SQL of the migration and of the schema check. The lock
// statements themselves are in internal/engine.

// catalog is how one database describes a table's columns and side
// structures. columns takes (schema or NULL, table) and returns name,
// varchar length (0 for other types), collation (” where there is none)
// 1 for a primary-key column, and the type's name. side takes (schema or NULL, names) and
// counts the side tables and triggers of those names that exist.
type catalog struct {
	columns, side string
	// ddl is each column's type as lockmgr creates or adds it; {c} is the
	// byte-exact collation (MySQL/MariaDB).
	ddl map[string]string
}

var catalogs = map[string]catalog{
	"postgres": {
		side: postgresSideQuery, // fence_postgres.go
		columns: `SELECT a.attname, CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 ELSE 0 END, '',
			CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey)) THEN 1 ELSE 0 END, t.typname
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
			WHERE n.nspname = COALESCE(?, current_schema()) AND c.relname = ? AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`,
	},
	"mysql": {
		columns: `SELECT COLUMN_NAME, COALESCE(CHARACTER_MAXIMUM_LENGTH, 0), COALESCE(COLLATION_NAME, ''), CASE WHEN COLUMN_KEY = 'PRI' THEN 1 ELSE 0 END, DATA_TYPE
			FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?`,
		side: "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME IN ?",
		ddl: map[string]string{
			"name":         "varchar(255) CHARACTER SET utf8mb4 COLLATE {c} NOT NULL",
			"locked_by":    "varchar(255) NULL",
			"lock_process": "bigint NULL",
			"locked_until": "datetime(6) NULL",
			"token":        "varchar(64) CHARACTER SET utf8mb4 COLLATE {c} NOT NULL DEFAULT ''",
			"fence":        "bigint NOT NULL DEFAULT 0",
			"created_at":   "datetime(6) NULL",
			"updated_at":   "datetime(6) NULL",
		},
	},
	"sqlite": {
		columns: `SELECT p.name, 0, '', p.pk, p.type FROM (SELECT ? AS s, ? AS t) a, pragma_table_info(a.t, COALESCE(a.s, 'main')) p`,
		side:    "SELECT COUNT(*) FROM sqlite_master WHERE (? IS NULL OR 1) AND name IN ?",
		ddl: map[string]string{
			"name":         "varchar(255) NOT NULL",
			"locked_by":    "varchar(255)",
			"lock_process": "integer",
			"locked_until": "datetime",
			"token":        "varchar(64) NOT NULL DEFAULT ''",
			"fence":        "integer NOT NULL DEFAULT 0",
			"created_at":   "datetime",
			"updated_at":   "datetime",
		},
	},
}

// columnDDL is col's type as lockmgr adds it, "" where GORM adds columns.
func (d *dialect) columnDDL(col string) string {
	return strings.ReplaceAll(catalogs[d.kind].ddl[col], "{c}", d.srv.nameCollation)
}

// sideNames are the side tables and triggers the lock statements use.
func (m *Manager) sideNames() []string {
	bare := m.d.bareTable(m.tableName)
	switch m.d.kind {
	case "sqlite":
		trigger := strings.ReplaceAll(m.tableName, ".", "_") + "_fence_"
		return []string{bare + "_fence", trigger + "insert", trigger + "update"}
	case "mysql", "postgres":
		return []string{bare + "_fence"}
	}
	return nil
}

// tooLong reports a value too long for its column (locked_by on a
// table whose column is Django's width).
func (d *dialect) tooLong(err error) bool {
	var state interface{ SQLState() string }
	if errors.As(err, &state) && state.SQLState() == "22001" {
		return true
	}
	return err != nil && strings.Contains(err.Error(), "Error 1406 ")
}
