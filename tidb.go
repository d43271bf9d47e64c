package lockmgr

import (
	"context"
	"errors"
	"strings"

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
	// The table check runs outside the transaction, and a transaction the
	// database rolled back is retried whole (run).
	err = m.run(ctx, func() error {
		return m.conn(ctx).Transaction(func(tx *gorm.DB) error {
			found, err = m.bumpAndAcquire(ctx, tx, v, dest...)
			return err
		})
	})
	if errors.Is(err, errNotAcquired) {
		return false, nil
	}
	return found, err
}

// bumpAndAcquire is the body of acquireBumpingFence's transaction tx.
func (m *Manager) bumpAndAcquire(ctx context.Context, tx *gorm.DB, v *values, dest ...any) (bool, error) {
	t := m.WithTx(tx)
	t.ownTx = m.bounded()
	bump := m.d.fenceBump
	if t.ownTx {
		// TiDB's row-lock waits count whole seconds, and an autocommit
		// statement's not at all: the name's row is locked first with
		// NOWAIT, so that a row another open transaction holds fails the
		// attempt at once (error 3572, which tryAcquire asks again until
		// lockWaitBound has passed; lockwait.go). The fence bucket, which
		// another open transaction holds only when it took a name of the
		// same bucket, is waited for 1 s at most, at no extra statement.
		if _, err := t.exec(ctx, m.d.tidbNoWait, v); err != nil {
			return false, err
		}
		bump = m.d.fenceBumpBounded
	}
	if _, err := t.exec(ctx, bump, v); err != nil {
		return false, err
	}
	n, err := t.exec(ctx, m.d.acquire, v)
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, errNotAcquired
	}
	return t.query(ctx, m.d.readBack, v, dest...)
}

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
