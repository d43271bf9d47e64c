package lockmgr

import (
	"context"
	"database/sql/driver"
	"errors"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
)

// serialized runs fn, a migration, so that one process at a time runs it
// against the table, as the engine serializes it (engine.Migrator's
// Serialize: in a transaction holding an advisory lock on PostgreSQL,
// holding GET_LOCK on one connection on MySQL/MariaDB, in an immediate
// transaction on SQLite). Every step of fn is idempotent as well: Galera's
// GET_LOCK is node-local, and inside a caller's transaction (WithTx) fn
// runs in it unserialized.
func (m *Manager) serialized(ctx context.Context, fn func(context.Context, *gorm.DB) error) error {
	if m.inTx {
		return fn(ctx, m.conn(ctx))
	}
	return m.d.eng.Serialize(ctx, m.migration(ctx), fn)
}

// onConn runs fn on one connection of the pool, given back afterwards. A
// connection fn cannot leave clean (a lock it could not release) is
// discarded instead.
func (m *Manager) onConn(ctx context.Context, fn func(context.Context, *gorm.DB) error) error {
	sqlDB, err := m.db.DB()
	if err != nil {
		return fn(ctx, m.conn(ctx)) // no *sql.DB to take a connection from: idempotent steps only
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	db := m.db.Session(&gorm.Session{NewDB: true, Context: ctx})
	db.Statement.ConnPool = conn
	if err := fn(ctx, db); err != nil {
		if errors.Is(err, errDirtyConn) {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		return err
	}
	return nil
}

// errDirtyConn marks a connection that still holds a lock.
var errDirtyConn = engine.ErrDirtyConn

// migrationWait bounds the wait for another process's migration.
const migrationWait = 5 * time.Minute

// waitFor is how long a migration may wait for another: until ctx's
// deadline, at most migrationWait, at least a second.
func waitFor(ctx context.Context) time.Duration {
	d := migrationWait
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Second)
}
